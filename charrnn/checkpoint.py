"""Checkpoints: one typed `Checkpoint`, saved atomically, loaded with weights-only unpickling, checked and
migrated in one place.

On disk a checkpoint is a plain dict of tensors and Python primitives (so `torch.load(weights_only=True)`
reads it and a crafted file cannot run code):
    format, version        identify the file and its layout
    model_config           ModelConfig as a dict
    vocab, level           the symbols in id order; "char", or "byte" (absent before: "char")
    model                  the weights (a state_dict); "weights": "ema" when they are the moving average
    corpus                 name, chars, sha256, level of the text trained on (absent in version 1)
    optimizer              optimiser state_dict (absent in weights-only files)
    train_config           TrainConfig as a dict
    progress               step, epoch, batch position, elapsed seconds, best validation loss, ...
    history                list of metric dicts, one per evaluation
    ema, carry, rng        the averaged weights, the carried hidden state, random number generator states
    distributed            world_size of the run that wrote it
    init                   what a fine-tuned run started from: source path, name, fingerprint, corpus, and
                           the characters it added to the source's vocabulary (absent: trained from scratch)
    about                  a bundled model's description: how it was built (absent elsewhere)
Everything else in charrnn reads the typed fields, never those keys.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from charrnn.atomic import atomic_write
from charrnn.bundled import BUNDLED, bundled_path
from charrnn.config import TrainConfig
from charrnn.errors import BadCheckpoint, CharrnnError, NoSpace
from charrnn.model import CharRNN, ModelConfig
from charrnn.vocab import Vocabulary

FORMAT = "charrnn-checkpoint"
SAFETENSORS_FORMAT = (
    "charrnn-safetensors"  # `charrnn export --format safetensors` (export/safetensors_file.py)
)
SAFETENSORS_VERSION = 1
VERSION = 2  # 2: one module per recurrent layer (rnns.K.*); version 1 files are migrated on load
READABLE_VERSIONS = (1, 2)
REQUIRED_KEYS = ("model_config", "vocab", "model")
RESUME_KEYS = ("optimizer", "train_config", "progress")
# Training settings older checkpoints lack, with the value that applied before the setting existed (the
# dataclass default may differ: weight decay was off, and every evaluation scored all of the text)
LEGACY_TRAIN_SETTINGS = {"weight_decay": 0.0, "val_chars": None}


@dataclass
class Progress:
    """Where a run is: what the schedule, the resume and the summary need."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # next batch index within the epoch
    elapsed: float = 0.0  # wall-clock seconds of the run so far, across resumes (what --max-time limits)
    eval_time: float = 0.0  # the part of `elapsed` spent scoring validation text
    pending_eval_lr: float | None = None  # an evaluation a signal cut short (its learning rate): redone first
    chars_seen: int = 0
    best_val: float = math.inf
    loss_sum: float = 0.0  # training loss summed since the last evaluation (the next one logs its mean)
    loss_count: int = 0
    history: list[dict] = field(default_factory=list)  # one metrics record per evaluation

    def to_dict(self) -> dict:
        """The checkpoint's `progress` entry (the history is stored beside it)."""
        d = asdict(self)
        del d["history"]
        return d

    @classmethod
    def from_dict(cls, d: dict, history: list[dict] | None = None) -> Progress:
        names = {f.name for f in fields(cls)} - {"history"}
        return cls(**{k: v for k, v in d.items() if k in names}, history=list(history or []))


@dataclass
class CorpusFacts:
    """The text a checkpoint was trained on, as far as the file says."""

    name: str | None = None
    chars: int | None = None
    sha256: str | None = None
    # where it was read from, to find it again (`sample --novel`): spec (an absolute path or glob, a named
    # corpus, or "-"), encoding, lossy, include, exclude; empty in files written before it was kept
    origin: dict = field(default_factory=dict)


@dataclass
class TrainingState:
    """What resuming needs beyond the weights."""

    config: TrainConfig
    progress: Progress
    optimizer: dict
    rng: dict = field(default_factory=dict)
    carry: Any = None  # the carried hidden state of every stream: a tensor, or a list of two (LSTMs)
    ema: list[torch.Tensor] | None = None  # the moving average of the weights, one tensor per parameter
    world_size: int = 1  # processes of the run (each carries its own streams' state)


