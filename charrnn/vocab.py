"""Vocabulary: the characters a model knows, and fast text <-> id conversion.

Ids are assigned in code-point order. Encoding is a vectorised table lookup (code point -> id) over the
text's UTF-32 form, in slices, never a Python loop over characters. Encoded text is stored in the
smallest integer dtype that holds every id (uint8 for up to 256 characters).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

# Characters per chunk when converting large texts, to bound the temporary UTF-32 copy.
_CHUNK_CHARS = 1 << 24


def id_dtype(vocab_size: int) -> torch.dtype:
    """The smallest dtype that stores ids 0..vocab_size-1 (uint8, int16 or int32)."""
    if vocab_size <= 256:
        return torch.uint8
    if vocab_size <= 32768:
        return torch.int16
    return torch.int32


def _codepoints(text: str) -> torch.Tensor:
    """The code points of `text` as an int32 tensor, without building a Python list."""
    if text.isascii():
        return torch.frombuffer(bytearray(text.encode("ascii")), dtype=torch.uint8).to(torch.int32)
    return torch.frombuffer(bytearray(text.encode("utf-32-le")), dtype=torch.int32)


def _chunks(text: str) -> Iterable[str]:
    for start in range(0, len(text), _CHUNK_CHARS):
        yield text[start : start + _CHUNK_CHARS]


class Vocabulary:
    """An ordered set of characters; id i is the i-th smallest code point."""

    def __init__(self, chars: Iterable[str]):
        unique = sorted(set(chars))
        if any(len(c) != 1 for c in unique):
            raise ValueError("a vocabulary holds single characters")
        self.chars: list[str] = unique
        self._index = {c: i for i, c in enumerate(unique)}
        codepoints = torch.tensor([ord(c) for c in unique], dtype=torch.int64)
        # code point -> id, -1 for characters outside the vocabulary
        self._table = torch.full((int(codepoints.max()) + 1 if unique else 1,), -1, dtype=torch.int32)
        self._table[codepoints] = torch.arange(len(unique), dtype=torch.int32)

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
        return isinstance(other, Vocabulary) and self.chars == other.chars

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} characters)"

    @property
    def dtype(self) -> torch.dtype:
        return id_dtype(len(self))

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of `text` that are not in the vocabulary, sorted, each once."""
        return sorted(set(text) - self._index.keys())

    def encode(self, text: str) -> torch.Tensor:
        """Ids of `text` as a 1-D tensor of `self.dtype`; raises KeyError naming unknown characters."""
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
        chars = self.chars
        return "".join(chars[i] for i in ids)

    def char(self, index: int) -> str:
        return self.chars[index]

    def index(self, char: str) -> int:
        return self._index[char]

    def to_list(self) -> list[str]:
        """Plain form for checkpoints (loadable with weights_only=True)."""
        return list(self.chars)

    @classmethod
    def from_list(cls, chars: Sequence[str]) -> Vocabulary:
        return cls(chars)
