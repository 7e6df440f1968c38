"""Every model and training setting, described once: the registry, and `resolve_settings`.

Each `Setting` says its name (the ModelConfig or TrainConfig field), its help, how its default is stated
(the dataclass default, or the rule of `config.auto_settings`), its range or choices, and whether a resume
may change it. The CLI builds `charrnn train`'s options from it, `info` its reproduce-flags, and
`resolve_settings` the final settings of a run, for the command line and for Python alike; adding an option
touches this table plus the place that uses it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from charrnn.cells import CELLS
from charrnn.checkpoint import Checkpoint
from charrnn.config import TrainConfig, auto_settings, finetune_settings, parse_duration
from charrnn.dropout import DROPOUT_MODES
from charrnn.errors import BadSetting, setting_ref
from charrnn.finetune import check_architecture, grown_model_config
from charrnn.model import INPUTS, ModelConfig
from charrnn.scheduled import parse_schedule

MODEL, TRAIN = "model", "train"


@dataclass(frozen=True)
class Setting:
    name: str  # the field of ModelConfig (scope "model") or TrainConfig ("train")
    scope: str
    kind: type  # int, float, str or bool; str settings with `choices` are enumerations
    help: str
    default: str | None = None  # how --help states the default; None: the dataclass default, "": none
    choices: tuple[str, ...] | None = None
    short: str | None = None  # a one-letter flag
    low: float | None = None  # inclusive bounds, as Typer checks them (usage errors)
    high: float | None = None
    valid: Callable[[Any], bool] | None = None  # a further condition, stated by `requirement`
    requirement: str = ""  # e.g. "must be at least 0 and below 1"
    fixed_on_resume: bool = False  # it defines the model or the data stream: a resume must keep it
    text: bool = False  # given as text and parsed (a duration, a schedule)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def default_value(self) -> Any:
        owner = ModelConfig if self.scope == MODEL else TrainConfig
        return {f.name: f.default for f in fields(owner)}.get(self.name)

    def default_text(self) -> str:
        if self.default is not None:
            return self.default
        value = self.default_value()
        return f"{value:g}" if isinstance(value, float) else str(value)

    def help_text(self) -> str:
        stated = self.default_text()
        return f"{self.help} \\[default: {stated}]." if stated else f"{self.help}."

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed, or None."""
        if self.kind is bool:
            return None if isinstance(value, bool) else "must be true or false"
        if self.choices is not None:
            return None if value in self.choices else f"{value!r}: choose one of {', '.join(self.choices)}"
        if self.kind is str:
            return None if isinstance(value, str) else "must be text"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{value!r} must be a number"
        if self.kind is int and not isinstance(value, int):
            return f"{value!r} must be a whole number"
        if not math.isfinite(value):
            return f"{value} must be a finite number"
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            low = "" if self.low is None else f"{self.low:g} <= "
            high = "" if self.high is None else f" <= {self.high:g}"
            return f"{value} is not in the range {low}x{high}"
        if self.valid is not None and not self.valid(value):
            return f"{value} {self.requirement}"
        return None


def _rate(name: str, help: str, default: str | None = None, scope: str = MODEL) -> Setting:
    """A probability-like setting in [0, 1)."""
    return Setting(
        name, scope, float, help, default, low=0.0, high=1.0,
        valid=lambda v: v < 1, requirement="must be at least 0 and below 1",
    )  # fmt: skip


