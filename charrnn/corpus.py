"""Reading a corpus: a file, standard input, a folder or a glob -> a memory-mapped id tensor, plus the split.

The first use of a corpus encodes it in two streaming passes over fixed-size chunks (textstream.py):
the vocabulary, then the ids, written to a token file (tokens.py) in the cache folder. Every later use
maps that file: training, validation and resume read ids through the memory map, so memory does not
grow with the corpus, and the corpus fingerprint that --resume checks comes from the file's header.

The cache entry is named by the files' resolved paths, sizes and modification times, a hash of a single
file's first and last MiB, and the encoding, lossy and level settings: a changed file is a new entry. A
damaged entry is reported in one line and rebuilt. With no writable cache folder (or a full disk) the
token file goes to a temporary file with no name instead. Standard input, a pipe or a device is spooled to
a temporary file with no name first (nothing is left behind, even by kill -9), checked as it is copied
(refused at the first chunk that is not text) and stopped while a margin of the disk is free
(paths.SpaceGuard), then encoded the same way.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from charrnn.errors import BadInput, BadSetting, CharrnnError, NoSpace
from charrnn.paths import SpaceGuard, cache_dir
from charrnn.sources import FILE_SEPARATOR, CorpusSource, find_source
from charrnn.textstream import (
    ENCODING_HINT,
    IdMapper,
    NotText,
    SymbolCounter,
    check_encoding,
    codepoints,
    decode_chunks,
    describe_bad_bytes,
    looks_binary,
    open_input,
    raw_bytes,
    stream_chunks,
)
from charrnn.tokens import (
    DamagedTokenFile,
    TokenFile,
    map_ids,
    open_token_file,
    read_header,
    write_token_file,
    write_tokens,
)
from charrnn.vocab import LEVELS, Vocabulary, numpy_id_dtype

CACHE_VERSION = 2  # 2: token files (version 1 kept torch-saved tensors in encoded/)
Report = Callable[[str], None]
Stream = io.RawIOBase | io.BufferedIOBase


@dataclass
class Corpus:
    """An encoded text: `ids` holds the text's symbols as ids of `vocab` (often a memory map)."""

    name: str
    vocab: Vocabulary
    ids: torch.Tensor
    stored_fingerprint: str | None = None  # from the token file's header, when there is one
    source: dict = field(default_factory=dict)  # what was encoded (files, skipped files)
    token_path: Path | None = None  # the cached token file the ids map, when there is one (not temporary)
    origin: dict = field(default_factory=dict)  # how to read it again (checkpoint.CorpusFacts.origin)

    def __len__(self) -> int:
        return self.ids.numel()

    @property
    def level(self) -> str:
        return self.vocab.level

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the encoded text: tells a resumed run whether it is on the same corpus."""
        if self.stored_fingerprint:
            return self.stored_fingerprint
        return hashlib.sha256(self.ids.contiguous().numpy()).hexdigest()

    def split(self, val_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The first (1 - val_fraction) of the text for training, the rest for validation."""
        n_val = int(len(self) * val_fraction)
        n_train = len(self) - n_val
        return self.ids[:n_train], self.ids[n_train:]


def decode_bytes(
    data: bytes,
    encoding: str = "utf-8",
    lossy: bool = False,
    source: str = "corpus",
    hint: str = ENCODING_HINT,
) -> str:
    """Bytes -> text, with an error that says where the text stops being valid (and `hint`, the fix).
    For small texts (a prime); corpora and evaluated texts are streamed (see `load_corpus`)."""
    check_encoding(encoding)
    try:
        text = data.decode(encoding, errors="replace" if lossy else "strict")
    except UnicodeDecodeError as e:
        if b"\x00" in data[: 1 << 20]:
            raise BadInput(f"{source} looks binary (it contains NUL bytes); give a text file") from None
        raise BadInput(f"{source} is {describe_bad_bytes(data, e.start, e.start, encoding, hint)}") from None
    if not lossy and "\x00" in text[: 1 << 20]:
        raise BadInput(f"{source} looks binary (it contains NUL characters); give a text file")
    return text


# Texts read whole into memory (a prime, the text `novelty` checks): beyond this they are refused, so an
# endless source (`--prime-file /dev/zero`, a pipe that never ends) cannot take the machine's memory.
MAX_IN_MEMORY_BYTES = 256 << 20
_READ_CHUNK = 1 << 20


