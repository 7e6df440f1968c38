"""The `charrnn` command: a thin layer over the Python API.

stdout carries only results (generated text, evaluation JSON or tables); progress, logs and summaries go
to stderr, so `charrnn sample ... | other-tool` works. Every expected failure is one line on stderr and a
non-zero status: 1 for errors, 2 for bad flags (Typer's usage box), 130/143 for SIGINT/SIGTERM.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from charrnn.config import DYNAMIC_DECAY, DYNAMIC_LR, DYNAMIC_SEGMENT
from charrnn.distributed import PeerLost
from charrnn.errors import CharrnnError
from charrnn.items import MAX_ITEMS, MAX_TRIES
from charrnn.options import check_number, with_setting_options
from charrnn.vocab import short_unit

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train character-level LSTM/GRU/RNN language models, sample text from them, and score text.",
)
err = Console(stderr=True, highlight=False)


def _show_version(value: bool) -> None:
    if value:
        from charrnn import __version__

        sys.stdout.write(f"charrnn {__version__}\n")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Train character-level LSTM/GRU/RNN language models, sample text from them, and score text."""


class Level(str, Enum):
    char = "char"
    byte = "byte"


class Backend(str, Enum):
    auto = "auto"
    gloo = "gloo"
    nccl = "nccl"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Quantize(str, Enum):
    none = "none"
    int8 = "int8"