SETTINGS: tuple[Setting, ...] = (
    # ---- the model ----
    Setting("cell", MODEL, str, "Recurrent cell; peephole-lstm has no fused kernel and trains several times "
            "slower", choices=tuple(CELLS), fixed_on_resume=True),
    Setting("input", MODEL, str, "Character input: a learned embedding, or the one-hot vector of the "
            "original char-rnn", choices=INPUTS, fixed_on_resume=True),
    Setting("layers", MODEL, int, "Stacked recurrent layers", low=1, high=64, fixed_on_resume=True),
    Setting("hidden", MODEL, int, "Hidden units per layer",
            "auto: with a time budget, the width (128-768) that trains best in it here, by measured "
            "speed; else 384 for budgets up to 5m, 512 longer, 256 for small corpora", low=1, high=65536,
            fixed_on_resume=True),
    Setting("embedding", MODEL, int, "Character embedding size", low=1, high=65536, fixed_on_resume=True),
    _rate("dropout", "Dropout on the input of every layer and before the output",
          "auto: 0.2, or 0.3 for budgets of 20m+ or small corpora"),
    Setting("dropout_mode", MODEL, str, "standard: a new mask every time step; locked: one mask per sequence "
            "for every layer's input and output; variational: locked plus weight dropout on the "
            "hidden-to-hidden matrices", choices=DROPOUT_MODES),
    _rate("recurrent_dropout", "Weight dropout on the hidden-to-hidden matrices in variational mode",
          "--dropout"),
    _rate("embedding_dropout", "Drop whole characters from the input for a window (AWD-LSTM)"),
    Setting("weight_tying", MODEL, bool, "The output layer shares the embedding matrix (needs --embedding "
            "equal to --hidden; the embedding follows --hidden when not given)", "", fixed_on_resume=True),
    # ---- training ----
    Setting("batch_size", TRAIN, int, "Parallel streams per batch; under torchrun, per rank (the global "
            "batch is ranks x this)", short="-b", low=1, fixed_on_resume=True),
    Setting("seq_len", TRAIN, int, "Characters per window (BPTT length)", short="-t", low=1,
            fixed_on_resume=True),
    Setting("lr", TRAIN, float, "Peak learning rate (AdamW)", "auto: 0.004 up to 384 hidden units, else "
            "0.003", valid=lambda v: 0 < v <= 10, requirement="must be above 0 and at most 10"),
    Setting("weight_decay", TRAIN, float, "AdamW weight decay (decoupled, on every parameter)",
            "auto: 0.1, or 0.2 for budgets of 20m+", low=0.0, high=100.0),
    Setting("grad_clip", TRAIN, float, "Clip the global gradient norm to this (0: off)", low=0.0),
    Setting("warmup_steps", TRAIN, int, "Linear learning-rate warm-up steps", low=0),
    Setting("max_steps", TRAIN, int, "Stop after this many steps", "", low=1),
    Setting("epochs", TRAIN, float, "Stop after this many passes over the training text", "",
            valid=lambda v: v > 0, requirement="must be above 0"),
    Setting("max_time", TRAIN, float, "Stop after this wall-clock budget, e.g. 90s, 10m, 1h",
            "10m if no limit is given", text=True),
    Setting("eval_every", TRAIN, int, "Score the validation text every N steps", low=1),
    Setting("val_fraction", TRAIN, float, "Last fraction of the text held out for validation", low=0.0,
            high=0.5, fixed_on_resume=True),
    Setting("val_chars", TRAIN, int, "Validation characters scored at each evaluation: the first N of the "
            "held-out text, the same slice every time; 0 scores all of it", "250000", low=0,
            valid=lambda v: v == 0 or v >= 2, requirement="must be 0 (all) or at least 2"),
    Setting("seed", TRAIN, int, "Random seed", low=0, high=2**63 - 1, fixed_on_resume=True),
    Setting("device", TRAIN, str, "auto picks CUDA when present", choices=("auto", "cpu", "cuda")),
    Setting("threads", TRAIN, int, "PyTorch's intra-op CPU threads (leave cores free on a shared machine; "
            "more than the cores is allowed but usually slower)", "PyTorch's default, one per core", low=1,
            high=4096),
    Setting("precision", TRAIN, str, "auto: bf16 autocast on GPUs and on CPUs with AVX512-BF16 or AMX, else "
            "fp32", choices=("auto", "fp32", "bf16")),
    Setting("scheduled_sampling", TRAIN, str, "Feed the model's own sampled guess instead of the true "
            "previous character with this probability: P, or START:END rising linearly over the run (e.g. "
            "0:0.25). Steps through time one character at a time: several times slower", "", text=True),
    Setting("log_grad_norms", TRAIN, bool, "Record the gradient norm reaching each time step of the window "
            "at every evaluation (grad_norms.jsonl) and show how far back it reaches", ""),
    _rate("state_reset", "Probability per window that a stream's carried state starts blank: trains the "
          "model for the blank state a prime or a scored text starts from, which a run shorter than an "
          "epoch otherwise never sees (0: only at each epoch's start)", scope=TRAIN),
    _rate("ema", "Keep an exponential moving average of the weights with this decay per step (e.g. 0.999), "
          "score it beside the weights at every evaluation and save it as best.pt when it scores better "
          "(0: off)", scope=TRAIN),
    Setting("sample_every", TRAIN, int, "After every N-th evaluation, write a short sample above the "
            "progress bar and to samples.jsonl in the run folder, to watch the text improve (0: never)",
            low=0),
    Setting("sample_length", TRAIN, int, "Characters per live sample", low=1, high=100_000),
    Setting("sample_temperature", TRAIN, float, "Temperature of the live samples", low=0.0),
)  # fmt: skip
BY_NAME = {s.name: s for s in SETTINGS}


