"""Fine-tuning: a new run that starts from a trained model's weights (`charrnn train CORPUS --init SOURCE`).

The source is a checkpoint, a run folder or a bundled model's name (bundled.py). The run keeps the source's
architecture and level; its optimiser, schedule, step count and budget start fresh.

Vocabulary growth (character-level sources): the corpus's characters that the source never saw are appended
to its vocabulary, so every old id keeps its character and its rows. The new rows start neutral:
- input: a new embedding row (or, for one-hot input, a new column of the first layer's input weights) is
  the mean of the old ones, so a new character moves the state the way an average character does, not with
  a random kick the trained layers never saw;
- output: a new output row has zero weights and the smallest old bias, so each new character starts as
  unlikely as the rarest character the source knew, and the probabilities of the old characters keep their
  ratios exactly (their logits are unchanged). Training then raises the new characters from there.
A byte-level source needs none of this: every byte already has its rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from charrnn.bundled import bundled_name
from charrnn.checkpoint import Checkpoint, load_checkpoint
from charrnn.errors import BadSetting, setting_ref
from charrnn.model import ModelConfig
from charrnn.named_corpora import sha256_of
from charrnn.vocab import Vocabulary

# the settings that define the source's architecture: a fine-tuned run keeps them
ARCHITECTURE = ("cell", "input", "layers", "hidden", "embedding", "weight_tying")


@dataclass
class InitSource:
    """The model a fine-tuned run starts from."""

    checkpoint: Checkpoint
    spec: str  # as the user gave it
    name: str | None  # a bundled model's name
    fingerprint: str | None = None  # SHA-256 of its file, read when it was loaded

    @property
    def label(self) -> str:
        return self.name or str(self.checkpoint.path)


def load_source(spec: str | Path) -> InitSource:
    """Read the source of `--init` (a checkpoint, a run folder's best.pt, or a bundled model's name)."""
    checkpoint = load_checkpoint(spec)
    checkpoint.build_model()  # refuse damaged or mismatched weights here, in one line
    path = checkpoint.path
    fingerprint = file_fingerprint(path) if path is not None else None
    return InitSource(checkpoint, str(spec), bundled_name(path), fingerprint)


def check_outside(source: InitSource, run_folder: Path) -> None:
    """A fresh run empties its folder (--overwrite): the source must not be in it."""
    path = source.checkpoint.path
    if path is not None and path.resolve().parent == run_folder.resolve():
        raise BadSetting(
            f"--init {source.spec} is in the run folder this run would start afresh in ({run_folder}); give "
            "--out another folder",
            setting="init",
        )


def check_level(requested: str | None, source: InitSource) -> str:
    """The run's level is the source's: a byte-level source has no characters to grow, and a character
    model's rows mean characters, not bytes."""
    level = source.checkpoint.level
    if requested is not None and requested != level:
        raise BadSetting(
            f"{setting_ref('level')} {requested} contradicts the --init model, which is {level}-level; a "
            f"fine-tuned run keeps its source's level (drop {setting_ref('level')}, or train from scratch "
            "without --init)",
            setting="level",
        )
    return level


def check_architecture(given: dict, source: ModelConfig) -> None:
    """Refuse a given flag that would change the source's architecture, naming it."""
    for name in ARCHITECTURE:
        value = given.get(name)
        if value is None or name == "embedding" and source.input == "onehot":
            continue
        if value != getattr(source, name):
            raise BadSetting(
                f"{setting_ref(name)} {value} contradicts the --init model ({setting_ref(name)} "
                f"{getattr(source, name)}); a fine-tuned run keeps its source's architecture: drop the flag",
                setting=name,
            )
    if given.get("embedding") is not None and source.input == "onehot":
        raise BadSetting(
            f"{setting_ref('embedding')}: the --init model has one-hot input (no embedding); drop the flag",
            setting="embedding",
        )


def grown_vocabulary(source: Vocabulary, corpus: Vocabulary) -> tuple[Vocabulary, list[str]]:
    """The source's vocabulary with the corpus's new characters appended, and those characters."""
    grown = source.extended(corpus.chars)
    return grown, grown.chars[len(source) :]


def grown_model_config(source: ModelConfig, vocab_size: int) -> ModelConfig:
    config = ModelConfig.from_dict({**source.to_dict(), "vocab_size": vocab_size})
    if config.input == "onehot":
        config.embedding = vocab_size
    return config


def grown_weights(source: Checkpoint, vocab_size: int) -> dict[str, torch.Tensor]:
    """The source's weights in float32 with rows for `vocab_size - len(source.vocab)` new symbols,
    initialised as the module docstring says."""
    weights = {k: v.detach().float().clone() for k, v in source.weights.items()}
    old = len(source.vocab)
    extra = vocab_size - old
    if extra <= 0:
        return weights
    config = source.model_config

    def rows_like_mean(t: torch.Tensor, dim: int) -> torch.Tensor:
        mean = t.mean(dim=dim, keepdim=True)
        return torch.cat([t, mean.expand(*(extra if d == dim else s for d, s in enumerate(t.shape)))], dim)

    if config.input == "embedding":
        weights["embed.weight"] = rows_like_mean(weights["embed.weight"], 0)
    else:
        weights["rnns.0.weight_ih_l0"] = rows_like_mean(weights["rnns.0.weight_ih_l0"], 1)
    if config.weight_tying:
        weights["head.weight"] = weights["embed.weight"]  # one matrix: the new rows are the mean too
    else:
        head = weights["head.weight"]
        weights["head.weight"] = torch.cat([head, head.new_zeros(extra, head.shape[1])])
    bias = weights["head.bias"]
    weights["head.bias"] = torch.cat([bias, bias.min().expand(extra)])
    return weights


def file_fingerprint(path: Path) -> str:
    """SHA-256 of the source checkpoint's file: which model exactly a run started from."""
    return sha256_of(path)


def lineage(source: InitSource, added: list[str]) -> dict:
    """What the checkpoints of a fine-tuned run record about its start (`info` shows it)."""
    c = source.checkpoint
    path = c.path.resolve() if c.path is not None else None
    return {
        "path": str(path) if path is not None else None,
        "name": source.name,
        "fingerprint": source.fingerprint,
        "corpus": {"name": c.corpus.name, "chars": c.corpus.chars, "sha256": c.corpus.sha256},
        "level": c.level,
        "source_vocab_size": len(c.vocab),
        "added": list(added),
    }
