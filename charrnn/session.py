"""One `charrnn train` invocation: settle the settings (fresh or resumed), train, report.

Kept apart from the CLI so the rules for resuming (what may change, what may not) live in one place and
are testable without a terminal.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from charrnn.batching import fit_batch_size
from charrnn.checkpoint import load_checkpoint
from charrnn.config import TrainConfig, auto_settings, format_duration, parse_duration
from charrnn.corpus import Corpus, load_corpus
from charrnn.device import pick_device
from charrnn.diagnostics import summarise
from charrnn.distributed import Ranks
from charrnn.errors import CharrnnError
from charrnn.evaluate import LN2
from charrnn.model import ModelConfig, count_parameters
from charrnn.named_corpora import resolve
from charrnn.runlock import run_lock
from charrnn.scheduled import parse_schedule
from charrnn.train import Trainer, TrainResult
from charrnn.vocab import short_unit

# Settings that define the model or the data stream: a resumed run must keep them.
FIXED_ON_RESUME = {
    "cell": "--cell",
    "input": "--input",
    "weight_tying": "--weight-tying",
    "layers": "--layers",
    "hidden": "--hidden",
    "embedding": "--embedding",
    "batch_size": "--batch-size",
    "seq_len": "--seq-len",
    "val_fraction": "--val-fraction",
    "seed": "--seed",
}
CHANGEABLE_MODEL_SETTINGS = ("dropout", "dropout_mode", "recurrent_dropout", "embedding_dropout")
SIGNAL_STATUS = {"SIGINT": 130, "SIGTERM": 143}


@dataclass
class TrainRequest:
    corpus: str
    out: Path | None = None
    resume: Path | None = None
    overwrite: bool = False
    encoding: str | None = None  # None: utf-8 (and not given, which --level byte needs)
    lossy: bool = False
    level: str | None = None  # None: char, or the checkpoint's level when resuming
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    backend: str = "auto"  # distributed runs: nccl on CUDA, gloo on CPUs
    quiet: bool = False
    model: dict = field(
        default_factory=dict
    )  # ModelConfig fields given on the command line (None: not given)
    train: dict = field(
        default_factory=dict
    )  # TrainConfig fields given on the command line (None: not given)


def _given(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def settle_configs(
    request: TrainRequest, corpus: Corpus, blob: dict | None
) -> tuple[ModelConfig, TrainConfig, list[str]]:
    """The model and training settings for this run, and notes on what a resume changed."""
    model_flags, train_flags = _given(request.model), _given(request.train)
    if "max_time" in train_flags:
        train_flags["max_time"] = parse_duration(str(train_flags["max_time"]))
    if "scheduled_sampling" in train_flags:
        train_flags["scheduled_sampling"] = parse_schedule(str(train_flags["scheduled_sampling"])).to_list()
    if blob is None:
        config = TrainConfig(**train_flags).with_default_limit()
        n_train = len(corpus) - int(len(corpus) * config.val_fraction)
        for key, value in auto_settings(n_train, config.max_time).items():
            if key in ModelConfig.__dataclass_fields__:
                model_flags.setdefault(key, value)
            elif key not in train_flags:
                setattr(config, key, value)
        _settle_input_size(model_flags, len(corpus.vocab))
        model = ModelConfig(vocab_size=len(corpus.vocab), **model_flags)
        model.check()
        return model, config, []

    model = ModelConfig.from_dict(blob["model_config"])
    old = TrainConfig.from_dict(blob["train_config"])
    for key, value in {**model_flags, **train_flags}.items():
        flag = FIXED_ON_RESUME.get(key)
        if flag is None:
            continue
        before = getattr(model, key, None) if hasattr(model, key) else getattr(old, key)
        if before != value:
            raise CharrnnError(
                f"{flag} {value} contradicts the checkpoint ({flag} {before}); drop the flag to resume, "
                "or start a new run without --resume"
            )
    notes = []
    for key in CHANGEABLE_MODEL_SETTINGS:  # regularisers act only in training: they may change
        if key in model_flags and model_flags[key] != getattr(model, key):
            notes.append(f"--{key.replace('_', '-')} {getattr(model, key)} -> {model_flags[key]}")
            setattr(model, key, model_flags[key])
    config = TrainConfig.from_dict(old.to_dict())
    if any(k in train_flags for k in ("max_steps", "epochs", "max_time")):
        config.max_steps = config.epochs = config.max_time = None  # new limits replace the old ones
    for key, value in train_flags.items():
        if key in FIXED_ON_RESUME:
            continue
        if getattr(old, key) != value:
            notes.append(f"--{key.replace('_', '-')} {getattr(old, key)} -> {value}")
        setattr(config, key, value)
    saved = blob.get("corpus", {})
    if corpus.vocab.to_list() == list(blob["vocab"]) and saved.get("sha256") not in (
        None,
        corpus.fingerprint,
    ):
        raise CharrnnError(
            f"the corpus is not the text this run was trained on ({len(corpus):,} {corpus.vocab.unit}s here, "
            f"{saved.get('chars', 0):,} in the checkpoint, different content); resume on the same corpus"
        )
    if corpus.vocab.to_list() != list(blob["vocab"]):
        theirs, ours = set(blob["vocab"]), set(corpus.vocab.chars)
        extra = sorted(ours - theirs)
        detail = (
            f"it has characters the checkpoint lacks: {' '.join(map(repr, extra[:10]))}"
            if extra
            else (f"its {len(ours)} characters differ from the checkpoint's {len(theirs)}")
        )
        raise CharrnnError(
            f"the corpus does not match the checkpoint's vocabulary ({detail}); resume on the same corpus"
        )
    return model, config, notes


def _settle_input_size(model_flags: dict, vocab_size: int) -> None:
    """One-hot input has the vocabulary's size; tied weights default the embedding to the hidden size."""
    if model_flags.get("input") == "onehot":
        if "embedding" in model_flags:
            raise CharrnnError(
                "--embedding sets the size of a learned embedding; --input onehot has none (its size is the "
                "vocabulary's): drop one of the two flags"
            )
        model_flags["embedding"] = vocab_size
    elif model_flags.get("weight_tying") and "embedding" not in model_flags:
        model_flags["embedding"] = model_flags["hidden"]