def read_input_bytes(path: str | Path, limit: int | None = None) -> bytearray:
    """The bytes of a small text (a prime, a sample to check), or of stdin for '-', read in chunks up to
    `limit` (default MAX_IN_MEMORY_BYTES) whatever the source (file, pipe, device), with one-line errors
    for the usual mistakes."""
    limit = MAX_IN_MEMORY_BYTES if limit is None else limit
    if str(path) == "-":
        return _read_bounded(sys.stdin.buffer, "standard input", limit)
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such file")
    if path.is_dir():
        raise BadInput(f"{path} is a directory; give a text file")
    try:
        with open(path, "rb") as f:
            return _read_bounded(f, str(path), limit)
    except PermissionError:
        raise BadInput(f"{path}: permission denied; check the file's permissions") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror})") from None


def _read_bounded(stream, label: str, limit: int) -> bytearray:
    buffer = bytearray()
    while True:
        chunk = stream.read(min(_READ_CHUNK, limit + 1 - len(buffer)))
        if not chunk:
            return buffer
        buffer += chunk
        if len(buffer) > limit:
            raise BadInput(
                f"{label} is longer than {limit / (1 << 20):g} MiB, more than this command reads into "
                "memory; give a shorter text (a prime or a sample, not a corpus)"
            )


def _ignore(_: str) -> None:
    pass


def check_level(level: str, encoding: str | None, lossy: bool) -> None:
    """--level byte reads bytes as they are: an encoding or --lossy would mean nothing."""
    if level not in LEVELS:
        raise BadSetting(f"--level {level!r}: choose char or byte", setting="level")
    if level == "byte" and (encoding is not None or lossy):
        flag = "--encoding" if encoding is not None else "--lossy"
        raise BadSetting(
            f"{flag} has no effect with --level byte (any bytes are valid symbols there); drop {flag}"
        )


def load_corpus(
    spec: str | Path,
    name: str | None = None,
    encoding: str | None = None,
    lossy: bool = False,
    level: str = "char",
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    use_cache: bool = True,
    report: Report | None = None,
) -> Corpus:
    """Encode a corpus (a file, '-' for stdin, a folder or a glob pattern) or map its cached encoding.

    `report` receives one-line notes for the user (skipped files, a rebuilt cache entry, no cache).
    """
    report = report or _ignore
    check_level(level, encoding, lossy)
    encoding = encoding or "utf-8"
    check_encoding(encoding)
    with _terminate_cleanly():
        if str(spec) == "-":
            if include or exclude:
                raise BadSetting("--include and --exclude filter folder and glob corpora, not standard input")
            tokens = _read_once(sys.stdin.buffer, "standard input", encoding, lossy, level)
            return _corpus(name or "stdin", tokens, report)
        source = find_source(spec, include, exclude)
        corpus_name = name or (
            Path(str(spec)).stem if source.kind in ("file", "stream") else _folder_name(source)
        )
        if source.kind == "stream":  # a pipe or device (`<(...)`): read once, like standard input
            with open_input(source.files[0], source.label) as stream:
                tokens = _read_once(stream, source.label, encoding, lossy, level)
            return _corpus(corpus_name, tokens, report)
        return _cached_corpus(source, corpus_name, encoding, lossy, level, use_cache, report)


load_text_file = load_corpus  # the name earlier releases documented


def _read_once(stream: Stream, label: str, encoding: str, lossy: bool, level: str) -> TokenFile:
    """A stream that can be read only once: spooled (and checked on the way), then encoded from the spool
    in the usual two passes into a temporary token file."""
    with _spooled(stream, label, level, encoding, lossy) as fd:
        source = CorpusSource("stdin", label, [fd], stats=[(os.fstat(fd).st_size, 0)])
        return _encode_to_temporary(source, encoding, lossy, level)


