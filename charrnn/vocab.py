"""Vocabulary: the characters a model knows, and fast text <-> id conversion.

Ids are assigned in code-point order. Encoding is a vectorised table lookup (code point -> id) over the
text's UTF-32 form, in slices, never a Python loop over characters. Encoded text is stored in the
smallest unsigned integer dtype that holds every id (uint8 for up to 256 characters, then uint16, uint32).

At the byte level (`Vocabulary.for_bytes()`) the symbols are the 256 byte values: id b is the byte b,
text is encoded as its UTF-8 bytes, and nothing is ever unknown. Its `chars` are chr(0)..chr(255), so
code that shows one symbol at a time still works; `decoder()` turns a stream of ids back into text,
holding back an incomplete UTF-8 sequence until its last byte arrives.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Sequence

import numpy as np
import torch

# Characters per chunk when converting large texts, to bound the temporary UTF-32 copy.
_CHUNK_CHARS = 1 << 24


LEVELS = ("char", "byte")


def numpy_id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that stores ids 0..vocab_size-1: uint8, uint16 or uint32."""
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def id_dtype(vocab_size: int) -> torch.dtype:
    """`numpy_id_dtype` as a torch dtype."""
    return {1: torch.uint8, 2: torch.uint16, 4: torch.uint32}[numpy_id_dtype(vocab_size).itemsize]


def _codepoints(text: str) -> torch.Tensor:
    """The code points of `text` as an int32 tensor, without building a Python list."""
    if text.isascii():
        return torch.frombuffer(bytearray(text.encode("ascii")), dtype=torch.uint8).to(torch.int32)
    return torch.frombuffer(bytearray(text.encode("utf-32-le")), dtype=torch.int32)


def _chunks(text: str) -> Iterable[str]:
    for start in range(0, len(text), _CHUNK_CHARS):
        yield text[start : start + _CHUNK_CHARS]


def short_unit(unit: str) -> str:
    """The unit as loss labels write it ("nats/char", "nats/byte"), from a unit or level name."""
    return "byte" if unit == "byte" else "char"


class Vocabulary:
    """An ordered set of characters. Built from a text, id i is the i-th smallest code point; read back
    from a checkpoint or token file (`from_list`), the ids keep the stored order, which a fine-tuned model's
    grown vocabulary needs (its old characters keep their ids, new ones follow: `extended`). `level` is
    "char", or "byte" for the 256-symbol byte vocabulary (see the module docstring)."""

    def __init__(self, chars: Iterable[str], level: str = "char", ordered: bool = False):
        if ordered:
            unique = list(chars)
            if len(set(unique)) != len(unique):
                raise ValueError("a vocabulary holds each character once")
        else:
            unique = sorted(set(chars))
        if any(len(c) != 1 for c in unique):
            raise ValueError("a vocabulary holds single characters")
        if level not in LEVELS or (level == "byte" and unique != [chr(b) for b in range(256)]):
            raise ValueError(f"bad vocabulary level {level!r}")
        self.level = level
        self.chars: list[str] = unique
        self._index = {c: i for i, c in enumerate(unique)}
        codepoints = torch.tensor([ord(c) for c in unique], dtype=torch.int64)
        # code point -> id, -1 for characters outside the vocabulary
        self._table = torch.full((int(codepoints.max()) + 1 if unique else 1,), -1, dtype=torch.int32)
        self._table[codepoints] = torch.arange(len(unique), dtype=torch.int32)

    @classmethod
    def for_bytes(cls) -> Vocabulary:
        return cls((chr(b) for b in range(256)), level="byte")

    @property
    def is_bytes(self) -> bool:
        return self.level == "byte"

    @property
    def unit(self) -> str:
        """What one symbol is, for reports: "character" or "byte"."""
        return "byte" if self.is_bytes else "character"

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        counts = torch.zeros(0, dtype=torch.int64)
        for chunk in _chunks(text):
            chunk_counts = torch.bincount(_codepoints(chunk))
            if chunk_counts.numel() > counts.numel():
                chunk_counts[: counts.numel()] += counts
                counts = chunk_counts
            else:
                counts[: chunk_counts.numel()] += chunk_counts
        return cls(chr(c) for c in counts.nonzero().flatten().tolist())

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, char: str) -> bool:
        return char in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.chars == other.chars and self.level == other.level

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} {self.unit}s)"

    @property
    def dtype(self) -> torch.dtype:
        return id_dtype(len(self))

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of `text` that are not in the vocabulary, sorted, each once."""
        if self.is_bytes:
            return []
        return sorted(set(text) - self._index.keys())

    def codepoint_table(self) -> np.ndarray:
        """code point -> id as an int32 array, -1 for characters outside the vocabulary."""
        return self._table.numpy()

    def encode(self, text: str) -> torch.Tensor:
        """Ids of `text` as a 1-D tensor of `self.dtype`; raises KeyError naming unknown characters."""
        if self.is_bytes:
            return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8)
        parts = []
        table = self._table
        for chunk in _chunks(text):
            cps = _codepoints(chunk)
            if cps.numel() and int(cps.max()) >= table.numel():
                raise KeyError(self.unknown_chars(chunk))
            ids = table[cps]
            if ids.numel() and int(ids.min()) < 0:
                raise KeyError(self.unknown_chars(chunk))
            parts.append(ids.to(self.dtype))
        if not parts:
            return torch.empty(0, dtype=self.dtype)
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        if self.is_bytes:
            return bytes(ids).decode("utf-8", errors="replace")
        chars = self.chars
        return "".join(chars[i] for i in ids)

    def decoder(self) -> StreamDecoder:
        """A decoder for ids that arrive one at a time (generated text)."""
        return StreamDecoder(self)

    def char(self, index: int) -> str:
        return self.chars[index]

    def index(self, char: str) -> int:
        return self._index[char]

    def to_list(self) -> list[str]:
        """Plain form for checkpoints (loadable with weights_only=True); the level is stored beside it."""
        return list(self.chars)

    @classmethod
    def from_list(cls, chars: Sequence[str], level: str = "char") -> Vocabulary:
        """The vocabulary `to_list` wrote, ids in the stored order."""
        return cls(chars, level, ordered=True)

    def extended(self, chars: Iterable[str]) -> Vocabulary:
        """This vocabulary with the characters of `chars` it lacks appended in code-point order: every old
        id keeps its character (what fine-tuning from a character-level model needs)."""
        if self.is_bytes:
            return self
        new = sorted(set(chars) - self._index.keys())
        return Vocabulary([*self.chars, *new], self.level, ordered=True) if new else self


class StreamDecoder:
    """Ids -> text piece by piece. Characters map one to one; bytes go through an incremental UTF-8
    decoder, so a character's bytes show once all have arrived and only invalid sequences become U+FFFD."""

    def __init__(self, vocab: Vocabulary):
        self._chars = vocab.chars
        self._bytes = codecs.getincrementaldecoder("utf-8")("replace") if vocab.is_bytes else None

    def feed(self, index: int) -> str:
        if self._bytes is None:
            return self._chars[index]
        return self._bytes.decode(bytes((index,)))

    def flush(self) -> str:
        """What is still held back at the end (an unfinished UTF-8 sequence, shown as U+FFFD)."""
        return self._bytes.decode(b"", final=True) if self._bytes is not None else ""