def run_training(request: TrainRequest, console: Console) -> int:
    """Train as the request says; returns the process exit status.

    Under torchrun every rank runs this; only rank 0 prints (the others' console is silent, their errors
    still reach stderr) and writes files."""
    ranks = Ranks.from_environment()
    status = _run_training(request, console if ranks.is_main else Console(quiet=True), ranks)
    # wait until rank 0 has written its last checkpoint; the process group is not torn down here: the
    # command line ends distributed processes at once (gloo's threads can abort during a teardown)
    ranks.barrier()
    return status


def _join(request: TrainRequest, blob: dict | None, ranks: Ranks) -> None:
    """Join the other ranks (nothing without torchrun), on the device this rank will train on."""
    requested = request.train.get("device") or (blob or {}).get("train_config", {}).get("device", "auto")
    device = pick_device(requested, ranks.local_rank, ranks.local_world_size)
    ranks.join(device, request.backend)
    if ranks.distributed and request.train.get("scheduled_sampling"):
        raise CharrnnError(
            "--scheduled-sampling steps through time outside DistributedDataParallel's gradient hooks; "
            "it trains in one process only (drop torchrun or the flag)"
        )


def _run_training(request: TrainRequest, console: Console, ranks: Ranks) -> int:
    blob = load_checkpoint(request.resume, for_resume=True) if request.resume else None
    _join(request, blob, ranks)
    level = _settle_level(request.level, blob)
    path, name = resolve(request.corpus)
    if request.out is not None:
        run_dir = Path(request.out)
    elif blob is not None:
        run_dir = Path(blob["path"]).parent
    else:
        run_dir = Path("checkpoints") / name
    # one run per folder, from before the corpus is read (its first encoding may take a while)
    with run_lock(run_dir) if ranks.is_main else contextlib.nullcontext():
        if not ranks.is_main:
            ranks.barrier()  # rank 0 encodes the corpus once; the others then map its token file
        corpus = load_corpus(
            path,
            name,
            request.encoding,
            request.lossy,
            level,
            request.include,
            request.exclude,
            report=lambda note: console.print(note, markup=False, soft_wrap=True),
        )
        if ranks.is_main:
            ranks.barrier()
        return _train_in(run_dir, request, console, ranks, corpus, blob)


