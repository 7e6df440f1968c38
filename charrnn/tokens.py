"""Token files: an encoded corpus on disk, read back through a memory map in constant memory.

Layout (little-endian):
    16 bytes   magic b"CHARRNN-TOKENS\\n\\x01" (the last byte is the format version)
     8 bytes   length J of the JSON header
     J bytes   JSON header: dtype, count, level, vocab (one string, id order), fingerprint (SHA-256 of the
               ids as stored), source (what was encoded: files, sizes, skipped files)
               padded with spaces so the ids start at a multiple of 64 bytes
    count x itemsize bytes   the ids, uint8 / uint16 / uint32

The header is written first with a zero fingerprint and rewritten once the ids (and so their hash) are
done; the whole file is written under a temporary name and renamed, so a reader sees a complete file or
none. `open_token_file` checks the magic, the header and the file size against each other, then reads the
ids once to check their range and their SHA-256 against the header, so a truncated, altered or foreign
file is reported (`DamagedTokenFile`) rather than trained on. A temporary token file (standard input's)
has no name at all: `write_tokens` fills an unnamed file, read back through its descriptor.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from charrnn.atomic import atomic_write
from charrnn.paths import reopen
from charrnn.vocab import Vocabulary, numpy_id_dtype

MAGIC = b"CHARRNN-TOKENS\n\x01"
ALIGN = 64
VERIFY_BLOCK = 1 << 20
_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32}
_NO_FINGERPRINT = "0" * 64


class DamagedTokenFile(Exception):
    """A token file that is truncated, foreign or inconsistent with its header: rebuild it."""


@dataclass
class TokenFile:
    path: Path | int  # an open descriptor for a token file with no name (a temporary one)
    vocab: Vocabulary
    ids: torch.Tensor  # 1-D, memory-mapped (copy-on-write: writes never reach the file)
    fingerprint: str
    source: dict


def _header_bytes(header: dict) -> bytes:
    body = json.dumps(header, ensure_ascii=True).encode("ascii")
    start = len(MAGIC) + 8 + len(body)
    padding = -start % ALIGN
    return MAGIC + struct.pack("<Q", len(body) + padding) + body + b" " * padding


def write_token_file(
    path: Path, vocab: Vocabulary, count: int, chunks: Iterable[np.ndarray], source: dict
) -> str:
    """Write `count` ids, given as arrays in order, atomically to `path`; returns their fingerprint.

    Raises OSError when the folder is not writable or the disk fills; `path` is then left as it was.
    """
    with atomic_write(path) as f:
        return write_tokens(f, vocab, count, chunks, source)


def write_tokens(
    f: BinaryIO, vocab: Vocabulary, count: int, chunks: Iterable[np.ndarray], source: dict
) -> str:
    """Write a token file into `f`, open for writing and reading at its start (a temporary file with no
    name, which even kill -9 cannot leave behind); returns the ids' fingerprint."""
    dtype = numpy_id_dtype(len(vocab))
    header = {
        "dtype": dtype.name,
        "count": count,
        "level": vocab.level,
        "vocab": "".join(vocab.chars),
        "fingerprint": _NO_FINGERPRINT,
        "source": source,
    }
    f.write(_header_bytes(header))
    digest = hashlib.sha256()
    written = 0
    for chunk in chunks:
        data = np.ascontiguousarray(chunk, dtype=dtype)
        digest.update(data)
        f.write(data)
        written += data.size
    if written != count:
        raise ValueError(f"token count changed while encoding ({written} written, {count} expected)")
    header["fingerprint"] = digest.hexdigest()
    f.seek(0)
    f.write(_header_bytes(header))  # same length: only the fingerprint's digits changed
    f.flush()
    return header["fingerprint"]


def _open(path: Path | int) -> BinaryIO:
    return reopen(path) if isinstance(path, int) else open(path, "rb")  # noqa: SIM115 - the caller closes it


