"""One `charrnn train` invocation: settle the settings (fresh or resumed), train, report.

Kept apart from the CLI so the rules for resuming (what may change, what may not) live in one place and
are testable without a terminal.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich import box
from rich.console import Console
from rich.table import Table

from charrnn.batching import fit_batch_size
from charrnn.checkpoint import Checkpoint, load_checkpoint
from charrnn.config import TrainConfig, format_duration
from charrnn.corpus import Corpus, load_corpus, with_vocabulary
from charrnn.device import apply_threads, pick_autocast, pick_device
from charrnn.diagnostics import summarise
from charrnn.distributed import Ranks
from charrnn.errors import BadInput, BadSetting, OutOfMemory, setting_ref
from charrnn.evaluate import LN2
from charrnn.finetune import (
    InitSource,
    check_outside,
    grown_vocabulary,
    grown_weights,
    lineage,
    load_source,
)
from charrnn.finetune import check_level as check_init_level
from charrnn.info import escape_char
from charrnn.model import ModelConfig, count_parameters
from charrnn.named_corpora import CORPORA, resolve
from charrnn.runfolder import RunFolder
from charrnn.settings import BY_NAME, Settings, resolve_settings
from charrnn.train import Event, LimitReport, SampleReport, StepReport, Trainer, TrainResult
from charrnn.vocab import short_unit
from charrnn.width_choice import WidthChoice, applies, choose_for_run

SIGNAL_STATUS = {"SIGINT": 130, "SIGTERM": 143}


@dataclass
class TrainRequest:
    corpus: str
    out: Path | None = None
    resume: Path | None = None
    init: str | None = None  # fine-tune: start from this checkpoint, run folder or bundled model's weights
    overwrite: bool = False
    encoding: str | None = None  # None: utf-8 (and not given, which --level byte needs)
    lossy: bool = False
    level: str | None = None  # None: char, or the checkpoint's level when resuming
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    backend: str = "auto"  # distributed runs: nccl on CUDA, gloo on CPUs
    quiet: bool = False
    settings: dict = field(default_factory=dict)  # model and training settings given (None: not given)


def settle_configs(
    request: TrainRequest,
    corpus: Corpus,
    resume: Checkpoint | None,
    source: InitSource | None = None,
    width: int | None = None,
) -> Settings:
    """The model and training settings for this run (see settings.resolve_settings); a resume must also
    be on the text it was trained on."""
    if resume is not None:
        _check_same_corpus(corpus, resume)
    init = source.checkpoint.model_config if source is not None else None
    return resolve_settings(
        len(corpus), len(corpus.vocab), request.settings, resume=resume, init=init, width=width
    )


def pick_width(
    request: TrainRequest, corpus: Corpus, settings: Settings, ranks: Ranks
) -> tuple[Settings, WidthChoice | None]:
    """A fresh run with a time budget and no width given gets the width that trains best in it on this
    machine (width_choice.py), and the settings that go with that width."""
    if not applies(request.settings, settings.train, len(corpus), ranks.distributed):
        return settings, None
    device = pick_device(settings.train.device)
    autocast = pick_autocast(settings.train.precision, device)
    choice = choose_for_run(settings.model, settings.train, len(corpus), device, autocast)
    if choice is None:
        return settings, None
    return settle_configs(request, corpus, None, width=choice.width), choice


def _check_same_corpus(corpus: Corpus, resume: Checkpoint) -> None:
    saved = resume.corpus
    if corpus.vocab == resume.vocab and saved.sha256 not in (None, corpus.fingerprint):
        raise BadInput(
            f"the corpus is not the text this run was trained on ({len(corpus):,} {corpus.vocab.unit}s here, "
            f"{saved.chars or 0:,} in the checkpoint, different content); resume on the same corpus"
        )
    if corpus.vocab.to_list() != resume.vocab.to_list():
        theirs, ours = set(resume.vocab.chars), set(corpus.vocab.chars)
        extra = sorted(ours - theirs)
        detail = (
            f"it has characters the checkpoint lacks: {' '.join(map(repr, extra[:10]))}"
            if extra
            else (f"its {len(ours)} characters differ from the checkpoint's {len(theirs)}")
        )
        raise BadInput(
            f"the corpus does not match the checkpoint's vocabulary ({detail}); resume on the same corpus"
        )


@dataclass
class TrainOutcome:
    """How a training session ended: the exit status `charrnn train` ends with (0; 1 for a diverged run;
    130/143 after SIGINT/SIGTERM) and the trainer's result."""

    status: int
    result: TrainResult


