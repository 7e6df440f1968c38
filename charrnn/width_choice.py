"""The model width for a time budget, chosen from this machine's measured training speed.

What a budget buys depends on the machine: the same 2-minute run trains 3.7M characters of a 2x128 LSTM
on one 2-core host and 0.4M of a 2x512 one, and a host three times faster moves the best width up. So when
the width is not given and the run is limited by time, each candidate width's training speed is measured
here (a few timed steps of the run's own settings, at most about 3% of the budget, cached per machine,
thread count and settings), the characters each width would train in the budget are predicted from it, and
the width whose measured loss-per-characters curve is lowest there wins.

The curves (`CURVES`) were fitted by `benchmarks/width_curves.py` to the runs of
`benchmarks/width_choice.py` on tiny-shakespeare (1.1M characters, 65 symbols, the automatic settings
of each width and budget) on this project's hosts (BENCHMARKS.md, issue 26), as one family:
loss(w, c) = E + A (w/256)^-alpha + B (w/256)^-gamma (c/1e6)^-beta for width w and c characters trained,
so each width's curve is floor + scale * (c/1e6)^-beta. Runs that trained under 0.3M characters (mostly
warm-up) were left out of the fit; the curves then overrate their loss, which only makes such widths
lose more surely. They are for the default architecture (a 2-layer LSTM): a run that gives --cell or
--layers keeps the budget rule of `config.auto_settings`, as do runs limited by steps or epochs, small
corpora (whose curves would be about overfitting) and distributed runs (every rank would have to
measure alike).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from charrnn.atomic import atomic_write
from charrnn.config import SMALL_CORPUS_CHARS, TrainConfig, auto_settings, format_duration
from charrnn.device import apply_threads
from charrnn.model import CharRNN, ModelConfig, detach_state
from charrnn.paths import cache_dir

CANDIDATE_WIDTHS = (128, 256, 384, 512, 768)
PROBE_SHARE = 0.03  # of the budget, at most, for measuring the speeds
PROBE_SECONDS_PER_WIDTH = 3.0  # enough for a steady figure; longer budgets do not measure longer
TIMINGS_EXPECTED = 5  # timings a choice usually makes: the start, a neighbour each way, the best two again
MIN_PROBE_SECONDS = 1.0  # a shorter allowance (budgets under about 33 seconds) measures nothing
# The share of a budget left for training and evaluating after starting up and measuring; each
# evaluation then costs EVAL_COST training characters per character scored (train.py's estimate).
# Checked against the benchmark's runs (BENCHMARKS.md, issue 26).
TRAINING_SHARE = 0.97
EVAL_COST = 1 / 3
CACHE_ENTRIES = 64


@dataclass(frozen=True)
class LossCurve:
    """Best validation loss (nats per character) against the characters trained in a budget run."""

    floor: float
    scale: float
    power: float

    def at(self, chars: float) -> float:
        return self.floor + self.scale * (max(chars, 1.0) / 1e6) ** -self.power


# `python benchmarks/width_curves.py RESULTS.jsonl --min-chars 300000` (see the module docstring).
CURVES: dict[int, LossCurve] = {  # E 1.3038, A 0.0766, alpha 1.30, B 0.3271, gamma 0.30, beta 0.725
    128: LossCurve(1.4925, 0.4028, 0.725),
    256: LossCurve(1.3805, 0.3271, 0.725),
    384: LossCurve(1.3491, 0.2897, 0.725),
    512: LossCurve(1.3350, 0.2657, 0.725),
    768: LossCurve(1.3222, 0.2353, 0.725),
}


@dataclass
class WidthChoice:
    """The width chosen, and the figures it was chosen by (for the header)."""

    width: int
    speeds: dict[int, float]  # width -> training chars/s measured here
    predicted: dict[int, float]  # width -> predicted best validation loss in the budget
    budget: float  # seconds
    train_chars: int
    probe_seconds: float = 0.0  # spent measuring in this run (0 when the cache had the speeds)
    cached: bool = False
    eval_chars: int = 0  # characters scored at each evaluation
    eval_every_chars: float = math.inf  # characters trained between evaluations

    def chars(self, width: int) -> float:
        return trained_chars(self.speeds[width], self.budget, self.eval_chars, self.eval_every_chars)

    def describe(self, layers: int = 2) -> str:
        """One line for the header: what was chosen, why, and what the others would have reached."""
        w = self.width
        epochs = self.chars(w) / max(self.train_chars, 1)
        how = "cached speeds" if self.cached else f"speeds measured in {self.probe_seconds:.1f}s"
        others = [
            f"{layers}x{o} {self.speeds[o]:,.0f} -> {self.predicted[o]:.2f}"
            for o in sorted(self.speeds)
            if o != w
        ]
        return (
            f"width {layers}x{w} chosen: {self.speeds[w]:,.0f} chars/s here, {epochs:.1f} epochs in "
            f"{format_duration(self.budget)}, predicted {self.predicted[w]:.2f} nats ({how}; other widths, "
            f"chars/s -> nats: {', '.join(others) or 'none measured'})"
        )


def trained_chars(
    speed: float, budget: float, eval_chars: int = 0, eval_every_chars: float = math.inf
) -> float:
    """Characters a run training `speed` chars/s trains in `budget` seconds when it scores `eval_chars`
    characters every `eval_every_chars` characters trained and once at the end."""
    gross = speed * budget * TRAINING_SHARE
    evaluations = 1 + gross // eval_every_chars if math.isfinite(eval_every_chars) else 1
    return max(gross - evaluations * eval_chars * EVAL_COST, 0.0)


def choose_width(
    speeds: Mapping[int, float],
    budget: float,
    train_chars: int,
    eval_chars: int = 0,
    eval_every_chars: float = math.inf,
) -> WidthChoice:
    """The width whose curve predicts the lowest loss for the characters its speed trains in `budget`."""
    usable = {w: s for w, s in speeds.items() if w in CURVES and s > 0}
    if not usable:
        raise ValueError("no measured speed for any candidate width")
    predicted = {
        w: CURVES[w].at(trained_chars(s, budget, eval_chars, eval_every_chars)) for w, s in usable.items()
    }
    best = min(predicted, key=lambda w: (predicted[w], w))
    return WidthChoice(best, dict(usable), predicted, budget, train_chars, eval_chars=eval_chars,
                       eval_every_chars=eval_every_chars)  # fmt: skip


def applies(given: Mapping, config: TrainConfig, train_chars: int, distributed: bool) -> bool:
    """Whether this run's width is chosen by measured speed: no width, cell or layer count given, a time
    budget as the only limit, a corpus that is not small, one process."""
    n_train = train_chars - int(train_chars * config.val_fraction)
    return (
        all(given.get(k) is None for k in ("hidden", "cell", "layers"))
        and config.max_time is not None
        and not config.max_steps
        and not config.epochs
        and n_train >= SMALL_CORPUS_CHARS
        and not distributed
    )


# ---- measuring ----------------------------------------------------------------------------------------
def speed_key(model: ModelConfig, config: TrainConfig, device: torch.device, autocast, threads: int) -> dict:
    """What the speeds depend on: the machine, PyTorch, the threads and the settings that change a step's
    cost (not the width, which the entry covers, nor the regularisers' strengths)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {
        "machine": f"{platform.node()} {name}",
        "device": device.type,
        "torch": torch.__version__,
        "threads": threads,
        "cell": model.cell,
        "layers": model.layers,
        "input": model.input,
        "embedding": model.embedding if model.input != "onehot" else None,
        "tying": model.weight_tying,
        "symbols": 1 << max(model.vocab_size - 1, 1).bit_length(),  # up to the next power of two
        "dropout": model.dropout > 0,
        "dropout_mode": model.dropout_mode,
        "batch": config.batch_size,
        "seq_len": config.seq_len,
        "precision": str(autocast),
    }