@dataclass
class Checkpoint:
    model_config: ModelConfig
    vocab: Vocabulary
    weights: dict[str, torch.Tensor]
    corpus: CorpusFacts = field(default_factory=CorpusFacts)
    training: TrainingState | None = None  # None: a weights-only file (cannot be resumed)
    averaged: bool = False  # the weights are the moving average (--ema), not the trained ones
    path: Path | None = None  # where it was loaded from
    file_version: int = VERSION  # the format version as written, before migration
    # what a fine-tuned run was initialised from (see finetune.Lineage.to_dict); empty: from scratch
    lineage: dict = field(default_factory=dict)
    about: dict = field(default_factory=dict)  # a bundled model's description (bundled.py)

    @property
    def level(self) -> str:
        return self.vocab.level

    @property
    def progress(self) -> Progress | None:
        return self.training.progress if self.training else None

    @property
    def train_config(self) -> TrainConfig | None:
        return self.training.config if self.training else None

    @property
    def history(self) -> list[dict]:
        return self.training.progress.history if self.training else []

    def build_model(self, device: torch.device | str = "cpu") -> CharRNN:
        """The model with these weights, in eval mode on `device`."""
        try:
            model = CharRNN(self.model_config)
            model.load_state_dict(self.weights)
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            raise BadCheckpoint(f"{self.path}: weights do not match the model config ({e})") from None
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise BadCheckpoint(
                f"{self.path}: checkpoint has non-finite (NaN or infinite) weights; it is damaged"
            )
        return model.to(device).eval()

    def with_weights(self, weights: dict[str, torch.Tensor], averaged: bool) -> Checkpoint:
        """The same checkpoint holding other weights (best.pt of an --ema run holds the average)."""
        return replace(self, weights=weights, averaged=averaged)

    def to_blob(self) -> dict:
        """The on-disk dict (current format)."""
        blob: dict = {
            "format": FORMAT,
            "version": VERSION,
            "model_config": self.model_config.to_dict(),
            "vocab": self.vocab.to_list(),
            "level": self.vocab.level,
            "model": self.weights,
            "corpus": {**asdict(self.corpus), "level": self.vocab.level},
        }
        if self.averaged:
            blob["weights"] = "ema"
        if self.lineage:
            blob["init"] = self.lineage
        if self.about:
            blob["about"] = self.about
        t = self.training
        if t is not None:
            blob.update(
                optimizer=t.optimizer,
                train_config=t.config.to_dict(),
                progress=t.progress.to_dict(),
                history=t.progress.history,
                ema=t.ema,
                carry=t.carry,
                rng=t.rng,
                distributed={"world_size": t.world_size},
            )
        return blob

    def save(self, path: str | Path) -> None:
        atomic_save(self.to_blob(), path)

    @classmethod
    def from_blob(cls, blob: Any, path: Path, for_resume: bool = False) -> Checkpoint:
        """Check and migrate a loaded dict; every problem is a BadCheckpoint naming the file."""
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise BadCheckpoint(f"{path}: not a charrnn checkpoint")
        version = blob.get("version")
        if version not in READABLE_VERSIONS:
            raise BadCheckpoint(
                f"{path}: checkpoint format version {version} is not supported by this charrnn "
                f"(it reads versions {', '.join(map(str, READABLE_VERSIONS))}); "
                "use the charrnn release that wrote it"
            )
        needed = REQUIRED_KEYS + (RESUME_KEYS if for_resume else ())
        missing = [key for key in needed if key not in blob]
        if missing:
            what = "cannot be resumed" if for_resume and set(missing) <= set(RESUME_KEYS) else "is incomplete"
            raise BadCheckpoint(f"{path}: checkpoint {what} (missing {', '.join(missing)})")
        try:
            model_config = ModelConfig.from_dict(blob["model_config"])
            vocab = Vocabulary.from_list(blob["vocab"], blob.get("level", "char"))
        except (ValueError, TypeError, KeyError, AttributeError):
            raise BadCheckpoint(f"{path}: checkpoint holds a damaged vocabulary or model config") from None
        corpus = blob.get("corpus") or {}
        training = None
        if all(key in blob for key in RESUME_KEYS):
            saved = {**LEGACY_TRAIN_SETTINGS, **blob["train_config"]}
            training = TrainingState(
                config=TrainConfig.from_dict(saved),
                progress=Progress.from_dict(blob["progress"], blob.get("history")),
                optimizer=blob["optimizer"],
                rng=blob.get("rng") or {},
                carry=blob.get("carry"),
                ema=blob.get("ema"),
                world_size=(blob.get("distributed") or {}).get("world_size", 1),
            )
        return cls(
            model_config=model_config,
            vocab=vocab,
            weights=_migrate_weights(blob["model"], version),
            corpus=CorpusFacts(
                corpus.get("name"),
                corpus.get("chars"),
                corpus.get("sha256"),
                dict(corpus.get("origin") or ()),
            ),
            training=training,
            averaged=blob.get("weights") == "ema",
            path=path,
            file_version=version,
            lineage=_plain_dict(blob.get("init")),
            about=_plain_dict(blob.get("about")),
        )


