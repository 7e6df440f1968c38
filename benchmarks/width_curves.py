"""Fit `charrnn.width_choice.CURVES` to measured runs: best validation loss against characters trained.

    python benchmarks/width_curves.py width_choice.jsonl [more.jsonl ...]

Reads the explicit-width runs of `benchmarks/width_choice.py` (the automatic ones are not used: they test
the rule, they do not make it) plus the earlier sessions' runs listed in `EARLIER` (BENCHMARKS.md, issue
13, a faster host), and fits loss(c) = floor + scale * (c / 1e6) ** -power with one power for every width
(a grid over the power, least squares for each width's floor and scale), so two runs per width are enough.
Prints the fitted curves as Python, each run's residual, and the measured share of each budget spent
training (`TRAINING_SHARE`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

# (width, characters trained, best validation loss, where): tiny-shakespeare at the automatic settings of
# their budget (BENCHMARKS.md: "Weight decay" and "30 minutes around the new defaults"; AMD EPYC, 2 cores).
EARLIER = [
    (384, 2_926 * 1024, 1.4677, "2m, EPYC, issue 13"),
    (512, 8_818 * 1024, 1.3754, "10m, EPYC, issue 13"),
    (512, 26_976 * 1024, 1.3619, "30m, EPYC, issue 13"),
    (512, 27_424 * 1024, 1.3674, "30m seed 7, EPYC, issue 13"),
    (768, 10_541 * 1024, 1.3784, "30m, EPYC, issue 13"),
]


def load(paths: list[Path]) -> tuple[list[tuple[int, float, float, str]], list[float]]:
    points, shares = [], []
    for path in paths:
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            run = json.loads(line)
            seconds = float(run["budget"].rstrip("m")) * 60
            shares.append(run["chars"] / (run["chars_per_sec"] * seconds))
            if run["width"] != "auto":
                where = f"{run['budget']}, {run['threads']} threads"
                points.append((run["hidden"], float(run["chars"]), run["best"], where))
    return points, shares


def fit(points, powers=np.linspace(0.05, 1.5, 146)):
    widths = sorted({p[0] for p in points})
    best = None
    for power in powers:
        total, curves = 0.0, {}
        for w in widths:
            chars = np.array([p[1] for p in points if p[0] == w])
            loss = np.array([p[2] for p in points if p[0] == w])
            design = np.stack([np.ones_like(chars), (chars / 1e6) ** -power], axis=1)
            (floor, scale), *_ = np.linalg.lstsq(design, loss, rcond=None)
            total += float(((design @ [floor, scale] - loss) ** 2).sum())
            curves[w] = (float(floor), float(scale))
        if best is None or total < best[0]:
            best = (total, float(power), curves)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--no-earlier", action="store_true", help="fit this host's runs only")
    args = parser.parse_args()
    points, shares = load(args.results)
    if not args.no_earlier:
        points += EARLIER
    total, power, curves = fit(points)
    print(f"power {power:.2f}, squared error {total:.5f} over {len(points)} runs")
    print("CURVES = {")
    for w, (floor, scale) in sorted(curves.items()):
        print(f"    {w}: LossCurve({floor:.4f}, {scale:.4f}, {power:.2f}),")
    print("}")
    for w, chars, loss, where in sorted(points):
        floor, scale = curves[w]
        predicted = floor + scale * (chars / 1e6) ** -power
        print(f"{w:4d} {chars / 1e6:7.2f}M chars  measured {loss:.4f}  fitted {predicted:.4f}  ({where})")
    if shares:
        print(
            f"training share of the budget: mean {np.mean(shares):.3f}, "
            f"min {min(shares):.3f}, max {max(shares):.3f}"
        )


if __name__ == "__main__":
    main()