def _cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


class SpeedCache:
    """Measured speeds in a JSON file of the cache folder, by `speed_key`. An unreadable file counts as
    empty and an unwritable folder as no cache (the next run measures again)."""

    def __init__(self, path: Path | None = None):
        self.path = path or cache_dir() / "speeds.json"

    def _entries(self) -> dict:
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}

    @staticmethod
    def _id(key: dict) -> str:
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def get(self, key: dict) -> dict[int, float]:
        entry = self._entries().get(self._id(key))
        if not isinstance(entry, dict) or entry.get("key") != key:
            return {}
        try:
            return {int(w): float(s) for w, s in entry["speeds"].items() if float(s) > 0}
        except (KeyError, TypeError, ValueError, AttributeError):
            return {}

    def put(self, key: dict, speeds: Mapping[int, float]) -> None:
        entries = self._entries()
        merged = {**self.get(key), **speeds}
        entries.pop(self._id(key), None)  # re-inserted last: the newest
        entries[self._id(key)] = {"key": key, "speeds": {str(w): s for w, s in sorted(merged.items())}}
        while len(entries) > CACHE_ENTRIES:  # the oldest first (dicts keep insertion order)
            entries.pop(next(iter(entries)))
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.path) as file:
                file.write(json.dumps(entries, indent=1).encode())


# A timer: (model config at one width, seconds to time) -> (training chars/s, seconds it took in all).
Timer = Callable[[ModelConfig, float], tuple[float, float]]


