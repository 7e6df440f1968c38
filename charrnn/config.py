"""Training settings and the parsing/validation of human-friendly values such as `--max-time 10m`."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields

from charrnn.errors import BadSetting, setting_ref

# With no --max-steps, --epochs or --max-time, training stops after this many seconds.
DEFAULT_MAX_TIME = 600.0
# Validation characters scored at each evaluation during training: all of tiny-shakespeare's held-out text,
# and a bounded cost (about 10 s at 2x512 on a 2-core CPU) however large the corpus.
DEFAULT_VAL_CHARS = 250_000
# Dynamic evaluation (dynamic.py): step size, characters per step, decay towards the trained weights.
DYNAMIC_LR = 5e-4  # best of 5e-5..2e-3 on tiny-shakespeare's validation text (BENCHMARKS.md)
DYNAMIC_SEGMENT = 50  # 25 and 100 scored within 0.004 of it
DYNAMIC_DECAY = 0.0  # 1e-3 helped same-style text by 0.005 but cost 0.024 on text of another kind


@dataclass
class TrainConfig:
    """Training settings. The defaults are what a default run (10 minutes, a corpus of 200,000 characters or
    more) gets; `settings.resolve_settings` replaces the budget- and size-dependent ones by `auto_settings`
    where they were not given."""

    batch_size: int = 16
    seq_len: int = 64
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # the cosine schedule decays to lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    max_steps: int | None = None
    epochs: float | None = None
    max_time: float | None = None  # seconds of training + evaluation
    eval_every: int = 500
    val_fraction: float = 0.1
    val_chars: int | None = DEFAULT_VAL_CHARS  # score this many validation characters (None or 0: all)
    seed: int = 1337
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None  # PyTorch's intra-op threads; None: its default (one per core)
    scheduled_sampling: list[float] | None = None  # [start, end] probability of feeding the model's guess
    log_grad_norms: bool = False  # record the gradient reaching each time step (grad_norms.jsonl)
    state_reset: float = 0.0  # probability per window that a stream's carried state starts blank
    ema: float = 0.0  # decay of an exponential moving average of the weights, scored beside them; 0: off
    sample_every: int = 0  # after every N-th evaluation write a sample (stderr, samples.jsonl); 0: never
    sample_length: int = 200
    sample_temperature: float = 0.8

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def with_default_limit(self) -> TrainConfig:
        if self.max_steps is None and self.epochs is None and self.max_time is None:
            self.max_time = DEFAULT_MAX_TIME
        return self


_UNITS = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '1.5h', '1h30m' -> seconds; a CharrnnError saying the format otherwise."""
    cleaned = text.strip().lower().replace(" ", "")
    parts = re.findall(r"(\d+(?:\.\d+)?)([a-z]*)", cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned or any(u not in _UNITS for _, u in parts):
        raise BadSetting(
            f"{setting_ref('max_time')} {text!r} is not a duration; write e.g. 90s, 10m, 1.5h or 1h30m",
            setting="max_time",
        )
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise BadSetting(f"{setting_ref('max_time')} {text!r} must be longer than zero", setting="max_time")
    return seconds


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def format_bytes(n: float) -> str:
    """A size as people read it: '4.5 GB', '940.2 MB', '12.0 kB', '512 bytes' (decimal units)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:,.0f} bytes"


# Sizes picked for a corpus and a time budget; the experiments behind them are in BENCHMARKS.md.
SMALL_CORPUS_CHARS = 200_000
SHORT_BUDGET_SECONDS = 300.0
LONG_BUDGET_SECONDS = 1200.0


def auto_settings(train_chars: int, max_time: float | None, hidden: int | None = None) -> dict:
    """Defaults for the settings a user did not give, so each budget buys the best model it can.

    On a 2-core CPU a 2x384 LSTM learns faster per minute than a 2x512 one, so short budgets get it; longer
    budgets get the larger model, and long budgets or small corpora more dropout against overfitting.
    Small batches (16 x 64) with a higher learning rate beat larger batches at every budget measured.
    At 30 minutes neither a 2x768 model nor weight dropout on W_hh beat 2x512 with dropout 0.3: on a 2-core
    CPU their lower throughput costs more than their regularisation gains (BENCHMARKS.md, issue 13).
    AdamW weight decay costs no time: 0.1 was best at 10 minutes (1.375 against 1.418 without), 0.2 at 30
    minutes (1.362 against 1.376 with 0.1 or 0.3, 1.417 without); at 2 minutes and on small corpora it was
    within noise of none.
    A run limited only by steps or epochs counts as a long one. A `hidden` width given (by the user or
    chosen elsewhere) sets the learning rate that suits it.
    """
    budget = max_time if max_time is not None else math.inf
    small = train_chars < SMALL_CORPUS_CHARS
    if hidden is None:
        hidden = 256 if small else (384 if budget <= SHORT_BUDGET_SECONDS else 512)
    return {
        "hidden": hidden,
        "dropout": 0.3 if small or budget >= LONG_BUDGET_SECONDS else 0.2,
        "lr": 4e-3 if hidden <= 384 else 3e-3,
        "weight_decay": 0.2 if budget >= LONG_BUDGET_SECONDS else 0.1,
        "batch_size": 16,
        "seq_len": 64,
    }


def finetune_settings(train_chars: int, max_time: float | None) -> dict:
    """Defaults for a run that starts from a trained model (`--init`): its architecture is the source's,
    so only the optimisation and regularisation are chosen here. The weights already know spelling and
    spacing, so a lower peak learning rate and a short warm-up keep what they know while the new text is
    learned; small corpora get more dropout. Measured on the bundled model (BENCHMARKS.md, issue 24)."""
    small = train_chars < SMALL_CORPUS_CHARS
    return {
        "dropout": FINETUNE_DROPOUT_SMALL if small else FINETUNE_DROPOUT,
        "lr": FINETUNE_LR,
        "warmup_steps": FINETUNE_WARMUP_STEPS,
        "weight_decay": FINETUNE_WEIGHT_DECAY,
        "batch_size": 16,
        "seq_len": 64,
    }


FINETUNE_LR = 4e-3
FINETUNE_WARMUP_STEPS = 20
FINETUNE_DROPOUT = 0.1
FINETUNE_DROPOUT_SMALL = 0.2
FINETUNE_WEIGHT_DECAY = 0.1
