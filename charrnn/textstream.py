"""Text files in fixed-size chunks: decoding with exact byte offsets, symbol counting and id mapping.

Nothing here holds a whole file: a file is read CHUNK_BYTES at a time into one reused buffer and decoded
with an incremental decoder, so a multi-byte character split between two chunks is joined, and a bad
byte (or a NUL near the start) is reported with its offset in the file. A stream read once (standard
input, a pipe) goes through the same `decode_chunks`, so it is refused at the first chunk that is not
text. Each chunk becomes a numpy array of code points: the raw bytes themselves when the chunk is plain
ASCII in an ASCII-compatible encoding (no str is built), else the chunk's UTF-32 form. Pass 1 counts the
code points (the vocabulary), pass 2 maps them to ids.

Arrays yielded by `codepoints` and `raw_bytes` may view the reused buffer: use each before taking the
next.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from charrnn.errors import BadInput
from charrnn.paths import reopen
from charrnn.vocab import Vocabulary

CHUNK_BYTES = 1 << 18  # small enough to stay in cache: 256 KiB chunks encoded fastest (BENCHMARKS.md)
BINARY_PROBE = 1 << 20  # NUL characters in this many leading bytes or characters mean "binary"
ENCODING_HINT = "pass --encoding (e.g. latin-1) or --lossy to replace undecodable bytes"
# Encodings in which bytes 0-127 are the ASCII characters, one byte each: ASCII chunks skip decoding.
_ASCII_COMPATIBLE = {"utf-8", "ascii", "iso8859-1", "iso8859-15", "cp1252", "latin-1"}


class NotText(BadInput):
    """A file that is not text in the chosen encoding: bad bytes, or NUL characters (`binary`)."""

    def __init__(self, message: str, binary: bool = False):
        super().__init__(message)
        self.binary = binary


def check_encoding(encoding: str) -> str:
    """The codec's canonical name; a one-line error for names that are not text encodings."""
    try:
        info = codecs.lookup(encoding)
        if not info._is_text_encoding:
            raise LookupError
    except LookupError:
        raise BadInput(f"unknown text encoding {encoding!r}; try utf-8, latin-1 or cp1252") from None
    return info.name


def read_chunks(stream: io.RawIOBase | io.BufferedIOBase, size: int | None = None) -> Iterator[memoryview]:
    """Successive chunks of a binary stream (CHUNK_BYTES each by default), read into one reused buffer."""
    buffer = bytearray(size or CHUNK_BYTES)
    view = memoryview(buffer)
    while True:
        n = stream.readinto(buffer)
        if not n:
            return
        yield view[:n]


def open_input(path: Path, label: str):
    """Open a file for reading bytes, with one-line errors for the usual mistakes."""
    try:
        if path.is_dir():
            raise BadInput(f"{label} is a directory; give a text file")
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise BadInput(f"{label}: no such file") from None
    except PermissionError:
        raise BadInput(f"{label}: permission denied; check the file's permissions") from None
    except OSError as e:
        raise BadInput(f"{label}: cannot read ({e.strerror})") from None


def stream_chunks(
    stream: io.RawIOBase | io.BufferedIOBase, label: str, size: int | None = None
) -> Iterator[memoryview]:
    """`read_chunks`, with a one-line error when reading fails (a device error, a vanished mount)."""
    try:
        yield from read_chunks(stream, size)
    except OSError as e:
        raise BadInput(f"{label}: cannot read ({e.strerror})") from None


def _chunks_of(path: Path | int, label: str, chunk_bytes: int | None) -> Iterator[memoryview]:
    """The chunks of a file named by `path`, or (an int) of an open descriptor's file from its start."""
    with reopen(path) if isinstance(path, int) else open_input(path, label) as f:
        yield from stream_chunks(f, label, chunk_bytes)


def describe_bad_bytes(data: bytes, start: int, offset: int, encoding: str, hint: str = ENCODING_HINT) -> str:
    """'not valid ENC: byte 0x.. at offset N (near b'...'); HINT' for the bad byte data[start]."""
    snippet = bytes(data[max(0, start - 10) : start + 10])
    return f"not valid {encoding}: byte 0x{data[start]:02x} at offset {offset} (near {snippet!r}); {hint}"


def codepoints(
    path: Path | int,
    encoding: str = "utf-8",
    lossy: bool = False,
    label: str | None = None,
    chunk_bytes: int | None = None,
    refuse_nul: bool | None = None,
) -> Iterator[np.ndarray]:
    """The code points of a text file (a path, or an open descriptor read from its start), chunk by chunk
    (uint8 arrays for ASCII chunks, else uint32); see `decode_chunks` for the errors."""
    label = label or str(path)
    return decode_chunks(_chunks_of(path, label, chunk_bytes), encoding, lossy, label, refuse_nul)