def read_header(path: Path | int) -> tuple[dict, int]:
    """The header of a token file (a path or an open descriptor) and the offset of its ids;
    DamagedTokenFile if it is not one."""
    try:
        with _open(path) as f:
            head = f.read(len(MAGIC) + 8)
            if len(head) < len(MAGIC) + 8 or head[: len(MAGIC)] != MAGIC:
                raise DamagedTokenFile("not a token file of this version")
            (length,) = struct.unpack("<Q", head[len(MAGIC) :])
            if length > 1 << 30:
                raise DamagedTokenFile("header length is implausible")
            body = f.read(length)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise DamagedTokenFile(f"cannot read it ({e.strerror})") from None
    try:
        header = json.loads(body)
        dtype = np.dtype(_DTYPES[header["dtype"]])
        count = int(header["count"])
        chars = header["vocab"]
        level = header["level"]
        header["fingerprint"]  # noqa: B018 - must be present
    except (ValueError, KeyError, TypeError) as e:
        raise DamagedTokenFile(f"header is unreadable ({type(e).__name__})") from None
    offset = len(MAGIC) + 8 + length
    if header["fingerprint"] == _NO_FINGERPRINT:
        raise DamagedTokenFile("it was never finished")
    if size != offset + count * dtype.itemsize:
        raise DamagedTokenFile(
            f"its size is {size:,} bytes, its header says {offset + count * dtype.itemsize:,}"
        )
    if numpy_id_dtype(len(chars)) != dtype or level not in ("char", "byte"):
        raise DamagedTokenFile("header is inconsistent")
    return header, offset


def open_token_file(path: Path | int, verify: bool = True) -> TokenFile:
    """Map a token file's ids; DamagedTokenFile if the file is not whole or (with `verify`) its ids are
    not the ones it was written with (see `verify_ids`)."""
    header, offset = read_header(path)
    count = header["count"]
    dtype = np.dtype(_DTYPES[header["dtype"]])
    if len(set(header["vocab"])) != len(header["vocab"]):
        raise DamagedTokenFile("header holds a repeated symbol")
    try:
        vocab = Vocabulary.from_list(header["vocab"], header["level"])
    except ValueError:
        raise DamagedTokenFile("header holds a bad vocabulary") from None
    if verify:
        verify_ids(path, dtype, offset, len(vocab), header["fingerprint"])
    ids = map_ids(path, dtype, offset, count)
    return TokenFile(path, vocab, ids, header["fingerprint"], header.get("source", {}))


def verify_ids(path: Path | int, dtype: np.dtype, offset: int, vocab_size: int, fingerprint: str) -> None:
    """Read the ids once, in blocks through one reused buffer (the page cache, not this process's
    memory): every id must be below the vocabulary size and their SHA-256 must be the header's.
    About 0.6 s a gigabyte here (BENCHMARKS.md); DamagedTokenFile otherwise."""
    digest = hashlib.sha256()
    buffer = bytearray(VERIFY_BLOCK - VERIFY_BLOCK % dtype.itemsize)
    try:
        with _open(path) as f:
            f.seek(offset)
            while n := f.readinto(buffer):
                block = memoryview(buffer)[:n]
                digest.update(block)
                ids = np.frombuffer(block, dtype=dtype)
                if vocab_size <= np.iinfo(dtype).max and ids.size and int(ids.max()) >= vocab_size:
                    raise DamagedTokenFile(f"it holds an id outside its {vocab_size}-symbol vocabulary")
    except OSError as e:
        raise DamagedTokenFile(f"cannot read it ({e.strerror})") from None
    if digest.hexdigest() != fingerprint:
        raise DamagedTokenFile("its ids do not match their checksum")


def map_ids(path: Path | int, dtype: np.dtype, offset: int, count: int) -> torch.Tensor:
    """`count` ids of `dtype` at `offset` in a file (path or open descriptor) as a memory-mapped tensor.

    Copy-on-write mapping: the array is writable as torch wants, and nothing ever reaches the file.
    """
    if count == 0:
        return torch.empty(0, dtype=torch.from_numpy(np.empty(0, dtype)).dtype)
    if isinstance(path, int):
        with contextlib.closing(os.fdopen(os.dup(path), "rb")) as f:
            array = np.memmap(f, dtype=dtype, mode="c", offset=offset, shape=(count,))
    else:
        array = np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=(count,))
    return torch.from_numpy(array)