def _cached_corpus(
    source: CorpusSource, name: str, encoding: str, lossy: bool, level: str, use_cache: bool, report: Report
) -> Corpus:
    """Map the corpus's token file in the cache, encoding (or re-encoding) it first if needed."""
    entry = None
    if use_cache:
        try:
            folder = cache_dir("tokens")
            entry = folder / f"{source.cache_key(CACHE_VERSION, encoding, lossy, level)}.tok"
        except OSError as e:
            report(_no_cache_note(e))
    if entry is not None and entry.exists():
        try:
            return _corpus(name, open_token_file(entry), report, cached=True)
        except DamagedTokenFile as e:
            report(f"note: the cache entry for {source.label} was damaged ({e}); rebuilding it")
            try:
                entry.unlink(missing_ok=True)
            except OSError as gone:  # a read-only cache: encode beside it
                report(_no_cache_note(gone))
                entry = None
    if entry is not None:
        identity = source.identity(CACHE_VERSION, encoding, lossy, level)
        try:
            _encode(source, encoding, lossy, level, entry, identity)
            tokens = open_token_file(entry, verify=False)  # just written and hashed
        except (OSError, DamagedTokenFile) as e:  # read-only or full cache folder
            report(_no_cache_note(e))
        else:
            _sweep(entry, identity)
            return _corpus(name, tokens, report, cached=True)
    return _corpus(name, _encode_to_temporary(source, encoding, lossy, level), report)


STALE_SECONDS = 3600.0


def _sweep(kept: Path, identity: str) -> None:
    """Tidy the cache after an encoding: remove entries that `kept` replaces (the same files with the same
    settings, encoded before they changed) and temporary files that a killed encoder left an hour ago."""
    now = time.time()
    for path in kept.parent.iterdir():
        if path == kept:
            continue
        with contextlib.suppress(OSError, DamagedTokenFile):
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                if now - path.stat().st_mtime > STALE_SECONDS:
                    path.unlink()
            elif path.suffix == ".tok" and read_header(path)[0].get("source", {}).get("identity") == identity:
                path.unlink()  # a process mapping it keeps its pages until it lets go


def _folder_name(source: CorpusSource) -> str:
    root = source.root.resolve() if source.root is not None else None
    return root.name if root is not None and root.name else "corpus"


def _no_cache_note(error: BaseException) -> str:
    reason = getattr(error, "strerror", None) or str(error)
    folder = os.environ.get("CHARRNN_CACHE_DIR") or "the cache folder"
    return (
        f"note: cannot keep the encoded corpus in {folder} ({reason}); encoding into a temporary file "
        "instead (set CHARRNN_CACHE_DIR to a writable folder with free space to skip this next time)"
    )


def _corpus(name: str, tokens: TokenFile, report: Report, cached: bool = False) -> Corpus:
    info = tokens.source
    if info.get("skipped"):
        report(
            f"note: skipped {info['skipped']} of {info['skipped'] + info['files']} files: "
            f"{info.get('why', '')} (first: {info.get('first_skipped', '')})"
        )
    if len(tokens.ids) == 0:
        raise BadInput(
            f"{info.get('label', name)} is empty; give a text with at least a few hundred characters"
        )
    return Corpus(name, tokens.vocab, tokens.ids, tokens.fingerprint, info, tokens.path if cached else None)


def _encode_to_temporary(source: CorpusSource, encoding: str, lossy: bool, level: str) -> TokenFile:
    """Encode into a token file with no name in the system's temporary folder and map it: the mapping
    holds its space, which goes with the mapping (or the process, however it ends). For a spooled stream,
    whose size nobody chose, the writing stops while a margin of the disk is free."""
    folder = Path(tempfile.gettempdir())
    guard = SpaceGuard(folder, f"writing the encoded {source.label}") if source.kind == "stdin" else None
    try:
        with tempfile.TemporaryFile(prefix="charrnn-", suffix=".tok") as out:
            _encode(source, encoding, lossy, level, out, "", guard)
            return open_token_file(out.fileno(), verify=False)  # the mapping outlives the descriptor
    except OSError as e:
        raise _write_error(
            e,
            f"cannot write the encoded corpus to {folder} ({e.strerror or e}); free some "
            "space or set CHARRNN_CACHE_DIR (or TMPDIR) to a writable folder",
        ) from None


def _write_error(error: OSError, message: str) -> CharrnnError:
    """NoSpace for a full disk or quota, else CharrnnError: a caller tells them apart by type."""
    return (NoSpace if error.errno in (errno.ENOSPC, errno.EDQUOT) else CharrnnError)(message)