def run_training(request: TrainRequest, console: Console) -> int:
    """Train as the request says; returns the process exit status (see `train_session`)."""
    return train_session(request, console).status


def train_session(request: TrainRequest, console: Console) -> TrainOutcome:
    """Train as the request says, for the command line and for Python (charrnn.train_api) alike; problems
    are raised as CharrnnError, a diverged or signalled run is reported on `console` and returned.

    Under torchrun every rank runs this; only rank 0 prints (the others' console is silent, their errors
    still reach stderr) and writes files."""
    ranks = Ranks.from_environment()
    outcome = _run_training(request, console if ranks.is_main else Console(quiet=True), ranks)
    # wait until rank 0 has written its last checkpoint; the process group is not torn down here: the
    # command line ends distributed processes at once (gloo's threads can abort during a teardown)
    ranks.barrier()
    return outcome


def _join(request: TrainRequest, resume: Checkpoint | None, ranks: Ranks) -> None:
    """Join the other ranks (nothing without torchrun), on the device this rank will train on."""
    saved = resume.train_config.device if resume is not None else "auto"
    device = pick_device(request.settings.get("device") or saved, ranks.local_rank, ranks.local_world_size)
    ranks.join(device, request.backend)
    if ranks.distributed and request.settings.get("scheduled_sampling"):
        raise BadSetting(
            f"{setting_ref('scheduled_sampling')} steps through time outside DistributedDataParallel's "
            "gradient hooks; it trains in one process only (drop torchrun or the flag)",
            setting="scheduled_sampling",
        )


def _run_training(request: TrainRequest, console: Console, ranks: Ranks) -> TrainOutcome:
    if request.init is not None and request.resume is not None:
        raise BadSetting(
            "--init starts a new run from a trained model and --resume continues a run: give one of them"
        )
    resume = load_checkpoint(request.resume, for_resume=True) if request.resume else None
    source = load_source(request.init) if request.init is not None else None
    _join(request, resume, ranks)
    level = check_init_level(request.level, source) if source else _settle_level(request.level, resume)
    path, name = resolve(request.corpus)
    if request.out is not None:
        folder = RunFolder(request.out)
    elif resume is not None:
        folder = RunFolder(resume.path.parent)
    else:
        folder = RunFolder(Path("checkpoints") / name)
    # one run per folder, from before the corpus is read (its first encoding may take a while)
    with folder.lock() if ranks.is_main else contextlib.nullcontext():
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
        corpus.origin = corpus_origin(request, path)
        corpus, added = _fit_vocabulary(corpus, resume, source, console)
        if ranks.is_main:
            ranks.barrier()
        return _train_in(folder, request, console, ranks, corpus, resume, source, added)


def _fit_vocabulary(
    corpus: Corpus, resume: Checkpoint | None, source: InitSource | None, console: Console
) -> tuple[Corpus, list[str]]:
    """The corpus in the ids the run's model uses. Fine-tuning a character model grows the source's
    vocabulary by the corpus's new characters (finetune.py), and a fine-tuned run resumes in that grown
    order; returns the corpus and the characters added."""
    note = lambda text: console.print(text, markup=False, soft_wrap=True)  # noqa: E731
    if source is not None and corpus.level == "char":
        vocab, added = grown_vocabulary(source.checkpoint.vocab, corpus.vocab)
        if added:
            shown = " ".join(escape_char(c) for c in added[:40]) + (" ..." if len(added) > 40 else "")
            note(
                f"added {len(added)} character{'s' if len(added) != 1 else ''} that {source.label} never saw "
                f"to its {len(source.checkpoint.vocab)}: {shown}"
            )
        return with_vocabulary(corpus, vocab, note), added
    if (
        resume is not None
        and resume.level == "char"
        and corpus.vocab.chars != resume.vocab.chars
        and set(corpus.vocab.chars) <= set(resume.vocab.chars)
    ):
        return with_vocabulary(corpus, resume.vocab, note), []
    return corpus, []


