"""Checkpoints: written atomically, read with weights-only unpickling, loadable on any device.

A checkpoint is a plain dict of tensors and Python primitives (so `torch.load(weights_only=True)` reads it
and a crafted file cannot run code):
    format, version        identify the file and its layout
    model_config           ModelConfig as a dict
    vocab                  list of characters, id order
    level                  "char", or "byte" for byte-level models (absent before: "char")
    model                  state_dict
    optimizer              optimiser state_dict (absent in weights-only exports)
    train_config           TrainConfig as a dict
    progress               step, epoch, batch position, elapsed seconds, best validation loss
    history                list of metric dicts, one per evaluation
    rng                    random number generator states
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from charrnn.atomic import atomic_write
from charrnn.errors import CharrnnError
from charrnn.model import CharRNN, ModelConfig
from charrnn.vocab import Vocabulary

FORMAT = "charrnn-checkpoint"
VERSION = 2  # 2: one module per recurrent layer (rnns.K.*); version 1 files are migrated on load
READABLE_VERSIONS = (1, 2)


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save `obj` to `path` atomically (see atomic.py): the old file or the new one, never a mix."""
    with atomic_write(path) as f:
        try:
            torch.save(obj, f)
        except RuntimeError as e:  # torch reports a failed write (a full disk) as a RuntimeError
            first = str(e).strip().splitlines()[0] if str(e).strip() else "write failed"
            raise OSError(f"could not write {path} (is the disk full?): {first}") from None


REQUIRED_KEYS = ("model_config", "vocab", "model")
RESUME_KEYS = ("optimizer", "train_config", "progress")


def find_checkpoint(path: str | Path, prefer: tuple[str, ...] = ("best.pt", "last.pt")) -> Path:
    """A .pt file as given, or the first of `prefer` in a run folder."""
    path = Path(path)
    try:
        if not path.exists():
            raise CharrnnError(f"{path}: no such checkpoint file or run folder")
        if path.is_dir():
            for name in prefer:
                if (path / name).is_file():
                    return path / name
            raise CharrnnError(
                f"{path} holds no checkpoint (best.pt or last.pt); train one with `charrnn train`"
            )
    except OSError as e:
        raise CharrnnError(f"{path}: cannot access ({e.strerror})") from None
    return path


def load_checkpoint(path: str | Path, for_resume: bool = False) -> dict:
    """Read and check a checkpoint onto the CPU; every failure becomes a one-line CharrnnError.

    A run folder means its best.pt for sampling and evaluation, its last.pt when resuming.
    """
    file = find_checkpoint(path, ("last.pt", "best.pt") if for_resume else ("best.pt", "last.pt"))
    try:
        with open(file, "rb"):
            pass  # surface permission problems as such, not as corruption
        if not zipfile.is_zipfile(file):  # torch.save writes a zip archive; anything else is not ours
            raise CharrnnError(f"{file}: not a readable checkpoint (truncated or corrupted?)")
        with zipfile.ZipFile(file) as archive:  # torch does not check the CRCs of the tensor data: we do
            damaged = archive.testzip()
        if damaged is not None:
            raise CharrnnError(f"{file}: checkpoint is corrupted (damaged data in {damaged})")
        blob = torch.load(file, map_location="cpu", weights_only=True)
    except CharrnnError:
        raise
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():
            raise CharrnnError(f"{file}: not a readable checkpoint (truncated or corrupted?)") from None
        raise CharrnnError(
            f"{file}: refused to load: it holds Python objects other than tensors and plain data "
            "(weights-only loading); it is not a charrnn checkpoint or was tampered with"
        ) from None
    except PermissionError:
        raise CharrnnError(f"{file}: permission denied; check the file's permissions") from None
    except IsADirectoryError:
        raise CharrnnError(f"{file} is a directory, not a checkpoint file") from None
    except OSError as e:
        raise CharrnnError(f"{file}: cannot read ({e.strerror})") from None
    except Exception as e:  # torch reports damaged archives with many exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CharrnnError(f"{file}: not a readable checkpoint (truncated or corrupted?): {first}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CharrnnError(f"{file}: not a charrnn checkpoint")
    if blob.get("version") not in READABLE_VERSIONS:
        raise CharrnnError(
            f"{file}: checkpoint format version {blob.get('version')} is not supported by this charrnn "
            f"(it reads versions {', '.join(map(str, READABLE_VERSIONS))}); "
            "use the charrnn release that wrote it"
        )
    needed = REQUIRED_KEYS + (RESUME_KEYS if for_resume else ())
    missing = [key for key in needed if key not in blob]
    if missing:
        what = "cannot be resumed" if for_resume and set(missing) <= set(RESUME_KEYS) else "is incomplete"
        raise CharrnnError(f"{file}: checkpoint {what} (missing {', '.join(missing)})")
    blob["path"] = str(file)
    blob["file_version"] = blob["version"]  # as written, before _migrate brings it up to date
    return _migrate(blob)


_V1_LAYER_KEY = re.compile(r"^rnn\.(weight|bias)_(ih|hh)_l(\d+)$")


def _migrate(blob: dict) -> dict:
    """Bring an older checkpoint to the current layout. Version 1 kept one multi-layer fused module
    (rnn.weight_ih_lK); version 2 has one single-layer module per layer (rnns.K.weight_ih_l0). The
    parameters keep their order, so the optimiser state carries over unchanged."""
    if blob["version"] == 1 and isinstance(blob.get("model"), dict):
        renamed = {}
        for key, value in blob["model"].items():
            match = _V1_LAYER_KEY.match(key)
            renamed[f"rnns.{match[3]}.{match[1]}_{match[2]}_l0" if match else key] = value
        blob["model"] = renamed
        blob["version"] = VERSION
    return blob


def model_from_checkpoint(blob: dict, device: torch.device | str = "cpu") -> tuple[CharRNN, Vocabulary]:
    """Rebuild the model in eval mode and its vocabulary."""
    try:
        config = ModelConfig.from_dict(blob["model_config"])
        model = CharRNN(config)
        model.load_state_dict(blob["model"])
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise CharrnnError(f"{blob.get('path')}: weights do not match the model config ({e})") from None
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise CharrnnError(
            f"{blob.get('path')}: checkpoint has non-finite (NaN or infinite) weights; it is damaged"
        )
    model.to(device).eval()
    try:
        vocab = Vocabulary.from_list(blob["vocab"], blob.get("level", "char"))
    except (ValueError, TypeError):
        raise CharrnnError(f"{blob.get('path')}: checkpoint holds a damaged vocabulary") from None
    return model, vocab