def _scan(source: CorpusSource, encoding: str, lossy: bool, level: str):
    """Pass 1: the files to read and the symbol counts, skipping (in a folder or glob) the files that are
    not text: binary ones (NUL characters, even with --lossy), other encodings, unreadable ones."""
    kept, skipped = [], {}
    counter = SymbolCounter()
    for path in source.files:
        label = str(path) if source.several else source.label
        if level == "byte":
            try:
                binary = source.several and looks_binary(path)
            except OSError:
                skipped.setdefault("unreadable", []).append(path)
                continue
            if binary:
                skipped.setdefault("binary", []).append(path)
            else:
                kept.append(path)
            continue
        this_file = SymbolCounter()
        try:
            refuse_nul = True if source.several else None
            for points in codepoints(path, encoding, lossy, label, refuse_nul=refuse_nul):
                this_file.add(points)
        except NotText as e:
            if not source.several:
                raise
            skipped.setdefault("binary" if e.binary else f"not {encoding} text", []).append(path)
            continue
        except CharrnnError:
            if not source.several:
                raise
            skipped.setdefault("unreadable", []).append(path)
            continue
        kept.append(path)
        counter.add_counts(this_file.counts)
        if source.several:
            counter.add(_SEPARATOR)
    return kept, skipped, counter


_SEPARATOR = np.frombuffer(FILE_SEPARATOR.encode("ascii"), dtype=np.uint8)


def _encode(
    source: CorpusSource,
    encoding: str,
    lossy: bool,
    level: str,
    dest: Path | BinaryIO,
    identity: str,
    guard: SpaceGuard | None = None,
) -> None:
    """The two passes: count the symbols (the vocabulary), then write the ids to the token file `dest` (a
    path, replaced atomically, or an open file with no name), bounded by `guard` when there is one."""
    kept, skipped, counter = _scan(source, encoding, lossy, level)
    n_skipped = sum(len(v) for v in skipped.values())
    why = ", ".join(f"{len(v)} {reason}" for reason, v in skipped.items())
    if source.several and not kept:
        hint = "try --encoding or --lossy" if f"not {encoding} text" in skipped else "check the files"
        raise BadInput(f"{source.label} holds no usable text file ({n_skipped} skipped: {why}); {hint}")
    if level == "byte":
        vocab = Vocabulary.for_bytes()
        sizes = dict(zip(source.files, (size for size, _ in source.stats), strict=True))
        count = sum(sizes[p] for p in kept) + (len(_SEPARATOR) * len(kept) if source.several else 0)
    else:
        vocab = counter.vocabulary()
        count = counter.total
    first_skipped = min((p for v in skipped.values() for p in v), key=lambda p: p.as_posix(), default=None)
    info = {
        "label": source.label,
        "kind": source.kind,
        "identity": identity,
        "files": len(kept),
        "skipped": n_skipped,
        "why": why,
        "first_skipped": source.relative(first_skipped) if first_skipped else "",
    }

    def ids() -> Iterator[np.ndarray]:
        mapper = IdMapper(vocab) if level == "char" else None
        for path in kept:
            label = str(path) if source.several else source.label
            if mapper is None:
                yield from raw_bytes(path, label)
            else:
                refuse_nul = True if source.several else None
                for points in codepoints(path, encoding, lossy, label, refuse_nul=refuse_nul):
                    yield mapper(points)
            if source.several:
                yield _SEPARATOR if mapper is None else mapper(_SEPARATOR)
        if mapper is not None and mapper.unknown:
            raise ValueError("new characters appeared")

    chunks = ids() if guard is None else guard.watch(ids(), numpy_id_dtype(len(vocab)).itemsize)
    try:
        if isinstance(dest, Path):
            write_token_file(dest, vocab, count, chunks, info)
        else:
            write_tokens(dest, vocab, count, chunks, info)
    except (ValueError, NotText) as e:
        raise BadInput(
            f"{source.label} changed while it was being encoded ({e}); run the command again"
        ) from None


