"""Reading a corpus: bytes from a file or stdin -> validated text -> compact id tensor, plus the split.

Large corpora never become Python lists: pure-ASCII UTF-8 input (the common case) is mapped byte by byte
through a 256-entry lookup table, other text goes through `Vocabulary.encode`. The encoded result of a
file is cached (keyed by path, size and modification time) so a second run on an unchanged file starts
at once.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from charrnn.errors import CharrnnError
from charrnn.paths import cache_dir
from charrnn.vocab import Vocabulary

CACHE_VERSION = 1


@dataclass
class Corpus:
    """An encoded text: `ids` holds the text's characters as ids of `vocab`."""

    name: str
    vocab: Vocabulary
    ids: torch.Tensor

    def __len__(self) -> int:
        return self.ids.numel()

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the encoded text: tells a resumed run whether it is on the same corpus."""
        return hashlib.sha256(self.ids.contiguous().numpy().tobytes()).hexdigest()

    def split(self, val_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The first (1 - val_fraction) of the text for training, the rest for validation."""
        n_val = int(len(self) * val_fraction)
        n_train = len(self) - n_val
        return self.ids[:n_train], self.ids[n_train:]


ENCODING_HINT = "pass --encoding (e.g. latin-1) or --lossy to replace undecodable bytes"


def _describe_bad_utf8(data: bytes, error: UnicodeDecodeError, encoding: str, hint: str) -> str:
    start = max(0, error.start - 10)
    snippet = bytes(data[start : error.start + 10])
    where = f"byte 0x{data[error.start]:02x} at offset {error.start} (near {snippet!r})"
    return f"not valid {encoding}: {where}; {hint}"


def decode_bytes(
    data: bytes,
    encoding: str = "utf-8",
    lossy: bool = False,
    source: str = "corpus",
    hint: str = ENCODING_HINT,
) -> str:
    """Bytes -> text, with an error that says where the text stops being valid (and `hint`, the fix)."""
    try:
        if not codecs.lookup(encoding)._is_text_encoding:
            raise LookupError
    except LookupError:
        raise CharrnnError(f"unknown text encoding {encoding!r}; try utf-8, latin-1 or cp1252") from None
    try:
        text = data.decode(encoding, errors="replace" if lossy else "strict")
    except UnicodeDecodeError as e:
        if b"\x00" in data[: 1 << 20]:
            raise CharrnnError(f"{source} looks binary (it contains NUL bytes); give a text file") from None
        raise CharrnnError(f"{source} is {_describe_bad_utf8(data, e, encoding, hint)}") from None
    if not lossy and "\x00" in text[: 1 << 20]:
        raise CharrnnError(f"{source} looks binary (it contains NUL characters); give a text file")
    return text


def encode_bytes(
    data: bytes | bytearray, encoding: str = "utf-8", lossy: bool = False, source: str = "corpus"
):
    """Bytes -> (Vocabulary, ids). ASCII input takes a byte-level path that never builds a str."""
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8", "ascii") and data.isascii():
        if not lossy and b"\x00" in data[: 1 << 20]:
            raise CharrnnError(f"{source} looks binary (it contains NUL characters); give a text file")
        raw = torch.frombuffer(data if isinstance(data, bytearray) else bytearray(data), dtype=torch.uint8)
        present = torch.bincount(raw, minlength=128).nonzero().flatten()
        vocab = Vocabulary(chr(c) for c in present.tolist())
        table = torch.zeros(128, dtype=vocab.dtype)
        table[present] = torch.arange(len(present), dtype=torch.int32).to(vocab.dtype)
        return vocab, table[raw.long()] if raw.numel() < (1 << 26) else _lookup_chunked(table, raw)
    text = decode_bytes(data, encoding, lossy, source)
    vocab = Vocabulary.from_text(text)
    return vocab, vocab.encode(text)


def _lookup_chunked(table: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """table[raw] in slices, so a huge corpus never needs an int64 copy of itself."""
    out = torch.empty(raw.numel(), dtype=table.dtype)
    step = 1 << 24
    for start in range(0, raw.numel(), step):
        out[start : start + step] = table[raw[start : start + step].long()]
    return out


def read_input_bytes(path: str | Path) -> bytearray:
    """The bytes of a file, or of stdin for '-', with one-line errors for the usual mistakes."""
    if str(path) == "-":
        return bytearray(sys.stdin.buffer.read())
    path = Path(path)
    if not path.exists():
        raise CharrnnError(f"{path}: no such file")
    if path.is_dir():
        raise CharrnnError(f"{path} is a directory; give a text file")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            buffer = bytearray(size)
            n = f.readinto(buffer)
            if n != size:
                del buffer[n:]
            return buffer
    except PermissionError:
        raise CharrnnError(f"{path}: permission denied; check the file's permissions") from None
    except OSError as e:
        raise CharrnnError(f"{path}: cannot read ({e.strerror})") from None


def _cache_key(path: Path, encoding: str, lossy: bool) -> str:
    st = path.stat()
    raw = f"{CACHE_VERSION}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{encoding}|{lossy}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def load_text_file(
    path: str | Path,
    name: str | None = None,
    encoding: str = "utf-8",
    lossy: bool = False,
    use_cache: bool = True,
) -> Corpus:
    """Load and encode a text file (or '-' for stdin), using the encoded-corpus cache for files."""
    source = "standard input" if str(path) == "-" else str(path)
    corpus_name = name or ("stdin" if str(path) == "-" else Path(path).stem)
    cache_file = None
    if use_cache and str(path) != "-" and Path(path).is_file():
        try:
            cache_file = cache_dir("encoded") / f"{_cache_key(Path(path), encoding, lossy)}.pt"
        except OSError:
            cache_file = None  # no writable cache folder: just encode every time
        cached = _read_cache(cache_file) if cache_file else None
        if cached is not None:
            return Corpus(corpus_name, *cached)
    data = read_input_bytes(path)
    if len(data) == 0:
        raise CharrnnError(f"{source} is empty; give a text with at least a few hundred characters")
    vocab, ids = encode_bytes(data, encoding, lossy, source)
    if cache_file is not None:
        _write_cache(cache_file, vocab, ids)
    return Corpus(corpus_name, vocab, ids)


def _read_cache(cache_file: Path):
    if not cache_file.exists():
        return None
    try:
        blob = torch.load(cache_file, weights_only=True)
        return Vocabulary.from_list(blob["vocab"]), blob["ids"]
    except Exception:
        return None  # a damaged cache entry is rebuilt, never fatal


def _write_cache(cache_file: Path, vocab: Vocabulary, ids: torch.Tensor) -> None:
    from charrnn.checkpoint import atomic_save

    # caching is an optimisation: a read-only or full cache folder must not stop training
    with contextlib.suppress(OSError, RuntimeError):
        atomic_save({"vocab": vocab.to_list(), "ids": ids}, cache_file)
