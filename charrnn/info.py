"""What a checkpoint is: its model, vocabulary, corpus, training and flags, as a dict and as a Rich panel.

`checkpoint_info` gathers plain JSON-ready facts (the `--json` output, stable keys, None where the file
does not say); `info_panel` renders the same dict for people. Older checkpoints lack some facts (version 1
has no level, corpus or history): those show as unknown rather than failing.
"""

from __future__ import annotations

import math

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from charrnn.bundled import bundled_name
from charrnn.checkpoint import FORMAT, SAFETENSORS_FORMAT, SAFETENSORS_VERSION, Checkpoint
from charrnn.config import format_bytes, format_duration
from charrnn.evaluate import LN2
from charrnn.model import count_parameters
from charrnn.settings import reproduce_flags
from charrnn.vocab import short_unit

VOCAB_SHOWN = 2000  # characters of a huge vocabulary listed in the panel (--json has all)
NAMED_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def escape_char(c: str) -> str:
    """A character as it can be read: whitespace and control characters as escapes, the rest as is."""
    if c in NAMED_ESCAPES:
        return NAMED_ESCAPES[c]
    if c.isprintable() and not c.isspace():
        return c
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable_vocab(chars: list[str]) -> str:
    return "".join(escape_char(c) for c in chars)


def _finite(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value


def checkpoint_info(checkpoint: Checkpoint) -> dict:
    """Everything `charrnn info` reports about a loaded checkpoint, as JSON-ready values."""
    path = checkpoint.path
    model = checkpoint.build_model()
    vocab = checkpoint.vocab
    model_config = checkpoint.model_config.to_dict()
    train_config = checkpoint.train_config.to_dict() if checkpoint.train_config else {}
    progress = checkpoint.progress
    history = checkpoint.history
    corpus = checkpoint.corpus
    step = progress.step if progress else None
    # the fractional epoch is logged at each evaluation; the checkpoint is written at one
    last = history[-1] if history and isinstance(history[-1], dict) else {}
    epochs = last.get("epoch") if last.get("step") == step else (progress.epoch if progress else None)
    best = _finite(progress.best_val) if progress else None
    safetensors = path is not None and path.suffix == ".safetensors"
    try:
        size = path.stat().st_size
    except OSError:
        size = None
    return {
        "checkpoint": str(path),
        "file_size": size,
        "format": SAFETENSORS_FORMAT if safetensors else FORMAT,
        "format_version": SAFETENSORS_VERSION if safetensors else checkpoint.file_version,
        "resumable": checkpoint.training is not None,
        "cell": model_config.get("cell"),
        "layers": model_config.get("layers"),
        "hidden": model_config.get("hidden"),
        "embedding": model_config.get("embedding"),
        "input": model_config.get("input", "embedding"),
        "parameters": count_parameters(model),
        "level": checkpoint.level,
        "vocab_size": len(vocab),
        "vocab": vocab.to_list(),
        "corpus": {
            "name": corpus.name,
            "size": corpus.chars,
            "sha256": corpus.sha256,
            "source": corpus.origin.get("spec"),
        },
        "steps": step,
        "epochs": epochs,
        "training_time": _finite(progress.elapsed) if progress else None,
        "evaluation_time": _finite(progress.eval_time) if progress else None,
        "best_val_loss": best,
        "best_val_bpc": best / LN2 if best is not None else None,
        "evaluations": len(history),
        "flags": reproduce_flags(
            model_config, train_config, checkpoint.level if checkpoint.file_version > 1 else None
        )
        + _init_flag(checkpoint.lineage),
        "model_config": model_config,
        "train_config": train_config,
        "initialised_from": dict(checkpoint.lineage) or None,
        "bundled": bundled_name(path) if path is not None else None,
        "about": dict(checkpoint.about) or None,
    }


def _init_flag(lineage: dict) -> list[str]:
    """`--init SOURCE` for a fine-tuned run: the bundled model's name, else the source's path."""
    source = lineage.get("name") or lineage.get("path")
    return ["--init", str(source)] if source else []


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{format_bytes(n)} ({n:,} bytes)" if n >= 1e3 else f"{n:,} bytes"


def _or_unknown(value, fmt=str) -> Text:
    return Text(fmt(value)) if value is not None else Text("unknown", style="dim")


def _lineage_rows(row, lineage: dict | None, unit: str) -> None:
    """What a fine-tuned run started from (finetune.lineage)."""
    if not lineage:
        return
    name, path = lineage.get("name"), lineage.get("path")
    row("fine-tuned from", Text(f"{name} (bundled), {path}" if name else str(path)))
    if lineage.get("fingerprint"):
        row("  its file", f"sha256 {lineage['fingerprint']}")
    corpus = lineage.get("corpus") or {}
    size = f", {corpus['chars']:,} {unit}s" if corpus.get("chars") else ""
    row("  its corpus", Text(f"{corpus.get('name') or 'unknown'}{size}"))
    added = lineage.get("added") or []
    if lineage.get("level") == "char":
        head = f"{len(added)} new character{'s' if len(added) != 1 else ''}"
        row("  vocabulary grown", f"{head} after its {lineage.get('source_vocab_size')}")
        if added:
            row("", Text(printable_vocab(added[:VOCAB_SHOWN]), style="cyan"))


def info_panel(info: dict) -> Panel:
    """The facts as a two-column panel; values are Text, so vocabulary or paths never read as markup."""
    unit = short_unit(info["level"])
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")

    def row(label: str, value) -> None:
        grid.add_row(label, value if isinstance(value, Text) else Text(str(value)))

    cell = (info["cell"] or "unknown").upper()
    layers = f"{info['layers']} layer" + ("" if info["layers"] == 1 else "s")
    shape = f"{cell}, {layers} x {info['hidden']} hidden units"
    shape += f", {info['embedding']}-wide embedding" if info["input"] == "embedding" else ", one-hot input"
    if info.get("bundled"):
        row("bundled model", Text(f"{info['bundled']} (ships with charrnn)", style="bold"))
    for key, value in (info.get("about") or {}).items():
        row(f"  {key}", str(value))
    row("model", shape)
    row("parameters", f"{info['parameters']:,}")
    if info["level"] == "byte":
        row("vocabulary", "the 256 byte values (byte level)")
    else:
        shown = printable_vocab(info["vocab"][:VOCAB_SHOWN])
        more = info["vocab_size"] - VOCAB_SHOWN
        row(
            "vocabulary",
            f"{info['vocab_size']:,} characters (char level; escapes for whitespace and controls)",
        )
        row("", Text(shown + (f" ... and {more:,} more" if more > 0 else ""), style="cyan"))
    corpus = info["corpus"]
    row("corpus", _or_unknown(corpus["name"]))
    row("  read from", _or_unknown(corpus["source"]))
    row("  size", _or_unknown(corpus["size"], lambda n: f"{n:,} {unit}s"))
    row("  fingerprint", _or_unknown(corpus["sha256"], lambda h: f"sha256 {h}"))
    _lineage_rows(row, info.get("initialised_from"), unit)
    row("steps", _or_unknown(info["steps"], lambda n: f"{n:,}"))
    row("epochs", _or_unknown(info["epochs"], lambda e: f"{e:.3g}"))
    time_text = _or_unknown(info["training_time"], format_duration)
    if info["training_time"] is not None and info["evaluation_time"]:
        time_text.append(f" ({format_duration(info['evaluation_time'])} of it evaluating)")
    row("training time", time_text)
    best = info["best_val_loss"]
    row(
        "best validation loss",
        _or_unknown(
            best, lambda b: f"{b:.4f} nats/{unit} ({b / LN2:.4f} bits, perplexity {math.exp(b):.3f})"
        ),
    )
    row("trained with", Text(" ".join(info["flags"]) or "unknown", style="green"))
    fmt = f"{info['format']} version {info['format_version']}"
    fmt += "" if info["resumable"] else " (weights only: cannot be resumed)"
    row("format", fmt)
    row("file size", _size(info["file_size"]))
    return Panel(Group(grid), title=Text(info["checkpoint"]), title_align="left", expand=False)