def _quiet_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so the interpreter's final flush stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def handles_errors(func):
    """Turn expected failures into one line on stderr and the conventional exit status."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise  # Typer's own exits and usage errors
        except PeerLost as e:  # the process group is broken: leave at once (tearing it down can hang)
            _error(str(e))
            sys.stderr.flush()
            os._exit(1)
        except CharrnnError as e:
            _error(e.render(flag_name))
            raise typer.Exit(1) from None
        except BrokenPipeError:
            _quiet_stdout()
            raise typer.Exit(0) from None
        except KeyboardInterrupt as e:
            signum = getattr(e, "signum", signal.SIGINT)
            err.print(f"{signal.Signals(signum).name}: stopped at once", markup=False)
            raise typer.Exit(128 + signum) from None
        except OSError as e:  # the file system said no somewhere we did not foresee: still one line
            where = f"{e.filename}: " if e.filename else ""
            _error(f"{where}{e.strerror or e}")
            raise typer.Exit(1) from None
        except MemoryError:
            _error("not enough memory for this job; ask for less (--num-samples, --batch-size, --hidden)")
            raise typer.Exit(1) from None
        except UnicodeEncodeError as e:
            _error(
                f"the output cannot be written in this terminal's encoding ({e.encoding}); "
                "set PYTHONIOENCODING=utf-8"
            )
            raise typer.Exit(1) from None
        except Exception as e:  # a bug or an unforeseen failure: one line, the traceback on request
            if os.environ.get("CHARRNN_DEBUG"):
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            _error(
                f"unexpected {type(e).__name__}: {first[:300]}; rerun with CHARRNN_DEBUG=1 for the "
                "traceback and please report it"
            )
            raise typer.Exit(1) from None

    return wrapper


def flag_name(setting: str) -> str:
    """The command-line flag of a setting named in an error message (see errors.setting_ref)."""
    return "--" + setting.replace("_", "-")


def _error(message: str) -> None:
    err.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)


def _print_stdout(renderable) -> None:
    """Render with Rich but write through sys.stdout, so a closed pipe ends quietly like all our output."""
    console = Console()
    with console.capture() as captured:
        console.print(renderable)
    sys.stdout.write(captured.get())
    sys.stdout.flush()


ThreadsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=4096,
        help="PyTorch's intra-op CPU threads (more than the cores is allowed, usually slower) "
        "\\[default: one per core].",
    ),
]


def _apply_threads(threads: int | None) -> None:
    from charrnn.device import apply_threads

    apply_threads(threads, lambda text: err.print(text, markup=False, highlight=False))


_check = check_number  # open intervals and NaN, which Typer's min/max cannot express


def _finite(value):
    return _check(value, True, "must be a finite number")


# ---- train --------------------------------------------------------------------------------------------
@app.command()
@handles_errors
@with_setting_options  # one option per model and training setting (settings.py), after `out`
def train(
    corpus: Annotated[
        str,
        typer.Argument(
            help="Text file, '-' for stdin, a folder (every file under it), a quoted glob such as "
            "'src/**/*.py', or a named corpus (see `charrnn corpora`)."
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run folder \\[default: checkpoints/<corpus name>].")
    ] = None,
    backend: Annotated[
        Backend,
        typer.Option(
            help="Under torchrun: the process group's backend; auto is nccl on CUDA GPUs, gloo on CPUs."
        ),
    ] = Backend.auto,
    resume: Annotated[
        Path | None, typer.Option(help="Continue from this checkpoint (.pt, or a run folder's last.pt).")
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="Fine-tune: start a new run from this model's weights and architecture (a checkpoint, a "
            "run folder, or a bundled model such as 'base'); characters it never saw are added to its "
            "vocabulary.",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start afresh in a run folder that already holds a run.")
    ] = False,
    encoding: Annotated[
        str | None, typer.Option(help="Text encoding of the corpus \\[default: utf-8].")
    ] = None,
    lossy: Annotated[
        bool, typer.Option("--lossy", help="Replace undecodable bytes instead of failing.")
    ] = False,
    level: Annotated[
        Level | None,
        typer.Option(
            help="char: the corpus's characters are the symbols; byte: the 256 byte values are (any input "
            "trains, nothing is ever unknown) \\[default: char, or the checkpoint's when resuming].",
        ),
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(
            help="For a folder or glob corpus: keep only files whose relative path or name matches this "
            "glob (repeatable).",
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            help="For a folder or glob corpus: leave out files whose relative path or name matches this "
            "glob (repeatable).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    settings: dict | None = None,
) -> None:
    """Train a character model on a text and write checkpoints to its run folder.

    Examples:

      charrnn train shakespeare --max-time 10m

      charrnn train shakespeare --max-time 10m --sample-every 1 --sample-length 300

      charrnn train src/ --include '*.py' --max-time 30m --out runs/code

      charrnn train 'logs/**/*.txt' --level byte --max-steps 5000

      charrnn train my-letters.txt --init base --max-time 5m

      torchrun --standalone --nproc-per-node 4 -m charrnn train big.txt --max-time 1h
    """
    from charrnn.session import TrainRequest, run_training

    request = TrainRequest(
        corpus=corpus,
        out=out,
        resume=resume,
        init=init,
        overwrite=overwrite,
        encoding=encoding,
        lossy=lossy,
        level=level.value if level else None,
        backend=backend.value,
        include=include or [],
        exclude=exclude or [],
        quiet=quiet,
        settings=settings or {},
    )
    status = run_training(request, err)
    if status:
        raise typer.Exit(status)


# ---- sample -------------------------------------------------------------------------------------------
@app.command()
@handles_errors
def sample(
    checkpoint: Annotated[Path, typer.Argument(help="A .pt checkpoint or a run folder (uses best.pt).")],
    prime: Annotated[
        str | None,
        typer.Option("--prime", "-p", help="Text to start from ('-' reads stdin) \\[default: a newline]."),
    ] = None,
    length: Annotated[
        int,
        typer.Option(
            "--length",
            "-n",
            min=1,
            help="New characters (bytes for a byte-level model) to generate per sample.",
        ),
    ] = 500,
    temperature: Annotated[
        float,
        typer.Option(
            "--temperature", "-T", min=0.0, callback=_finite, help="Softmax temperature; 0 is greedy."
        ),
    ] = 1.0,
    top_k: Annotated[
        int | None, typer.Option(min=1, help="Sample only from the K most likely characters.")
    ] = None,
    top_p: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            callback=lambda v: _check(v, v is None or v > 0, "must be above 0 and at most 1"),
            max=1.0,
            help="Sample from the smallest set of characters with probability >= P.",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            min=0, max=2**63 - 1, help="Random seed: same seed, checkpoint and flags give the same text."
        ),
    ] = None,
    num_samples: Annotated[
        int,
        typer.Option(min=1, help="Samples to generate (in batches of bounded size), printed in turn."),
    ] = 1,
    separator: Annotated[
        str, typer.Option(help="Printed between samples (backslash escapes allowed).")
    ] = "\\n---\\n",
    drop_unknown: Annotated[
        bool, typer.Option("--drop-unknown", help="Drop prime characters the model does not know.")
    ] = False,
    device: Annotated[Device, typer.Option(help="auto picks CUDA when present.")] = Device.auto,
    threads: ThreadsOption = None,
    prime_file: Annotated[
        Path | None,
        typer.Option(
            "--prime-file",
            help="Read the prime from this file instead of --prime; it is not echoed, only the new text is.",
        ),
    ] = None,
    adapt: Annotated[
        bool,
        typer.Option(
            "--adapt",
            help="Before sampling, let the model learn from the prime (dynamic evaluation), so a long prime "
            "steers the style and not only the state.",
        ),
    ] = False,
    adapt_lr: Annotated[
        float,
        typer.Option(
            callback=lambda v: _check(v, v > 0, "must be above 0"),
            help="Step size of --adapt (as --dynamic-lr of evaluate).",
        ),
    ] = DYNAMIC_LR,
    quantize: Annotated[
        Quantize,
        typer.Option(
            help="int8: generate with int8 recurrent weights, faster on CPUs; `evaluate --quantize int8` "
            "measures what it costs.",
        ),
    ] = Quantize.none,
    stop: Annotated[
        list[str] | None,
        typer.Option(
            help="End a sample where it first writes this text, which is not printed (repeatable; "
            "backslash escapes). E.g. --stop '\\n\\n' --stop 'THE END'",
        ),
    ] = None,
    items: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_ITEMS,
            help="Write N complete items (the text between two --delimiter), one per line, from parallel "
            "streams. E.g. --items 50 --unique --novel",
        ),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option(
            help="What separates items (backslash escapes) \\[default: a newline]. E.g. --delimiter '\\n\\n' "
            "for paragraphs",
        ),
    ] = None,
    min_chars: Annotated[
        int | None,
        typer.Option(min=0, help="Drop items shorter than N characters \\[default: 1]. E.g. --min-chars 4"),
    ] = None,
    max_chars: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Abandon items growing past N characters \\[default: the --length cap]. E.g. --max-chars 12",
        ),
    ] = None,
    unique: Annotated[
        bool, typer.Option("--unique", help="Never write the same item twice. E.g. --items 100 --unique")
    ] = False,
    novel: Annotated[
        bool,
        typer.Option(
            "--novel",
            help="Drop items that occur as a whole item in the training corpus. E.g. --items 50 --novel",
        ),
    ] = False,
    max_overlap: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Drop items sharing K or more consecutive characters with the corpus. E.g. --max-overlap 20",
        ),
    ] = None,
    corpus: Annotated[
        str | None,
        typer.Option(
            help="The corpus --novel and --max-overlap compare with \\[default: the one the checkpoint was "
            "trained on]. E.g. --corpus names.txt",
        ),
    ] = None,
    max_tries: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_TRIES,
            help="Give up after N finished or abandoned items \\[default: 50 per item asked for]. "
            "E.g. --max-tries 10000",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="One JSON object per sample or item and line: text, chars, logprob, nats_per_char, finish. "
            "E.g. --json | jq -r .text",
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No summary line on stderr after --items.")
    ] = False,
) -> None:
    """Generate text from a trained model; only the text goes to stdout.

    Examples:

      charrnn sample checkpoints/tinyshakespeare --prime "ROMEO:" --length 300 --temperature 0.8

      charrnn sample run/ --prime-file chapter1.txt --adapt --length 2000 > chapter2.txt

      charrnn sample checkpoints/names --items 50 --unique --novel --temperature 0.7
    """
    from charrnn.checkpoint import load_checkpoint, model_from_checkpoint
    from charrnn.device import pick_device
    from charrnn.engine import Engine
    from charrnn.sample import SamplingConfig, check_prime, write_samples

    item_flags = {
        "--delimiter": delimiter is not None,
        "--min-chars": min_chars is not None,
        "--max-chars": max_chars is not None,
        "--unique": unique,
        "--novel": novel,
        "--max-overlap": max_overlap is not None,
        "--corpus": corpus is not None,
        "--max-tries": max_tries is not None,
    }
    if items is None:
        given = [flag for flag, on in item_flags.items() if on]
        if given:
            raise CharrnnError(f"{given[0]} works on items: add --items N (how many to write)")
    elif num_samples != 1:
        raise CharrnnError("give --items N (complete items) or --num-samples N (texts of --length), not both")
    stops = tuple(_unescaped(s, "--stop") for s in stop or ())
    _apply_threads(threads)
    dev = pick_device(device.value)
    prime, echo = _read_prime(prime, prime_file)
    blob = load_checkpoint(checkpoint)
    model, vocab = model_from_checkpoint(blob, dev)
    prime = check_prime(vocab, prime or "", drop_unknown) if prime is not None else None
    if adapt:
        model = _adapt_to_prime(model, vocab, prime or "", adapt_lr, dev)
    engine = Engine(model, vocab, dev, quantize.value)
    config = SamplingConfig(length, temperature, top_k, top_p, seed, num_samples, stops)
    if items is None:
        sep = _unescaped(separator, "--separator")
        write_samples(sys.stdout, engine, prime or "", config, sep, echo, as_json)
        return
    from charrnn.items import ItemFilters, ItemRun, corpus_matcher, write_items

    delim = _unescaped(delimiter if delimiter is not None else "\\n", "--delimiter")
    filters = ItemFilters(1 if min_chars is None else min_chars, max_chars, unique, novel, max_overlap)
    filters.check()
    engine.symbols.encode(delim, "delimiter")  # before the corpus is read for the filters
    matcher = None
    if filters.needs_corpus:
        matcher = corpus_matcher(blob, delim, corpus, report=lambda note: err.print(note, markup=False))
    run = ItemRun(
        engine,
        items,
        prime,
        delim,
        config.sampling,
        seed,
        filters,
        matcher,
        max_tries,
        stops,
        length,
    )
    try:
        write_items(sys.stdout, run, as_json)
    except KeyboardInterrupt:
        err.print(run.counts.summary(), markup=False, highlight=False)  # what it had when stopped
        raise
    if not run.counts.complete:
        _error(run.counts.summary() + "; loosen the filters, raise --max-tries or train the model longer")
        raise typer.Exit(1)
    if not quiet:
        err.print(run.counts.summary(), markup=False, highlight=False)


def _unescaped(value: str, flag: str) -> str:
    """A flag's text with backslash escapes (\\n, \\t, \\x1c...) turned into the characters."""
    try:
        return value.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:
        raise CharrnnError(
            f"{flag} {value!r} has a broken backslash escape; write \\\\ for a backslash"
        ) from None