def step_timer(config: TrainConfig, device: torch.device, autocast) -> Timer:
    """Times this run's training step (forward, loss, backward, clipping, AdamW, carried state) on random
    symbols, after one untimed step (the first at a width builds its kernels), for at least two steps;
    a fast step (the 20th percentile), so stalls (a busy neighbour on a shared host, the allocator
    growing) do not decide, whichever widths they happen to hit. The seconds
    it reports leave out the process's first step (see `warm`); `choose_for_run` counts them all."""
    chars_per_step = config.batch_size * config.seq_len

    warm = False

    def timed(model: ModelConfig, seconds: float) -> tuple[float, float]:
        nonlocal warm
        if not warm:  # the process's first step sets up the kernels (2 s on a 2-core CPU in bf16); the
            warm = True  # training would pay that anyway, so it does not count against the allowance
            timed(replace(model, hidden=32), 0.0)
        started = time.perf_counter()
        net = CharRNN(model).to(device).train()
        optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        generator = torch.Generator().manual_seed(0)
        state = None

        def step() -> None:
            nonlocal state
            shape = (config.batch_size, config.seq_len + 1)
            ids = torch.randint(model.vocab_size, shape, generator=generator).to(device)
            with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
                logits, new_state = net(ids[:, :-1], state)
                loss = F.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
            optimizer.step()
            state = detach_state(new_state)
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        step()
        begun, durations = time.perf_counter(), []
        while len(durations) < 2 or (time.perf_counter() - begun < seconds and len(durations) < 500):
            before = time.perf_counter()
            step()
            durations.append(time.perf_counter() - before)
        quick = sorted(durations)[len(durations) // 5]  # the 20th percentile: what the step costs when
        return chars_per_step / quick, time.perf_counter() - started  # nothing else is in its way

    return timed


def measure_speeds(
    model: ModelConfig,
    chars_of: Callable[[float], float],
    allowance: float,
    timer: Timer,
    known: Mapping[int, float] | None = None,
    start: int = 512,
) -> tuple[dict[int, float], float]:
    """Chars/s of the candidate widths that decide the choice, in about `allowance` seconds: `start`
    first, then its neighbours, going on the way the predicted loss falls until it rises again (the
    loss against width in a fixed budget has one minimum: wider learns more per character, narrower
    trains more characters); then the two best once more. `chars_of` turns a speed into the characters
    the run would train. Widths in `known` are not timed again. Returns (speeds, seconds spent)."""
    speeds = dict(known or {})
    spent, timed_here = 0.0, []

    def timed(index: int) -> bool:
        nonlocal spent
        width = CANDIDATE_WIDTHS[index]
        if width in speeds:
            return True
        if spent >= allowance:
            return False
        share = min(PROBE_SECONDS_PER_WIDTH, (allowance - spent) / TIMINGS_EXPECTED)
        speeds[width], seconds = timer(replace(model, hidden=width), share)
        spent += seconds
        timed_here.append(width)
        return True

    def loss(index: int) -> float:
        width = CANDIDATE_WIDTHS[index]
        return CURVES[width].at(chars_of(speeds[width]))

    first = best = CANDIDATE_WIDTHS.index(start)
    if not timed(first):
        return speeds, spent
    for direction in (-1, 1):
        nxt = best + direction
        while 0 <= nxt < len(CANDIDATE_WIDTHS) and timed(nxt) and loss(nxt) < loss(best):
            best, nxt = nxt, nxt + direction
        if best != first:
            break  # it improved this way, so the other way only gets worse
    # the two best again, each keeping its faster figure: a shared host's speed drifts by tens of
    # percent within seconds, and these two decide
    for width in sorted(timed_here, key=lambda w: loss(CANDIDATE_WIDTHS.index(w)))[:2]:
        if spent >= allowance:
            break
        share = min(PROBE_SECONDS_PER_WIDTH, (allowance - spent) / TIMINGS_EXPECTED)
        again, seconds = timer(replace(model, hidden=width), share)
        speeds[width], spent = max(speeds[width], again), spent + seconds
    return speeds, spent


def choose_for_run(
    model: ModelConfig,
    config: TrainConfig,
    train_chars: int,
    device: torch.device,
    autocast,
    cache: SpeedCache | None = None,
    timer: Timer | None = None,
) -> WidthChoice | None:
    """Measure (or read from the cache) the speeds that decide this run's width and choose; None when
    the budget is too short to measure anything and the cache has nothing (the budget rule then holds)."""
    threads = apply_threads(config.threads)
    cache = cache if cache is not None else SpeedCache()
    key = speed_key(model, config, device, autocast, threads)
    known = cache.get(key)
    budget = float(config.max_time)
    allowance = budget * PROBE_SHARE
    if allowance < MIN_PROBE_SECONDS and not known:
        return None
    n_train = train_chars - int(train_chars * config.val_fraction)
    n_val = train_chars - n_train
    eval_chars = min(config.val_chars or n_val, n_val)
    every = config.eval_every * config.batch_size * config.seq_len
    start = auto_settings(n_train, budget)["hidden"]
    started = time.perf_counter()
    speeds, _ = measure_speeds(
        model,
        lambda speed: trained_chars(speed, budget, eval_chars, every),
        allowance,
        timer or step_timer(config, device, autocast),
        known,
        start,
    )
    spent = time.perf_counter() - started if len(speeds) > len(known) else 0.0
    measured = {w: s for w, s in speeds.items() if w not in known}
    if measured:
        cache.put(key, measured)
    choice = choose_width(speeds, budget, n_train, eval_chars, every)
    choice.probe_seconds, choice.cached = spent, not measured
    return choice