def corpus_origin(request: TrainRequest, path: str | Path) -> dict:
    """How to read the corpus again from anywhere (the checkpoint keeps it for `sample --novel`): a named
    corpus by its name, a file, folder or glob by its absolute path, standard input as '-'."""
    spec = request.corpus
    if spec != "-" and not (spec in CORPORA and not Path(spec).exists()):
        spec = str(Path(path).resolve()) if Path(path).exists() else os.path.abspath(spec)
    return {
        "spec": spec,
        "encoding": request.encoding,
        "lossy": request.lossy,
        "include": list(request.include),
        "exclude": list(request.exclude),
    }


def _train_in(
    folder: RunFolder,
    request: TrainRequest,
    console: Console,
    ranks: Ranks,
    corpus: Corpus,
    resume: Checkpoint | None,
    source: InitSource | None = None,
    added: list[str] | None = None,
) -> TrainOutcome:
    """Settle the configuration, check the run folder, train and report (with the folder locked)."""
    settings = settle_configs(request, corpus, resume, source)
    if source is not None:
        check_outside(source, folder.path)
    if resume is None and ranks.is_main:
        folder.start_fresh(request.overwrite)  # before measuring widths: a refused folder refuses at once
    choice = None
    if resume is None and source is None:
        settings, choice = pick_width(request, corpus, settings, ranks)
    model_config, config = settings.model, settings.train

    n_train = len(corpus) - int(len(corpus) * config.val_fraction)
    streams = config.batch_size * ranks.world_size
    fitted = fit_batch_size(n_train, streams, config.seq_len)
    if fitted != streams:
        if resume is not None:
            raise BadInput(
                f"the training text is too short for the checkpoint's {setting_ref('batch_size')} "
                f"{config.batch_size}",
                setting="batch_size",
            )
        if ranks.distributed:
            raise BadSetting(
                f"the training text ({n_train:,} chars) is too short for {ranks.world_size} ranks x "
                f"{setting_ref('batch_size')} {config.batch_size} streams of {setting_ref('seq_len')} "
                f"{config.seq_len}; use a smaller {setting_ref('batch_size')} or fewer ranks",
                setting="batch_size",
            )
        console.print(
            f"note: the training text ({n_train:,} chars) is short; using --batch-size {fitted} "
            f"instead of {config.batch_size}"
        )
        config.batch_size = fitted

    threads = config.threads
    if threads is not None and threads > (os.cpu_count() or 1) and ranks.is_main:
        apply_threads(threads, lambda text: console.print(text, markup=False, soft_wrap=True))
    view = TrainingView(request.quiet or not ranks.is_main)
    try:
        with ranks.peers_watched():  # (DistributedDataParallel sends rank 0's weights to the others)
            trainer = Trainer(
                corpus,
                model_config,
                config,
                folder,
                resume=resume,
                on_event=view,
                ranks=ranks,
                init_weights=grown_weights(source.checkpoint, len(corpus.vocab)) if source else None,
                lineage=lineage(source, added or []) if source else None,
                spent=choice.probe_seconds if choice else 0.0,
            )
    except (torch.cuda.OutOfMemoryError, MemoryError):  # what the estimate (memory.py) did not foresee
        raise OutOfMemory(
            f"not enough memory for a {model_config.layers}x{model_config.hidden} model; use a smaller "
            f"{setting_ref('hidden')}, {setting_ref('layers')} or {setting_ref('batch_size')}",
            setting="hidden",
        ) from None
    trainer.check_limits()  # before the notes: a refused resume changes nothing
    if not request.quiet:
        if source is not None:
            console.print(f"fine-tuning from {source.label} (fresh optimiser and schedule)", markup=False)
        if choice is not None:
            console.print(choice.describe(model_config.layers), markup=False, soft_wrap=True)
        _print_header(console, corpus, trainer, config)
    for name, before, after in settings.changed:
        console.print(f"changed on resume: {BY_NAME[name].flag} {before} -> {after}", markup=False)
    try:
        with ranks.peers_watched():
            result = trainer.run()
    finally:
        view.close()
    return TrainOutcome(_report(console, request, result, trainer), result)