def _plain_dict(value: Any) -> dict:
    return dict(value) if isinstance(value, dict) else {}


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save `obj` to `path` atomically (see atomic.py): the old file or the new one, never a mix."""
    with atomic_write(path) as f:
        try:
            torch.save(obj, f)
        except RuntimeError as e:  # torch reports a failed write (a full disk) as a RuntimeError
            first = str(e).strip().splitlines()[0] if str(e).strip() else "write failed"
            raise NoSpace(f"could not write {path} (is the disk full?): {first}") from None


def find_checkpoint(path: str | Path, prefer: tuple[str, ...] = ("best.pt", "last.pt")) -> Path:
    """A .pt file as given, the first of `prefer` in a run folder, or a bundled model by name (bundled.py)
    when no such file or folder exists."""
    path = Path(path)
    try:
        if not path.exists():
            bundled = bundled_path(str(path))
            if bundled is None:
                names = ", ".join(BUNDLED)
                raise BadCheckpoint(
                    f"{path}: no such checkpoint file or run folder (bundled models: {names})"
                )
            if not bundled.is_file():
                raise BadCheckpoint(
                    f"the bundled model {str(path)!r} is missing from this installation ({bundled}); "
                    "reinstall charrnn"
                )
            return bundled
        if path.is_dir():
            for name in prefer:
                if (path / name).is_file():
                    return path / name
            raise BadCheckpoint(
                f"{path} holds no checkpoint (best.pt or last.pt); train one with `charrnn train`"
            )
    except OSError as e:
        raise BadCheckpoint(f"{path}: cannot access ({e.strerror})") from None
    return path


def load_checkpoint(path: str | Path, for_resume: bool = False) -> Checkpoint:
    """Read and check a checkpoint onto the CPU; every failure becomes a one-line BadCheckpoint.

    A run folder means its best.pt for sampling and evaluation, its last.pt when resuming.
    """
    file = find_checkpoint(path, ("last.pt", "best.pt") if for_resume else ("best.pt", "last.pt"))
    if file.suffix == ".safetensors":
        if for_resume:
            raise BadCheckpoint(
                f"{file}: a safetensors file holds weights only (no optimiser or training state), so it "
                "cannot be resumed; resume from the run's .pt checkpoint, or fine-tune from it with --init"
            )
        return _read_safetensors(file)
    return Checkpoint.from_blob(_read(file), file, for_resume)


def _read_safetensors(file: Path) -> Checkpoint:
    """A weights-only Checkpoint from an exported safetensors file (layout: export/safetensors_file.py)."""
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:
        raise BadCheckpoint(
            f"{file}: reading safetensors needs the safetensors package: pip install 'charrnn[export]'"
        ) from None
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
            weights = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadCheckpoint(f"{file}: not a readable safetensors file ({first})") from None
    if meta.get("charrnn_format") != SAFETENSORS_FORMAT:
        raise BadCheckpoint(f"{file}: a safetensors file, but not one charrnn exported (no charrnn metadata)")
    if meta.get("charrnn_format_version") != str(SAFETENSORS_VERSION):
        raise BadCheckpoint(
            f"{file}: charrnn safetensors version {meta.get('charrnn_format_version')} is not supported by "
            f"this charrnn (it reads version {SAFETENSORS_VERSION})"
        )
    try:
        model_config = ModelConfig.from_dict(json.loads(meta["model_config"]))
        vocab = Vocabulary.from_list(json.loads(meta["vocab"]), meta.get("level", "char"))
        corpus = json.loads(meta.get("corpus") or "{}")
    except (KeyError, ValueError, TypeError, AttributeError):
        raise BadCheckpoint(f"{file}: its charrnn metadata is damaged") from None
    if model_config.weight_tying and "embed.weight" in weights:
        weights["head.weight"] = weights["embed.weight"]
    return Checkpoint(
        model_config=model_config,
        vocab=vocab,
        weights=weights,
        corpus=CorpusFacts(corpus.get("name"), corpus.get("chars"), corpus.get("sha256")),
        path=file,
    )


def _read(file: Path) -> Any:
    try:
        with open(file, "rb"):
            pass  # surface permission problems as such, not as corruption
        if not zipfile.is_zipfile(file):  # torch.save writes a zip archive; anything else is not ours
            raise BadCheckpoint(f"{file}: not a readable checkpoint (truncated or corrupted?)")
        with zipfile.ZipFile(file) as archive:  # torch does not check the CRCs of the tensor data: we do
            damaged = archive.testzip()
        if damaged is not None:
            raise BadCheckpoint(f"{file}: checkpoint is corrupted (damaged data in {damaged})")
        return torch.load(file, map_location="cpu", weights_only=True)
    except CharrnnError:
        raise
    except pickle.UnpicklingError:
        if not _foreign_globals(file):
            raise BadCheckpoint(f"{file}: not a readable checkpoint (truncated or corrupted?)") from None
        raise BadCheckpoint(
            f"{file}: refused to load: it holds Python objects other than tensors and plain data "
            "(weights-only loading); it is not a charrnn checkpoint or was tampered with"
        ) from None
    except PermissionError:
        raise BadCheckpoint(f"{file}: permission denied; check the file's permissions") from None
    except IsADirectoryError:
        raise BadCheckpoint(f"{file} is a directory, not a checkpoint file") from None
    except OSError as e:
        raise BadCheckpoint(f"{file}: cannot read ({e.strerror})") from None
    except Exception as e:  # torch reports damaged archives with many exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadCheckpoint(f"{file}: not a readable checkpoint (truncated or corrupted?): {first}") from None


def _foreign_globals(file: Path) -> list[str]:
    """The Python objects (other than weights-only loading allows) the file's pickle names."""
    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if finder is None:  # torch before 2.5: a refused load can only have been a foreign object
        return ["unknown"]
    try:
        return list(finder(file))
    except Exception:  # a damaged archive: not a question of foreign objects
        return []


_V1_LAYER_KEY = re.compile(r"^rnn\.(weight|bias)_(ih|hh)_l(\d+)$")


def _migrate_weights(weights: dict, version: int) -> dict:
    """Bring older weights to the current layout. Version 1 kept one multi-layer fused module
    (rnn.weight_ih_lK); version 2 has one single-layer module per layer (rnns.K.weight_ih_l0). The
    parameters keep their order, so the optimiser state carries over unchanged."""
    if version != 1 or not isinstance(weights, dict):
        return weights
    renamed = {}
    for key, value in weights.items():
        match = _V1_LAYER_KEY.match(key)
        renamed[f"rnns.{match[3]}.{match[1]}_{match[2]}_l0" if match else key] = value
    return renamed


def model_from_checkpoint(
    checkpoint: Checkpoint, device: torch.device | str = "cpu"
) -> tuple[CharRNN, Vocabulary]:
    """Rebuild the model in eval mode, and its vocabulary."""
    return checkpoint.build_model(device), checkpoint.vocab
