"""`charrnn export`: read a checkpoint, write it in the format asked for, say where."""

from __future__ import annotations

from pathlib import Path

from charrnn.bundled import bundled_name
from charrnn.checkpoint import Checkpoint, load_checkpoint
from charrnn.errors import BadInput

FORMATS = {"safetensors": ".safetensors", "onnx": ".onnx", "html": ".html"}


def default_out(checkpoint: Checkpoint, fmt: str) -> Path:
    """`<run folder name>.<ext>` in the working directory (a bundled model: its name)."""
    path = checkpoint.path
    name = bundled_name(path) if path is not None else None
    in_run = path is not None and path.name in ("best.pt", "last.pt")
    stem = name or (path.parent.name if in_run else path.stem if path is not None else "")
    return Path((stem or "model") + FORMATS[fmt])


def export_model(source: str | Path, fmt: str, out: Path | None = None) -> Path:
    """Write the model of `source` (a checkpoint, run folder, safetensors file or bundled name) as `fmt`."""
    if fmt not in FORMATS:
        raise BadInput(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    checkpoint = load_checkpoint(source)
    out = out if out is not None else default_out(checkpoint, fmt)
    if out.is_dir():
        raise BadInput(
            f"--out {out} is a folder; give a file name such as {out / default_out(checkpoint, fmt)}"
        )
    if not out.parent.is_dir():
        raise BadInput(f"--out {out}: the folder {out.parent} does not exist; create it first")
    try:
        if fmt == "safetensors":
            from charrnn.export.safetensors_file import write_safetensors

            write_safetensors(checkpoint, out)
        elif fmt == "onnx":
            from charrnn.export.onnx_graph import write_onnx

            write_onnx(checkpoint, out)
        else:
            from charrnn.export.web_page import write_page

            write_page(checkpoint, out)
    except PermissionError:
        raise BadInput(f"--out {out}: permission denied; choose a folder you can write to") from None
    except OSError as e:
        raise BadInput(f"--out {out}: cannot write it ({e.strerror or e})") from None
    return out