@dataclass
class Settings:
    """A run's final settings, and what a resume changed (as "--flag old -> new" notes)."""

    model: ModelConfig
    train: TrainConfig
    changed: list[tuple[str, Any, Any]]  # (setting, before, after) on resume


def check_given(given: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a user gave (None: not given), parsed and range-checked; a BadSetting names the first
    unknown or bad one."""
    out: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        setting = BY_NAME.get(name)
        if setting is None:
            raise BadSetting(f"{name!r} is not a setting (see charrnn.settings.SETTINGS)", setting=name)
        if name == "max_time" and isinstance(value, str):
            value = parse_duration(value)
        elif name == "max_time" and (
            isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf
        ):
            raise BadSetting(
                f"{setting_ref(name)} {value!r} must be a finite duration above zero", setting=name
            )
        elif name == "scheduled_sampling":
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = str(value)
            value = parse_schedule(value if isinstance(value, str) else ":".join(map(str, value))).to_list()
        elif setting.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        problem = None if setting.text else setting.problem(value)
        if problem is not None:
            raise BadSetting(f"{setting_ref(name)} {problem}", setting=name)
        out[name] = value
    return out


def resolve_settings(
    train_chars: int,
    vocab_size: int,
    given: Mapping[str, Any] | None = None,
    resume: Checkpoint | None = None,
    init: ModelConfig | None = None,
    width: int | None = None,
    **more: Any,
) -> Settings:
    """The final model and training settings for a run on a corpus of `train_chars` training characters
    and `vocab_size` symbols, from what the user gave (`given` and keyword arguments: setting -> value,
    None for not given): fresh, the automatic choices (`config.auto_settings`) fill what was not given;
    resumed, the checkpoint's settings hold, settings that define the model or the data stream may not
    change, and new limits replace the old ones; started from a trained model (`init`, its config), the
    architecture is that model's and `config.finetune_settings` fills the rest. `width` replaces the
    automatic width of a fresh run whose width was not given (`width_choice`: chosen by measured speed)."""
    flags = check_given({**(given or {}), **more})
    if init is not None:
        return _initialised(flags, train_chars, vocab_size, init)
    if resume is None:
        return _fresh(flags, train_chars, vocab_size, width)
    return _resumed(flags, resume)


def _initialised(flags: dict, train_chars: int, vocab_size: int, source: ModelConfig) -> Settings:
    """A fresh run on a source model's architecture (grown to `vocab_size` symbols): the regularisers
    and training settings are as given, else the fine-tuning defaults; the source's other choices
    (dropout mode, embedding dropout) hold unless given."""
    check_architecture(flags, source)
    train_flags = {k: v for k, v in flags.items() if BY_NAME[k].scope == TRAIN}
    config = TrainConfig(**train_flags).with_default_limit()
    if config.val_chars == 0:
        config.val_chars = None
    n_train = train_chars - int(train_chars * config.val_fraction)
    model = grown_model_config(source, vocab_size)
    for key, value in finetune_settings(n_train, config.max_time).items():
        if BY_NAME[key].scope == MODEL:
            setattr(model, key, value)
        elif key not in train_flags:
            setattr(config, key, value)
    for key, value in flags.items():
        if BY_NAME[key].scope == MODEL:  # architecture flags got here only if equal to the source's
            setattr(model, key, value)
    model.check()
    return Settings(model, config, [])


def _fresh(flags: dict, train_chars: int, vocab_size: int, width: int | None = None) -> Settings:
    model_flags = {k: v for k, v in flags.items() if BY_NAME[k].scope == MODEL}
    if width is not None:
        model_flags.setdefault("hidden", width)
    train_flags = {k: v for k, v in flags.items() if BY_NAME[k].scope == TRAIN}
    config = TrainConfig(**train_flags).with_default_limit()
    if config.val_chars == 0:
        config.val_chars = None  # all of the held-out text
    n_train = train_chars - int(train_chars * config.val_fraction)
    for key, value in auto_settings(n_train, config.max_time, model_flags.get("hidden")).items():
        if BY_NAME[key].scope == MODEL:
            model_flags.setdefault(key, value)
        elif key not in train_flags:
            setattr(config, key, value)
    _settle_input_size(model_flags, vocab_size)
    model = ModelConfig(vocab_size=vocab_size, **model_flags)
    model.check()
    return Settings(model, config, [])


def _resumed(flags: dict, resume: Checkpoint) -> Settings:
    model = ModelConfig.from_dict(resume.model_config.to_dict())
    old = resume.train_config
    for key, value in flags.items():
        setting = BY_NAME[key]
        if not setting.fixed_on_resume:
            continue
        before = getattr(model if setting.scope == MODEL else old, key)
        if before != value:
            raise BadSetting(
                f"{setting_ref(key)} {value} contradicts the checkpoint ({setting_ref(key)} {before}); drop "
                "the flag to resume, or start a new run without --resume",
                setting=key,
            )
    changed = []
    for key, value in flags.items():  # the model's regularisers act only in training: they may change
        if BY_NAME[key].scope == MODEL and not BY_NAME[key].fixed_on_resume and value != getattr(model, key):
            changed.append((key, getattr(model, key), value))
            setattr(model, key, value)
    config = TrainConfig.from_dict(old.to_dict())
    config.threads = None  # the machine's, not the run's: a resume uses its own --threads or the default
    if any(k in flags for k in ("max_steps", "epochs", "max_time")):
        config.max_steps = config.epochs = config.max_time = None  # new limits replace the old ones
    for key, value in flags.items():
        if BY_NAME[key].scope != TRAIN or BY_NAME[key].fixed_on_resume:
            continue
        if getattr(old, key) != value:
            changed.append((key, getattr(old, key), value))
        setattr(config, key, value)
    return Settings(model, config, changed)


def _settle_input_size(model_flags: dict, vocab_size: int) -> None:
    """One-hot input has the vocabulary's size; tied weights default the embedding to the hidden size."""
    if model_flags.get("input") == "onehot":
        if "embedding" in model_flags:
            raise BadSetting(
                f"{setting_ref('embedding')} sets the size of a learned embedding; {setting_ref('input')} "
                "onehot has none (its size is the vocabulary's): drop one of the two flags",
                setting="embedding",
            )
        model_flags["embedding"] = vocab_size
    elif model_flags.get("weight_tying") and "embedding" not in model_flags:
        model_flags["embedding"] = model_flags["hidden"]


def _flag_value(name: str, value: Any) -> str:
    if name == "max_time":
        return f"{value:g}s"
    if name == "scheduled_sampling" and isinstance(value, list | tuple):
        return ":".join(f"{v:g}" for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def reproduce_flags(model_config: dict, train_config: dict, level: str | None) -> list[str]:
    """The `charrnn train` flags that rebuild a run's settings (after the automatic choices)."""
    flags: list[str] = []
    for setting in SETTINGS:
        saved = model_config if setting.scope == MODEL else train_config
        value = saved.get(setting.name)
        if setting.name == "embedding" and model_config.get("input") == "onehot":
            continue  # one-hot input has no embedding: its size is the vocabulary's
        if setting.name == "val_chars" and setting.name in saved and value is None:
            flags += [setting.flag, "0"]  # None there means all of the held-out text
        elif value is None or value is False:
            continue
        elif value is True:
            flags.append(setting.flag)
        else:
            flags += [setting.flag, _flag_value(setting.name, value)]
    if level:
        flags += ["--level", level]
    return flags