def _read_prime(prime: str | None, prime_file: Path | None) -> tuple[str | None, bool]:
    """The prime as given by --prime (text, or '-' for stdin) or --prime-file, and whether to echo it."""
    from charrnn.corpus import decode_bytes, read_input_bytes

    if prime_file is not None:
        if prime is not None:
            raise CharrnnError("give the prime with --prime or --prime-file, not both")
        text = decode_bytes(
            bytes(read_input_bytes(str(prime_file))),
            source=str(prime_file),
            hint="give the prime as a UTF-8 text file",
        )
        return text, False
    if prime == "-":
        prime = decode_bytes(
            bytes(read_input_bytes("-")),
            source="the prime on standard input",
            hint="give the prime as UTF-8 text",
        )
    return prime, True


def _adapt_to_prime(model, vocab, prime: str, lr: float, dev):
    """The model after dynamic evaluation over the prime (see dynamic.py); says on stderr what it learned."""
    from charrnn.dynamic import DynamicConfig, dynamic_sums
    from charrnn.errors import BadInput

    ids = vocab.encode(prime)  # a byte a symbol for most vocabularies; read segment by segment
    if ids.numel() < 2:
        raise BadInput("--adapt learns from the prime: give a prime of at least 2 characters")
    total, count, adapted = dynamic_sums(model, ids, dev, DynamicConfig(lr=lr))
    err.print(
        f"adapted to the prime ({count:,} {vocab.unit}s, {total / count:.3f} nats each while reading it)",
        markup=False,
        highlight=False,
    )
    return adapted.eval()