def decode_chunks(
    chunks: Iterable[memoryview],
    encoding: str = "utf-8",
    lossy: bool = False,
    label: str = "the text",
    refuse_nul: bool | None = None,
) -> Iterator[np.ndarray]:
    """The code points of a text given as successive byte chunks (a file's or a stream's).

    Raises NotText, before the next chunk is read, naming the offset of the first undecodable byte, or of
    the first NUL character near the start (`refuse_nul`; by default unless lossy).
    """
    refuse_nul = not lossy if refuse_nul is None else refuse_nul
    codec = check_encoding(encoding)
    decoder = codecs.getincrementaldecoder(encoding)("replace" if lossy else "strict")
    ascii_fast = codec in _ASCII_COMPATIBLE
    offset = chars = 0  # bytes read, characters produced
    head = b""  # the first bytes, kept to tell binary files from badly encoded text
    for chunk in chunks:
        raw = np.frombuffer(chunk, dtype=np.uint8)
        if len(head) < BINARY_PROBE:
            head += bytes(chunk[: BINARY_PROBE - len(head)])
        pending = len(decoder.getstate()[0])
        if ascii_fast and not pending and int(raw.max()) < 128:
            points = raw
        else:
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as e:
                raise _bad_text(e, offset - pending, head, encoding, label) from None
            points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        if refuse_nul and chars < BINARY_PROBE and not points[: BINARY_PROBE - chars].all():
            where = _first_nul(raw, points, offset, chars, ascii_fast)
            raise NotText(
                f"{label} looks binary (it contains NUL characters, the first at {where}); give a text file",
                binary=True,
            )
        offset += len(chunk)
        chars += len(points)
        if len(points):
            yield points
    pending = len(decoder.getstate()[0])
    try:
        tail = decoder.decode(b"", final=True)
    except UnicodeDecodeError as e:
        raise _bad_text(e, offset - pending, head, encoding, label) from None
    if tail:
        yield np.frombuffer(tail.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _first_nul(raw: np.ndarray, points: np.ndarray, offset: int, chars: int, ascii_compatible: bool) -> str:
    """Where a chunk's first NUL is: its byte offset in an ASCII-compatible encoding (there NUL is the byte
    0 and nothing else), else its character offset."""
    if ascii_compatible:
        return f"offset {offset + int(np.flatnonzero(raw == 0)[0])}"
    return f"character {chars + int(np.flatnonzero(points == 0)[0])}"


def _bad_text(error: UnicodeDecodeError, base: int, head: bytes, encoding: str, label: str) -> NotText:
    if b"\x00" in head:
        return NotText(
            f"{label} looks binary (it contains NUL bytes, the first at offset {head.index(0)}); "
            "give a text file",
            binary=True,
        )
    where = describe_bad_bytes(error.object, error.start, base + error.start, encoding)
    return NotText(f"{label} is {where}")


def raw_bytes(
    path: Path | int, label: str | None = None, chunk_bytes: int | None = None
) -> Iterator[np.ndarray]:
    """The bytes of a file (a path or an open descriptor) as uint8 arrays, chunk by chunk (the byte
    level's symbols)."""
    for chunk in _chunks_of(path, label or str(path), chunk_bytes):
        yield np.frombuffer(chunk, dtype=np.uint8)


def looks_binary(path: Path, probe: int = 8192) -> bool:
    """A NUL byte among the first `probe` bytes: how folder corpora skip binary files at the byte level.
    Raises OSError for a file that cannot be read."""
    with open(path, "rb") as f:
        return b"\x00" in f.read(probe)


class SymbolCounter:
    """Pass 1: how often each code point occurs, accumulated over chunks."""

    def __init__(self):
        self.counts = np.zeros(256, dtype=np.int64)

    def add(self, points: np.ndarray) -> None:
        self.add_counts(np.bincount(points))

    def add_counts(self, counts: np.ndarray) -> None:
        if counts.size > self.counts.size:
            counts = counts.copy()
            counts[: self.counts.size] += self.counts
            self.counts = counts
        else:
            self.counts[: counts.size] += counts

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def vocabulary(self) -> Vocabulary:
        return Vocabulary(chr(c) for c in np.flatnonzero(self.counts).tolist())


class IdMapper:
    """Pass 2: code points -> ids of a fixed vocabulary; code points outside it are dropped and counted."""

    def __init__(self, vocab: Vocabulary):
        table = vocab.codepoint_table()
        if table.size < 256:  # so every uint8 chunk indexes it directly
            table = np.concatenate([table, np.full(256 - table.size, -1, dtype=np.int32)])
        self.table = table
        self.unknown = 0

    def __call__(self, points: np.ndarray) -> np.ndarray:
        table = self.table
        if points.dtype != np.uint8 and int(points.max()) >= table.size:
            ids = np.where(points < table.size, table[np.minimum(points, table.size - 1)], -1)
        else:
            ids = table[points]
        if int(ids.min()) < 0:
            known = ids >= 0
            self.unknown += int(ids.size - np.count_nonzero(known))
            ids = ids[known]
        return ids