def _train_in(
    run_dir: Path, request: TrainRequest, console: Console, ranks: Ranks, corpus: Corpus, blob: dict | None
) -> int:
    """Settle the configuration, check the run folder, train and report (with the folder locked)."""
    model_config, config, notes = settle_configs(request, corpus, blob)
    if blob is None and not request.overwrite and ranks.is_main:
        existing = [name for name in ("best.pt", "last.pt") if (run_dir / name).exists()]
        if existing:
            raise CharrnnError(
                f"{run_dir} already holds a run ({', '.join(existing)}); continue it with --resume "
                f"{run_dir}, choose another --out, or pass --overwrite to start afresh"
            )
    if blob is None and request.overwrite and ranks.is_main:
        for name in ("best.pt", "last.pt", "metrics.jsonl", "grad_norms.jsonl"):
            with contextlib.suppress(FileNotFoundError):
                (run_dir / name).unlink()

    n_train = len(corpus) - int(len(corpus) * config.val_fraction)
    streams = config.batch_size * ranks.world_size
    fitted = fit_batch_size(n_train, streams, config.seq_len)
    if fitted != streams:
        if blob is not None:
            raise CharrnnError(
                f"the training text is too short for the checkpoint's --batch-size {config.batch_size}"
            )
        if ranks.distributed:
            raise CharrnnError(
                f"the training text ({n_train:,} chars) is too short for {ranks.world_size} ranks x "
                f"--batch-size {config.batch_size} streams of --seq-len {config.seq_len}; use a smaller "
                "--batch-size or fewer ranks"
            )
        console.print(
            f"note: the training text ({n_train:,} chars) is short; using --batch-size {fitted} "
            f"instead of {config.batch_size}"
        )
        config.batch_size = fitted

    try:
        with ranks.peers_watched():  # (DistributedDataParallel sends rank 0's weights to the others)
            trainer = Trainer(
                corpus, model_config, config, run_dir, resume=blob, quiet=request.quiet, ranks=ranks
            )
    except RuntimeError as e:
        if "alloc" not in str(e).lower() and "out of memory" not in str(e).lower():
            raise
        raise CharrnnError(
            f"not enough memory for a {model_config.layers}x{model_config.hidden} model; "
            "use a smaller --hidden, --layers or --batch-size"
        ) from None
    trainer.check_limits()  # before the notes: a refused resume changes nothing
    if not request.quiet:
        _print_header(console, corpus, trainer, config)
    for note in notes:
        console.print(f"changed on resume: {note}", markup=False)
    with ranks.peers_watched():
        result = trainer.run()
    return _report(console, request, result, trainer)


def _settle_level(requested: str | None, blob: dict | None) -> str:
    """The symbol level: as asked, else the checkpoint's when resuming, else characters."""
    saved = blob.get("level", "char") if blob is not None else None
    if requested is not None and saved is not None and requested != saved:
        raise CharrnnError(
            f"--level {requested} contradicts the checkpoint (--level {saved}); drop the flag to resume, "
            "or start a new run without --resume"
        )
    return requested or saved or "char"


def _print_header(console: Console, corpus: Corpus, trainer: Trainer, config: TrainConfig) -> None:
    m = trainer.model.config
    n_val = trainer.val_ids.numel()
    n_eval = trainer.eval_ids.numel()
    unit = "bytes" if corpus.vocab.is_bytes else "chars"
    scored = f" (the first {n_eval:,} scored at each evaluation)" if n_eval < n_val else ""
    limits = [
        f"{config.max_steps} steps" if config.max_steps else None,
        f"{config.epochs:g} epochs" if config.epochs else None,
        format_duration(config.max_time) if config.max_time else None,
    ]
    precision = "bf16 autocast" if trainer.autocast_dtype is not None else "fp32"
    world = trainer.ranks.world_size
    batch = f"batch {config.batch_size}x{config.seq_len}" + (
        f" per rank x {world} ranks ({trainer.ranks.backend}; global batch {config.batch_size * world})"
        if world > 1
        else ""
    )
    start = f"resuming at step {trainer.progress.step}, " if trainer.progress.step else ""
    options = _describe_options(m, config)
    console.print(
        f"{start}training {m.cell} {m.layers}x{m.hidden} "
        f"({count_parameters(trainer.model) / 1e6:.2f}M params{options}) on "
        f"{corpus.name}: {len(corpus) - n_val:,} train / {n_val:,} val {unit}{scored}, "
        f"{len(corpus.vocab)} symbols; "
        f"{batch}, {trainer.device.type} {precision}; "
        f"stops at {' or '.join(x for x in limits if x)}",
        soft_wrap=True,
        markup=False,
    )