def _settle_level(requested: str | None, resume: Checkpoint | None) -> str:
    """The symbol level: as asked, else the checkpoint's when resuming, else characters."""
    saved = resume.level if resume is not None else None
    if requested is not None and saved is not None and requested != saved:
        raise BadSetting(
            f"{setting_ref('level')} {requested} contradicts the checkpoint "
            f"({setting_ref('level')} {saved}); drop the flag to resume, or start a new run without --resume",
            setting="level",
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
    threads = f"{trainer.threads} thread" + ("s" if trainer.threads != 1 else "")
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
        f"{batch}, {trainer.device.type} {precision}, {threads}; "
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


PLAIN_INTERVAL = 30.0  # seconds between plain progress lines (besides one at every evaluation)


class TrainingView:
    """Renders the Trainer's events on stderr. On a terminal: a tqdm bar in percent of the budget with the
    numbers a user watches, and live samples written above it. Elsewhere (a log file, a pipe, CI): plain
    lines with the same facts, one at each evaluation and at most one every PLAIN_INTERVAL seconds between,
    with no carriage returns or terminal codes. Quiet: nothing."""

    def __init__(self, quiet: bool, plain: bool | None = None, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.plain = not _is_terminal(self.stream) if plain is None else plain
        self.bar = None
        self.started: float | None = None
        self.start_fraction = 0.0  # of the budget spent when this process began (a resumed run: > 0)
        self.last_line = -math.inf

    def __call__(self, event: Event) -> None:
        if self.quiet:
            return
        if isinstance(event, SampleReport):
            loss = f", val {event.val_loss:.3f}" if event.val_loss is not None else ""
            head = f"--- sample at step {event.step}{loss} (temperature {event.temperature:g}) ---"
            text = f"{head}\n{event.text}"
            if self.plain:
                self._write(text)
            else:
                from tqdm import tqdm

                tqdm.write(text, file=sys.stderr)
            return
        if self.plain:
            if isinstance(event, StepReport):
                self._plain_line(event)
            return
        bar = self._bar()
        if isinstance(event, LimitReport):
            bar.n = 100.0
            bar.refresh()
        elif isinstance(event, StepReport):
            bar.n = min(100.0, event.fraction * 100)
            val = f"{event.best_val:.3f}" if math.isfinite(event.best_val) else "-"
            bar.set_postfix_str(
                f"step {event.step}, loss {event.loss:.3f}, val {val}, {event.chars_per_sec:,.0f} chars/s",
                refresh=True,
            )

    def _plain_line(self, event: StepReport) -> None:
        now = time.monotonic()
        fraction = min(max(event.fraction, 0.0), 1.0)
        if self.started is None:
            self.started, self.start_fraction = now, fraction
        if not (event.evaluated or now - self.last_line >= PLAIN_INTERVAL):
            return
        self.last_line = now
        elapsed = now - self.started
        done = fraction - self.start_fraction
        left = (
            f", {format_duration(elapsed * (1 - fraction) / done)} left" if done > 0 and elapsed > 0 else ""
        )
        val = f"{event.best_val:.3f}" if math.isfinite(event.best_val) else "-"
        self._write(
            f"step {event.step} ({fraction:.0%}, {format_duration(elapsed)}{left}): loss {event.loss:.3f}, "
            f"best val {val}, {event.chars_per_sec:,.0f} chars/s"
            + (" [evaluated]" if event.evaluated else "")
        )

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _bar(self):
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=100,
                unit="%",
                file=None,
                dynamic_ncols=True,
                leave=True,
                bar_format="{percentage:3.0f}%|{bar:24}| {elapsed}<{remaining}{postfix}",
            )
        return self.bar

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