class Terminated(KeyboardInterrupt):
    """SIGTERM while encoding: unwinds like Ctrl-C, so temporary files are removed on the way out."""

    signum = signal.SIGTERM


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """Within the block SIGTERM raises Terminated (in the main thread), as Ctrl-C raises
    KeyboardInterrupt, so an encoding stopped either way leaves no temporary file behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _spooled(stream: Stream, label: str, level: str, encoding: str, lossy: bool) -> Iterator[int]:
    """A stream (standard input, a pipe, a device) copied chunk by chunk into a temporary file with no
    name, yielded as its open descriptor: nothing is left to remove however the process ends, and its
    space is freed when the descriptor closes. The copy is checked as it goes, so an endless or binary
    source cannot fill the disk: at the char level the first chunk that is not text (a bad byte, a NUL
    near the start unless lossy) is refused with its offset, and at any level the copy stops while a
    margin of the disk is free (SpaceGuard)."""
    folder = Path(tempfile.gettempdir())
    failed = f"cannot copy {label} to {folder}"
    try:
        spool = tempfile.TemporaryFile(prefix="charrnn-stdin-")  # noqa: SIM115 - closed by the `with` below
    except OSError as e:
        raise _write_error(e, f"{failed} ({e.strerror or e}); set TMPDIR to a writable folder") from None
    with spool:
        copied = _copy(stream_chunks(stream, label), spool, SpaceGuard(folder, f"copying {label}"))
        try:
            for _ in copied if level == "byte" else decode_chunks(copied, encoding, lossy, label):
                pass
            spool.flush()
        except OSError as e:
            raise _write_error(
                e, f"{failed} ({e.strerror or e}); set TMPDIR to a folder with free space"
            ) from None
        yield spool.fileno()


def _copy(chunks: Iterable[memoryview], out: BinaryIO, guard: SpaceGuard) -> Iterator[memoryview]:
    """Each chunk written to `out` (counted by `guard`) and passed on, to be checked before the next."""
    for chunk in chunks:
        out.write(chunk)
        guard.wrote(len(chunk))
        yield chunk


def encode_with_vocab(
    spec: str | Path,
    vocab: Vocabulary,
    encoding: str = "utf-8",
    lossy: bool = False,
    label: str | None = None,
) -> tuple[torch.Tensor, int]:
    """A text file (or '-' for stdin) as memory-mapped ids of a fixed vocabulary, and how many of its
    characters were outside it (dropped). Streams the text: memory does not grow with it.

    At the byte level the file's bytes are the ids, mapped directly; otherwise the ids go to an unnamed
    temporary file that disappears when the mapping does. Standard input, pipes and devices are read once:
    decoded as they are read (refused at the first chunk that is not text), or at the byte level spooled
    (`_spooled`); either way the temporary file stops growing while a margin of the disk is free.
    """
    with _terminate_cleanly():
        if str(spec) == "-":
            return _encode_stream(sys.stdin.buffer, vocab, encoding, lossy, label or "standard input")
        path = Path(spec)
        label = label or str(spec)
        if path.exists() and not path.is_file() and not path.is_dir():  # a pipe or device
            with open_input(path, label) as stream:
                return _encode_stream(stream, vocab, encoding, lossy, label)
        if vocab.is_bytes:
            with open_input(path, label) as f:
                return map_ids(f.fileno(), np.dtype(np.uint8), 0, os.fstat(f.fileno()).st_size), 0
        return _ids_file(codepoints(path, encoding, lossy, label), vocab, label)  # as big as the file


def _encode_stream(
    stream: Stream, vocab: Vocabulary, encoding: str, lossy: bool, label: str
) -> tuple[torch.Tensor, int]:
    """A stream's ids with a fixed vocabulary: at the byte level its bytes are the ids, so it is spooled
    and mapped; otherwise the vocabulary is known, so it is decoded as it is read, with no spool."""
    if vocab.is_bytes:
        with _spooled(stream, label, "byte", encoding, lossy) as fd:
            return map_ids(fd, np.dtype(np.uint8), 0, os.fstat(fd).st_size), 0
    points = decode_chunks(stream_chunks(stream, label), encoding, lossy, label)
    return _ids_file(points, vocab, label, guarded=True)


# A stream whose first this-many characters are all unknown to the model is refused: it could be endless
# (`--lossy` on /dev/zero keeps its NULs, which no model knows) and would be refused at its end anyway.
UNKNOWN_ONLY_LIMIT = 1 << 24


def _ids_file(
    points: Iterable[np.ndarray], vocab: Vocabulary, label: str, guarded: bool = False
) -> tuple[torch.Tensor, int]:
    """Code points as ids of `vocab` in an unnamed temporary file, memory-mapped, and the count of those
    outside it (dropped). `guarded` (a stream's): the file stops growing while a margin of the disk is
    free."""
    mapper = IdMapper(vocab)
    dtype = numpy_id_dtype(len(vocab))
    folder = Path(tempfile.gettempdir())
    guard = SpaceGuard(folder, f"writing the encoded {label}") if guarded else None
    try:
        with tempfile.TemporaryFile(prefix="charrnn-ids-") as out:
            count = 0
            for points_chunk in points:
                ids = mapper(points_chunk).astype(dtype)
                out.write(ids)
                count += ids.size
                if guard is not None:
                    guard.wrote(ids.nbytes)
                    if count == 0 and mapper.unknown >= UNKNOWN_ONLY_LIMIT:  # (/dev/zero with --lossy)
                        raise BadInput(
                            f"the first {mapper.unknown:,} characters of {label} are all outside the model's "
                            "vocabulary; score a text in the language the model was trained on"
                        )
            out.flush()
            return map_ids(out.fileno(), dtype, 0, count), mapper.unknown
    except OSError as e:
        reason = e.strerror or e
        raise _write_error(
            e, f"cannot write the encoded text to {folder} ({reason}); set TMPDIR to a folder with free space"
        ) from None


REMAP_CHUNK = 1 << 22  # ids per slice when re-encoding a corpus for another vocabulary


def with_vocabulary(corpus: Corpus, vocab: Vocabulary, report: Report | None = None) -> Corpus:
    """The corpus as ids of `vocab`, which holds every one of its characters in some order (a fine-tuned
    model's grown vocabulary: its source's characters first, then the new ones). The ids are translated
    slice by slice into a token file of their own (cached beside the corpus's, named by its fingerprint
    and the vocabulary), so memory stays constant and the next run maps it at once."""
    if corpus.vocab == vocab and corpus.vocab.chars == vocab.chars:
        return corpus
    missing = [c for c in corpus.vocab.chars if c not in vocab]
    if missing or corpus.vocab.level != vocab.level:
        raise ValueError(f"the vocabulary lacks {len(missing)} of the corpus's characters")
    table = np.array([vocab.index(c) for c in corpus.vocab.chars], dtype=np.int64)
    dtype = numpy_id_dtype(len(vocab))

    def chunks() -> Iterator[np.ndarray]:
        for start in range(0, len(corpus), REMAP_CHUNK):
            ids = corpus.ids[start : start + REMAP_CHUNK].numpy().astype(np.int64)
            yield table[ids].astype(dtype)

    key = hashlib.sha256(f"{corpus.fingerprint}\n{''.join(vocab.chars)}".encode()).hexdigest()[:32]
    info = {**corpus.source, "identity": f"remapped:{key}"}
    entry = None
    try:
        entry = cache_dir("tokens") / f"remapped-{key}.tok"
    except OSError as e:
        (report or _ignore)(_no_cache_note(e))
    tokens = None
    if entry is not None and entry.exists():
        try:
            tokens = open_token_file(entry)
        except DamagedTokenFile:
            with contextlib.suppress(OSError):
                entry.unlink()  # rebuilt below
    if entry is not None and tokens is None:
        try:
            write_token_file(entry, vocab, len(corpus), chunks(), info)
            tokens = open_token_file(entry, verify=False)
        except (OSError, DamagedTokenFile) as e:
            (report or _ignore)(_no_cache_note(e))
            tokens = None
    if tokens is None:
        with tempfile.TemporaryFile(prefix="charrnn-", suffix=".tok") as out:
            write_tokens(out, vocab, len(corpus), chunks(), info)
            tokens = open_token_file(out.fileno(), verify=False)
    path = tokens.path if isinstance(tokens.path, Path) else None
    # the fingerprint stays the text's own (its ids in its own vocabulary): what `sample --novel` finds
    # when it reads the corpus again, and what a resume compares
    return Corpus(corpus.name, vocab, tokens.ids, corpus.fingerprint, corpus.source, path, corpus.origin)
