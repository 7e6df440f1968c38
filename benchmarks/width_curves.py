"""Fit `charrnn.width_choice.CURVES` to measured runs: best validation loss against characters trained.

    python benchmarks/width_curves.py width_choice.jsonl [more.jsonl ...]

Reads the explicit-width runs of `benchmarks/width_choice.py` (the automatic ones are not used: they test
the rule, they do not make it) plus the earlier sessions' runs listed in `EARLIER` (BENCHMARKS.md, issue
13, a faster host), and fits loss(c) = floor + scale * (c / 1e6) ** -power with one power for every width
(a grid over the power, least squares for each width's floor and scale), so two runs per width are enough.
Prints the fitted curves as Python, each run's residual, and how well `trained_chars` predicts the
characters each run trained from its speed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from common import REPO  # noqa: F401 (puts the repository on the path)

from charrnn.width_choice import trained_chars

VALIDATION_CHARS = 111_539  # tiny-shakespeare's held-out tenth, scored whole at each evaluation

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
    """The explicit runs as (width, chars trained, best loss, where), and for every run the ratio of the
    characters it trained to those `width_choice.trained_chars` predicts from its speed."""
    points, shares = [], []
    for path in paths:
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            run = json.loads(line)
            seconds = float(run["budget"].rstrip("m")) * 60
            every = 500 * 16 * 64  # the benchmark's runs: the default --eval-every and batch
            predicted = trained_chars(run["chars_per_sec"], seconds, VALIDATION_CHARS, every)
            shares.append(run["chars"] / predicted)
            if run["width"] != "auto":
                where = f"{run['budget']}, {run['threads']} threads"
                chars = run["history"][-1][0] if run["history"] else run["chars"]  # at the end of the run
                points.append((run["hidden"], float(chars), run["best"], where))
    return points, shares


def fit(points, powers=np.linspace(0.05, 1.5, 146)):
    """Each width its own floor and scale, one power for all (`--form per-width`)."""
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


def fit_joint(points, widths=(128, 256, 384, 512, 768)):
    """loss = E + A (w/256)^-alpha + B (w/256)^-gamma (c/1e6)^-beta (`--form joint`): the floor falls
    and the sample efficiency rises smoothly with the width, so every width, measured or not, gets a
    curve in the same family. A grid over the three exponents, least squares for E, A, B."""
    w = np.array([p[0] for p in points], dtype=float) / 256
    c = np.array([p[1] for p in points]) / 1e6
    loss = np.array([p[2] for p in points])
    best = None
    for alpha in np.linspace(0.0, 3.0, 31):
        for gamma in np.linspace(-1.0, 2.0, 31):
            for beta in np.linspace(0.05, 1.5, 59):
                design = np.stack([np.ones_like(c), w**-alpha, w**-gamma * c**-beta], axis=1)
                coef, *_ = np.linalg.lstsq(design, loss, rcond=None)
                if coef[1] < 0 or coef[2] < 0:
                    continue
                total = float(((design @ coef - loss) ** 2).sum())
                if best is None or total < best[0]:
                    best = (total, alpha, gamma, beta, coef)
    total, alpha, gamma, beta, (e, a, b) = best
    curves = {x: (e + a * (x / 256) ** -alpha, b * (x / 256) ** -gamma) for x in widths}
    print(f"joint: E {e:.4f}, A {a:.4f}, alpha {alpha:.2f}, B {b:.4f}, gamma {gamma:.2f}, beta {beta:.3f}")
    return total, float(beta), curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--no-earlier", action="store_true", help="fit this host's runs only")
    parser.add_argument("--form", choices=["joint", "per-width"], default="joint")
    parser.add_argument("--min-chars", type=float, default=0, help="leave out runs that trained fewer")
    args = parser.parse_args()
    points, shares = load(args.results)
    if not args.no_earlier:
        points += EARLIER
    points = [p for p in points if p[1] >= args.min_chars]
    total, power, curves = (fit_joint if args.form == "joint" else fit)(points)
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
            f"characters trained / predicted by trained_chars: mean {np.mean(shares):.3f}, "
            f"min {min(shares):.3f}, max {max(shares):.3f}"
        )


if __name__ == "__main__":
    main()