# ---- evaluate -----------------------------------------------------------------------------------------
@app.command()
@handles_errors
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="A .pt checkpoint or a run folder (uses best.pt).")],
    text: Annotated[str, typer.Argument(help="Text file to score, or '-' for stdin.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object to stdout instead of a table.")
    ] = False,
    device: Annotated[Device, typer.Option(help="auto picks CUDA when present.")] = Device.auto,
    threads: ThreadsOption = None,
    encoding: Annotated[
        str | None, typer.Option(help="Text encoding of the file \\[default: utf-8].")
    ] = None,
    lossy: Annotated[
        bool, typer.Option("--lossy", help="Replace undecodable bytes instead of failing.")
    ] = False,
    show: Annotated[
        bool,
        typer.Option(
            "--show",
            help="Also print the text on stderr, each character coloured by its surprisal (a heat map).",
        ),
    ] = False,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Also write a self-contained HTML page: the text coloured by surprisal, the top 5 "
            "predictions on hover, and a neuron view (every unit's activation; units that follow "
            "quotes, brackets, line position... listed first).",
        ),
    ] = None,
    max_chars: Annotated[
        int,
        typer.Option(
            "--max-chars",
            min=1,
            max=100_000,
            help="Characters (bytes for a byte-level model) shown by --show and --html: the first N. "
            "The score always covers the whole text.",
        ),
    ] = 2000,
    dynamic: Annotated[
        bool,
        typer.Option(
            "--dynamic",
            help="Also score with dynamic evaluation: the model takes a gradient step after each segment "
            "it has scored, so it adapts to the text (Krause et al. 2018). Reported beside the static "
            "score.",
        ),
    ] = False,
    dynamic_lr: Annotated[
        float,
        typer.Option(
            callback=lambda v: _check(v, v > 0, "must be above 0"),
            help="Step size of dynamic evaluation (RMS-normalised: roughly how far each weight moves).",
        ),
    ] = DYNAMIC_LR,
    dynamic_segment: Annotated[
        int, typer.Option(min=1, max=100_000, help="Characters scored between two dynamic steps.")
    ] = DYNAMIC_SEGMENT,
    dynamic_decay: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            callback=lambda v: _check(v, v < 1, "must be at least 0 and below 1"),
            help="Pull the weights back towards the trained ones by this fraction after each step.",
        ),
    ] = DYNAMIC_DECAY,
    quantize: Annotated[
        Quantize,
        typer.Option(
            help="int8: score with the int8 weights `sample --quantize int8` generates with (one character "
            "at a time, on the CPU), to see what they cost.",
        ),
    ] = Quantize.none,
) -> None:
    """Score how well a model predicts a text: nats and bits per character, perplexity.

    The text is streamed through the model, so a file of any size is scored in constant memory.
    Byte-level models report bits per byte.

    Examples:

      charrnn evaluate checkpoints/tinyshakespeare val.txt --json

      charrnn evaluate run/ poem.txt --show

      charrnn evaluate run/ poem.txt --html poem.html --max-chars 5000

      charrnn evaluate run/ other-author.txt --dynamic
    """
    from charrnn.evaluate import prepare_scoring

    _apply_threads(threads)

    job = prepare_scoring(checkpoint, text, device.value, encoding, lossy)
    if html is not None:
        _check_writable(html, "--html")
    scorer = None
    if quantize is not Quantize.none:
        from charrnn.quantize import SteppedModel, make_stepper

        scorer = SteppedModel(job.model, make_stepper(job.model, quantize.value))
    score = job.score(scorer)
    if show or html is not None:
        _views(job, score, text, show, html, max_chars)
    adapted = None  # the dynamic score
    if dynamic:
        from tqdm import tqdm

        from charrnn.dynamic import DynamicConfig, dynamic_score

        config = DynamicConfig(lr=dynamic_lr, segment=dynamic_segment, decay=dynamic_decay)
        with tqdm(
            total=max(job.ids.numel() - 1, 0),
            desc="dynamic evaluation",
            unit=short_unit(job.vocab.unit),
            unit_scale=True,
            leave=False,
            disable=not sys.stderr.isatty(),
        ) as bar:
            adapted = dynamic_score(job.model, job.ids, job.device, config, on_progress=bar.update)
    result = {"checkpoint": str(job.checkpoint.path), "text": text, **score.to_dict()}
    result["quantize"] = quantize.value
    if score.unit == "byte":
        result["bpb"] = score.bpc
    if adapted is not None:
        result["dynamic"] = {
            **{k: v for k, v in adapted.to_dict().items() if k in ("nats", "bpc", "perplexity", "chars")},
            "gain_nats": score.nats - adapted.nats,
            "lr": dynamic_lr,
            "segment": dynamic_segment,
            "decay": dynamic_decay,
        }
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        return
    table = Table(title=f"{text} scored by {job.checkpoint.path}", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    short = short_unit(score.unit)
    table.add_row(f"cross-entropy (nats/{short})", f"{score.nats:.4f}")
    table.add_row(f"bits per {score.unit}", f"{score.bpc:.4f}")
    table.add_row("perplexity", f"{score.perplexity:.3f}")
    if adapted is not None:
        table.add_row(f"dynamic cross-entropy (nats/{short})", f"{adapted.nats:.4f}")
        table.add_row(f"dynamic bits per {score.unit}", f"{adapted.bpc:.4f}")
        table.add_row("dynamic perplexity", f"{adapted.perplexity:.3f}")
        table.add_row("gain from dynamic evaluation (nats)", f"{score.nats - adapted.nats:+.4f}")
    table.add_row(f"{score.unit}s scored", f"{score.chars:,}")
    if score.unit != "byte":
        table.add_row("unknown characters (skipped)", f"{score.unknown:,}")
    _print_stdout(table)


def _check_writable(path: Path, flag: str) -> None:
    """Refuse an output path that cannot be written before the work, not after it."""
    if path.is_dir():
        raise CharrnnError(f"{flag} {path} is a folder; give a file name such as {path / 'page.html'}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise CharrnnError(f"{flag} {path}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise CharrnnError(f"{flag} {path}: cannot write in {folder} (permission denied)")


def _views(job, score, text_name: str, show: bool, html: Path | None, max_chars: int) -> None:
    """The --show heat map and the --html page, over the first `max_chars` symbols of the scored ids."""
    from charrnn.model import count_parameters
    from charrnn.trace import trace_ids

    shown = min(max_chars, job.ids.numel())
    trace = trace_ids(job.model, job.vocab, job.ids[:shown].clone())
    unit = job.vocab.unit
    cap = None
    if shown < job.ids.numel():
        cap = (
            f"showing the first {shown:,} of {job.ids.numel():,} {unit}s (--max-chars); "
            "the score covers the whole text"
        )
    mean_bits = trace.bits_total / trace.scored if trace.scored else float("nan")
    cfg = job.model.config
    line = (
        f"{cfg.cell} {cfg.layers}x{cfg.hidden} ({count_parameters(job.model):,} parameters), "
        f"{job.checkpoint.path}: {score.bpc:.4f} bits per {unit} over {score.chars:,} {unit}s"
        f"{'' if not job.unknown else f' ({job.unknown:,} unknown characters skipped)'}; "
        f"shown: {mean_bits:.4f} bits per {unit} over {trace.scored:,}"
    )
    if show:
        from charrnn.show import show_heat_map

        show_heat_map(err, trace, f"{text_name}: {line}", cap)
    if html is not None:
        from charrnn.page import write_page

        summary = {"title": f"{text_name} read by {job.checkpoint.path.name}", "line": line, "cap": cap}
        write_page(html, trace, job.vocab.chars, summary, f"charrnn: {text_name}")
        err.print(f"wrote {html}", markup=False, highlight=False)


# ---- plot ---------------------------------------------------------------------------------------------
@app.command()
@handles_errors
def plot(
    runs: Annotated[
        list[Path],
        typer.Argument(help="Run folders (or their metrics.jsonl files) to draw, one colour each."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Write an image instead: FILE.png or FILE.svg (the format follows the name)."
        ),
    ] = None,
    width: Annotated[
        int | None,
        typer.Option(
            min=20,
            max=20000,
            help="Image width in pixels \\[default: 1200], or terminal plot width in columns "
            "\\[default: the terminal's].",
        ),
    ] = None,
    height: Annotated[
        int | None,
        typer.Option(
            min=10,
            max=20000,
            help="Image height in pixels \\[default: 800], or the terminal loss panels' height in rows "
            "\\[default: from the terminal's].",
        ),
    ] = None,
) -> None:
    """Draw training and validation loss against step and time, learning rate and speed, from runs'
    metrics.jsonl: several runs on one plot, one colour each, to compare them.

    Without --out the plot is drawn in the terminal, on stdout (colours only when that is a terminal).

    Needs the plotting extra: pip install 'charrnn\\[plot]'.

    Examples:

      charrnn plot checkpoints/shakespeare

      charrnn plot runs/small runs/large --out compare.png

      charrnn plot runs/*/ --out compare.svg --width 1600 --height 1000
    """
    import shutil

    from charrnn.plot import image_format, read_runs, save_image, terminal_plot

    if out is not None:
        image_format(out)  # refuse an unknown extension before reading anything
        if (width is not None and width < 200) or (height is not None and height < 150):
            raise CharrnnError("an image needs --width 200 and --height 150 pixels at least")
    series = read_runs(runs, warn=lambda message: err.print(f"warning: {message}", markup=False))
    if out is not None:
        save_image(series, out, width or 1200, height or 800)
        err.print(f"wrote {out}", markup=False)
        return
    columns, rows = shutil.get_terminal_size((100, 30))
    text = terminal_plot(
        series,
        width or columns,
        height or max(12, min(rows * 2 // 3, 30)),
        colour=sys.stdout.isatty() and not os.environ.get("NO_COLOR"),
    )
    sys.stdout.write(text)
    sys.stdout.flush()


# ---- info ---------------------------------------------------------------------------------------------
@app.command()
@handles_errors
def info(
    checkpoint: Annotated[Path, typer.Argument(help="A .pt checkpoint or a run folder (uses best.pt).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object to stdout instead of a panel.")
    ] = False,
) -> None:
    """Show what a checkpoint holds: model shape and size, vocabulary, corpus, training progress, the
    flags it was trained with, format version and file size.

    Examples:

      charrnn info checkpoints/shakespeare

      charrnn info runs/code/last.pt --json | jq .parameters
    """
    from charrnn.checkpoint import load_checkpoint
    from charrnn.info import checkpoint_info, info_panel

    facts = checkpoint_info(load_checkpoint(checkpoint))
    if as_json:
        sys.stdout.write(json.dumps(facts, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return
    _print_stdout(info_panel(facts))


# ---- export -------------------------------------------------------------------------------------------
class ExportFormat(str, Enum):
    safetensors = "safetensors"
    onnx = "onnx"
    html = "html"


@app.command()
@handles_errors
def export(
    checkpoint: Annotated[
        Path, typer.Argument(help="A .pt checkpoint, a run folder (uses best.pt) or a bundled model's name.")
    ],
    format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            "-f",
            help="safetensors: the weights and the settings any program can read; onnx: one graph for "
            "onnxruntime (prime and step, the state explicit); html: one page that writes text in the "
            "browser, offline.",
        ),
    ] = ExportFormat.safetensors,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="The file to write \\[default: <run name>.<format> here]."),
    ] = None,
) -> None:
    """Write a model in a format other programs read (README: "Export").

    Examples:

      charrnn export checkpoints/shakespeare --format safetensors --out shakespeare.safetensors

      charrnn export checkpoints/shakespeare --format onnx --out shakespeare.onnx

      charrnn export checkpoints/shakespeare --format html --out shakespeare.html
    """
    from charrnn.export.run import export_model

    written = export_model(checkpoint, format.value, out)
    err.print(f"wrote {written} ({written.stat().st_size:,} bytes)", markup=False, highlight=False)


# ---- corpora ------------------------------------------------------------------------------------------
@app.command()
@handles_errors
def corpora() -> None:
    """List the named corpora that `charrnn train NAME` accepts."""
    from charrnn.named_corpora import CORPORA

    table = Table()
    for col in ("name", "what", "source", "licence"):
        table.add_column(col, overflow="fold")
    for c in CORPORA.values():
        table.add_row(c.name, c.description, c.source, c.licence)
    _print_stdout(table)


# ---- serve --------------------------------------------------------------------------------------------
@app.command()
@handles_errors
def serve(
    checkpoints: Annotated[
        list[Path], typer.Argument(help="Checkpoints (.pt files or run folders) to serve, each loaded once.")
    ],
    name: Annotated[
        list[str] | None,
        typer.Option(
            help="The model's name in the API, one per checkpoint \\[default: its run folder's name]."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 for every interface.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    device: Annotated[Device, typer.Option(help="auto picks CUDA when present.")] = Device.auto,
    threads: ThreadsOption = None,
    quantize: Annotated[
        Quantize, typer.Option(help="int8: generate with int8 recurrent weights.")
    ] = Quantize.none,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="CHARRNN_API_KEY",
            show_envvar=True,
            help="Require 'Authorization: Bearer KEY' on every endpoint but /health and the page.",
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(help="Allow browser requests from this origin (repeatable; off by default)."),
    ] = None,
    max_batch: Annotated[int, typer.Option(min=1, max=4096, help="Completions generated together.")] = 64,
    max_queue: Annotated[
        int,
        typer.Option(min=0, max=100_000, help="Requests waiting for room; more get 429 with Retry-After."),
    ] = 256,
    max_tokens: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="The most characters one completion may ask for.")
    ] = 4096,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No access log, no start-up line.")] = False,
) -> None:
    """Serve models over HTTP: OpenAI's /v1/completions (streaming too), /v1/models, /health, /metrics,
    /generate, /v1/score, and a playground page at /.

    Examples:

      charrnn serve checkpoints/shakespeare

      curl -N localhost:8000/v1/completions -H 'Content-Type: application/json'
      -d '{"prompt": "ROMEO:", "max_tokens": 200, "stream": true}'
    """
    from charrnn.serve.run import ServeRequest

    _apply_threads(threads)
    from charrnn.serve.run import serve as run_server

    request = ServeRequest(
        checkpoints=list(checkpoints),
        names=list(name or []),
        host=host,
        port=port,
        device=device.value,
        quantize=quantize.value,
        api_key=api_key or None,
        cors_origins=tuple(cors_origin or ()),
        max_batch=max_batch,
        max_queue=max_queue,
        max_tokens=max_tokens,
        quiet=quiet,
    )
    run_server(request, note=lambda line: err.print(line, markup=False, highlight=False, soft_wrap=True))


# ---- novelty ------------------------------------------------------------------------------------------
@app.command()
@handles_errors
def novelty(
    text: Annotated[str, typer.Argument(help="Text file to check, or '-' for stdin (e.g. piped samples).")],
    corpus: Annotated[
        str,
        typer.Argument(
            help="The corpus to compare against: a text file, a folder, a quoted glob or a named corpus "
            "(as for `charrnn train`)."
        ),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object to stdout instead of a table.")
    ] = False,
    ngram: Annotated[
        list[int] | None,
        typer.Option(
            "--ngram",
            "-k",
            min=1,
            max=100_000,
            help="Report the share of the text's K-character substrings found in the corpus (repeatable) "
            "[default: 10, 20 and 50].",
        ),
    ] = None,
    encoding: Annotated[
        str | None, typer.Option(help="Text encoding of the text and the corpus [default: utf-8].")
    ] = None,
    lossy: Annotated[
        bool, typer.Option("--lossy", help="Replace undecodable bytes instead of failing.")
    ] = False,
    level: Annotated[
        Level, typer.Option(help="Compare characters, or bytes (as a corpus trained with --level byte).")
    ] = Level.char,
    include: Annotated[
        list[str] | None,
        typer.Option(help="For a folder or glob corpus: keep only files matching this glob (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(help="For a folder or glob corpus: leave out files matching this glob (repeatable)."),
    ] = None,
) -> None:
    """How much of a text is copied verbatim from a corpus: the longest shared substring (and where it is in
    both), the share of the text's 10-, 20- and 50-character substrings found in the corpus, and the share
    of its words (runs of letters, digits and underscores) that occur in it as words.

    The first run on a corpus builds an index (a suffix array, about a minute per 100 MB) and keeps it
    beside the corpus's encoded form in the cache; later runs answer in about a second.

    Examples:

      charrnn sample runs/shakespeare -n 2000 | charrnn novelty - shakespeare

      charrnn novelty generated.txt corpus.txt --json

      charrnn novelty out.py 'src/**/*.py' -k 30 -k 100
    """
    from charrnn.corpus import check_level, decode_bytes, load_corpus, read_input_bytes
    from charrnn.novelty import DEFAULT_NGRAMS, load_index
    from charrnn.novelty import novelty as score_novelty
    from charrnn.sources import find_source

    if text == "-" and corpus == "-":
        raise CharrnnError(
            "only one of TEXT and CORPUS can be '-' (standard input); give the other as a file"
        )
    check_level(level.value, encoding, lossy)
    label = "the text on standard input" if text == "-" else text
    data = read_input_bytes(text)
    content = decode_bytes(bytes(data), encoding or "utf-8", lossy, source=label)
    del data
    if not content:
        raise CharrnnError(f"{label} is empty; give the text to check")

    def note(message: str) -> None:
        err.print(message, markup=False, highlight=False)

    loaded = load_corpus(
        corpus,
        encoding=encoding,
        lossy=lossy,
        level=level.value,
        include=include or [],
        exclude=exclude or [],
        report=note,
    )
    ids = loaded.ids.numpy()
    corpus_label = loaded.source.get("label", corpus)
    index = load_index(ids, loaded.vocab, loaded.token_path, loaded.fingerprint, corpus_label, note)
    several = loaded.source.get("kind") in ("folder", "glob")
    files = None
    if several and not loaded.source.get("skipped"):  # the files in the order they were encoded
        source = find_source(corpus, include or [], exclude or [])
        if len(source.files) == loaded.source.get("files"):
            files = [source.relative(p) for p in source.files]
    report = score_novelty(content, ids, loaded.vocab, index, ngram or DEFAULT_NGRAMS, files, several)
    result = {"text": text, "corpus": corpus_label, **report.to_dict()}
    if as_json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return
    unit = short_unit(report.unit)
    table = Table(title=f"{'stdin' if text == '-' else text} against {corpus_label}", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("", overflow="fold")
    longest = report.longest
    table.add_row(f"longest shared substring ({unit}s)", f"{longest['length']:,}", _shown(longest["text"]))
    if longest["length"]:
        table.add_row("  in the text at", f"{longest['text_offset']:,}", f"line {longest['text_line']:,}")
        where = f"line {longest['corpus_line']:,}"
        if longest.get("file") is not None:
            where = f"{longest['file']} line {longest['file_line']:,}"
        elif longest.get("file_index") is not None:
            where = f"file #{longest['file_index'] + 1} line {longest['file_line']:,}"
        table.add_row("  in the corpus at", f"{longest['corpus_offset']:,}", where)
        table.add_row("  occurrences in the corpus", f"{longest['occurrences']:,}", "")
    for k, stats in report.ngrams.items():
        if stats["share"] is None:
            table.add_row(f"{k}-{unit} substrings found", "n/a", f"the text is shorter than {k} {unit}s")
        else:
            table.add_row(
                f"{k}-{unit} substrings found",
                f"{stats['share']:.1%}",
                f"{stats['found']:,} of {stats['total']:,}",
            )
    words = report.words
    if words["share"] is None:
        table.add_row("words found", "n/a", "the text has no words")
    else:
        table.add_row("words found", f"{words['share']:.1%}", f"{words['found']:,} of {words['total']:,}")
        table.add_row(
            "distinct words found",
            f"{words['distinct_found'] / words['distinct']:.1%}",
            f"{words['distinct_found']:,} of {words['distinct']:,}",
        )
        if words["novel"]:
            table.add_row("  new words", "", _shown(" ".join(words["novel"][:10])))
    _print_stdout(table)


def _shown(text: str, limit: int = 200) -> Text:
    """A piece of text for a table cell: control characters escaped, long ones cut in the middle."""
    if len(text) > limit:
        text = f"{text[: limit // 2]} … {text[-limit // 2 :]}"
    return Text("".join(c if c.isprintable() else repr(c)[1:-1] for c in text))


def main() -> None:
    # started with a standard stream closed (`<&-`, `>&-`): read or write nothing through it
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, mode))  # noqa: SIM115
    stdout_before = _stdout_identity()
    try:
        app()
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(0)
    except SystemExit as e:
        # Rich and Click answer a closed pipe while printing help by pointing stdout at /dev/null and exiting
        # with 1; a closed pipe is not an error here
        if e.code == 1 and stdout_before != _stdout_identity() == _identity(os.devnull):
            sys.exit(0)
        if torch_distributed_started():
            # under torchrun every file is written and synced by now; leave without tearing the process
            # group down, which gloo's threads can turn into an abort (exit -6 instead of our status)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(e.code if isinstance(e.code, int) else 1)
        raise


def torch_distributed_started() -> bool:
    """Whether this process joined a process group (without importing torch if it never did)."""
    distributed = sys.modules.get("torch.distributed")
    return distributed is not None and distributed.is_available() and distributed.is_initialized()


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
        return st.st_dev, st.st_ino
    except OSError:
        return None


def _stdout_identity() -> tuple[int, int] | None:
    try:
        st = os.fstat(sys.stdout.fileno())
        return st.st_dev, st.st_ino
    except (OSError, ValueError, AttributeError):
        return None