def _describe_options(m: ModelConfig, config: TrainConfig) -> str:
    """The non-default architecture and regularisation choices, for the header line."""
    parts = []
    if m.input == "onehot":
        parts.append("one-hot input")
    if m.dropout_mode != "standard":
        extra = f", recurrent weight dropout {m.weight_dropout:g}" if m.dropout_mode == "variational" else ""
        parts.append(f"{m.dropout_mode} dropout {m.dropout:g}{extra}")
    if m.embedding_dropout:
        parts.append(f"embedding dropout {m.embedding_dropout:g}")
    if m.weight_tying:
        parts.append("tied embedding and output weights")
    if config.scheduled_sampling:
        start, end = config.scheduled_sampling
        parts.append(f"scheduled sampling {start:g}" + (f" to {end:g}" if end != start else ""))
    return "".join(f", {p}" for p in parts)


def _gradient_reach_table(norms: list[float]) -> Table:
    table = Table(
        title="gradient reaching back d steps (relative to d = 0)", title_justify="left", box=box.SIMPLE
    )
    shown = summarise(norms)
    for distance, _ in shown:
        table.add_column(f"{distance}", justify="right", min_width=7)
    table.add_row(*(f"{ratio:.1e}" for _, ratio in shown))
    return table


def _report(console: Console, request: TrainRequest, result: TrainResult, trainer: Trainer) -> int:
    p = result.progress
    best, last = result.run_dir / "best.pt", result.run_dir / "last.pt"
    if result.stopped_by == "diverged":
        kept = f"best checkpoint kept at {best}" if best.exists() else "no checkpoint was written"
        console.print(
            f"error: training diverged at step {p.step} (loss is not finite); {kept}; "
            "try a lower --lr or a smaller --grad-clip",
            markup=False,
            soft_wrap=True,
        )
        return 1
    if result.stopped_by.startswith("signal:"):
        sig = result.stopped_by.split(":", 1)[1]
        ranks = trainer.ranks
        if not ranks.distributed:
            again = "charrnn train"
        elif ranks.local_world_size == ranks.world_size:
            again = f"torchrun --standalone --nproc-per-node {ranks.world_size} -m charrnn train"
        else:
            again = "torchrun (with the same rendezvous flags) -m charrnn train"
        console.print(
            f"{sig}: stopped at step {p.step}; saved {last}\nresume with: {again} "
            f"{request.corpus} --resume {last}",
            markup=False,
            soft_wrap=True,
        )
        return SIGNAL_STATUS.get(sig, 1)
    if request.quiet:
        return 0
    unit = trainer.corpus.vocab.unit
    short = short_unit(unit)
    table = Table(title="training finished", title_justify="left", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    if p.best_val < float("inf"):
        table.add_row("best validation loss", f"{p.best_val:.4f} nats/{short}")
        table.add_row(f"  bits per {unit}", f"{p.best_val / LN2:.4f}")
        table.add_row("  perplexity", f"{math.exp(min(p.best_val, 700.0)):.3f}")
    if result.final_score is not None:
        table.add_row("final validation loss", f"{result.final_score.nats:.4f} nats/{short}")
    table.add_row(
        "steps / epochs", f"{p.step:,} / {p.epoch + p.batch / max(trainer.batcher.batches_per_epoch, 1):.2f}"
    )
    table.add_row("time", format_duration(p.elapsed))
    table.add_row("training speed", f"{result.chars_per_sec:,.0f} {short}s/s")
    if trainer.ranks.distributed:
        world, batch = trainer.ranks.world_size, trainer.config.batch_size
        table.add_row("ranks", f"{world} x batch {batch} = global batch {world * batch}")
    table.add_row("checkpoint", str(best if best.exists() else last))
    console.print(table)
    if trainer.grad_reach:
        console.print(_gradient_reach_table(trainer.grad_reach))
        console.print(f"every measurement: {result.run_dir / 'grad_norms.jsonl'}", markup=False)
    return 0
