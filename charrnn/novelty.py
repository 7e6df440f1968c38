"""Novelty: how much of a text is copied verbatim from a corpus (to tell memorised output from new text).

A corpus gets a novelty index once, kept beside its token file in the cache (`<key>.tok` -> `<key>.nov`):
its suffix array and the hashes of its words. A query then costs a few binary searches per text position,
whatever the corpus's size, and reads the corpus and the index through memory maps.

Arrays (n corpus symbols, m text symbols; a symbol is a character, or a byte at the byte level):
    ids    (n,) uint8 / uint16 / uint32  the corpus's token ids (the token file's memory map)
    sa     (n,) uint32, or uint64 from 2**32 symbols: sa[r] = start of the r-th smallest suffix of ids
    words  (w,) uint64  sorted, unique: the hashes of the corpus's words (`word_hashes`)
    text   (m,) int64   the text's ids in the corpus vocabulary, -1 for symbols the corpus lacks
    ms     (m,) int64   matching statistics: ms[i] = length of the longest prefix of text[i:] found in ids

Index file layout (little-endian): 16-byte magic (last byte: format version), 8-byte JSON header length,
JSON header (the token file's fingerprint, n, w, the SA dtype, the SHA-256 of everything after the header)
padded to 64 bytes, then sa, then words. It is written whole or not at all (atomic_write); an index whose
header, size or checksum disagrees with its token file is rebuilt.

Words are maximal runs of word symbols: characters that regex `\\w` matches (letters, digits, marks of any
script, underscore); at the byte level ASCII `\\w` bytes and every byte from 0x80 (so UTF-8 letters join
words). Word membership compares 64-bit hashes of the words' ids: a false "found" needs two different
words with the same hash (about one chance in 2**64 / w per word).

Items (`ItemMatcher`, for `charrnn sample`'s item mode): a batch of generated items (names, one per line)
is checked in one pass for each question, all items joined with -1 between them: is the item a whole
item of the corpus (delimiter + item + delimiter occurs: matching statistics at the patterns' first
symbols only; the corpus's ends are compared directly), and how long is its longest substring found
anywhere. Memory: the batch's arrays beside the mapped ids and sa.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.atomic import atomic_write
from charrnn.sources import FILE_SEPARATOR
from charrnn.vocab import Vocabulary

MAGIC = b"CHARRNN-NOVELTY\x01"
ALIGN = 64
INDEX_SUFFIX = ".nov"
DEFAULT_NGRAMS = (10, 20, 50)
NOVEL_WORDS = 20  # the text's words absent from the corpus that a report lists, first seen first
SORT_CHUNK = 1 << 22  # suffixes re-sorted per argsort while building: bounds the build's extra memory
WORD_CHUNK = 1 << 22  # corpus symbols hashed per step
QUERY_BLOCK = 8192  # text positions searched together
WINDOW = 64  # symbols compared per step of the search; longer matches are extended WINDOW at a time
_GROUP_SHIFT = 40  # sort key while building: group number << 40 | what follows the group's common prefix
_HASH_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd, so it has an inverse modulo 2**64
_LOW = -2  # pads a text window: below every symbol and below the corpus's end (-1)
_HIGH = 1 << 40  # pads a text window for an upper bound: above every symbol
Report = Callable[[str], None]


class DamagedIndex(Exception):
    """A novelty index that is truncated, foreign or does not belong to its token file: rebuild it."""


# ---- building ------------------------------------------------------------------------------------------
def suffix_array(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """The suffix array of `ids` (a shorter suffix sorts before a longer one it begins).

    Prefix doubling (Manber-Myers with Larsson-Sadakane's refinement): a counting sort by the first symbol,
    one pass that sorts each group by the next few symbols packed into an integer, then passes that sort
    each still-tied group by the rank of the suffix h symbols on, doubling h, until no ties remain. Only
    tied suffixes are touched, and they are sorted SORT_CHUNK at a time, so besides sa and rank (both n
    integers) memory stays at a few hundred MB. A rank is the sa position where the suffix's group starts.
    """
    n = int(ids.size)
    index_dtype = np.uint32 if n < 2**32 - 1 else np.uint64
    sa = np.empty(n, dtype=index_dtype)
    rank = np.empty(n, dtype=index_dtype)
    if n == 0:
        return sa
    counts = np.zeros(vocab_size, dtype=np.int64)
    for a in range(0, n, SORT_CHUNK):
        counts += np.bincount(np.asarray(ids[a : a + SORT_CHUNK], dtype=np.int64), minlength=vocab_size)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    filled = np.zeros(vocab_size, dtype=np.int64)
    for a in range(0, n, SORT_CHUNK):  # counting sort by the first symbol, chunk by chunk
        chunk = np.asarray(ids[a : a + SORT_CHUNK], dtype=np.int64)
        order = np.argsort(chunk, kind="stable")
        symbols = chunk[order]
        chunk_counts = np.bincount(symbols, minlength=vocab_size)
        within = np.arange(symbols.size) - (np.cumsum(chunk_counts) - chunk_counts)[symbols]
        sa[starts[symbols] + filled[symbols] + within] = order + a
        rank[a : a + chunk.size] = starts[chunk]
        filled += chunk_counts
    group_start = np.zeros(n, dtype=bool)
    group_start[starts[counts > 0]] = True
    tied = np.repeat(counts > 1, counts)  # sa positions whose first symbol is shared
    pending = np.concatenate(  # chunk by chunk: flatnonzero's int64 positions would take 8n bytes at once
        [(np.flatnonzero(tied[a : a + SORT_CHUNK]) + a).astype(index_dtype) for a in range(0, n, SORT_CHUNK)]
    )
    pending_start = group_start[tied]
    del tied, group_start

    bits = int(vocab_size).bit_length()  # symbols are packed as id + 1, with 0 past the end
    width = max(1, _GROUP_SHIFT // bits)

    def packed(s: np.ndarray) -> np.ndarray:
        key = np.zeros(s.size, dtype=np.uint64)
        for j in range(1, width + 1):
            key = (key << np.uint64(bits)) | _symbols_at(ids, s + j).astype(np.uint64)
        return key

    pending, pending_start = _refine(sa, rank, pending, pending_start, packed)
    h = width + 1
    while pending.size:
        step = h

        def following(s: np.ndarray, step: int = step) -> np.ndarray:
            after = s + step
            inside = after < n
            key = np.zeros(s.size, dtype=np.uint64)
            key[inside] = rank[after[inside]].astype(np.uint64) + np.uint64(1)
            return key

        pending, pending_start = _refine(sa, rank, pending, pending_start, following)
        h *= 2
    return sa


def _symbols_at(ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """ids[positions] + 1 as int64, 0 for positions past the end."""
    last = ids.size - 1
    out = np.asarray(ids[np.minimum(positions, last)], dtype=np.int64) + 1
    out[positions > last] = 0
    return out


def _refine(
    sa: np.ndarray,
    rank: np.ndarray,
    pending: np.ndarray,
    pending_start: np.ndarray,
    key_of: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """One pass: sort every tied group (its sa positions in `pending`, `pending_start` marking where each
    group begins) by key_of(suffix); returns the positions and group starts still tied afterwards."""
    kept, kept_start = [], []
    a = 0
    while a < pending.size:
        b = _group_aligned_end(pending_start, a + SORT_CHUNK)
        where = pending[a:b].astype(np.int64)
        s = sa[where].astype(np.int64)
        group = np.cumsum(pending_start[a:b], dtype=np.int64) - 1
        key = (group.astype(np.uint64) << np.uint64(_GROUP_SHIFT)) | key_of(s)
        order = np.argsort(key)
        key, s = key[order], s[order]
        new = np.empty(key.size, dtype=bool)
        new[0] = True
        np.not_equal(key[1:], key[:-1], out=new[1:])
        sa[where] = s
        first = np.maximum.accumulate(np.where(new, np.arange(key.size), 0))
        rank[s] = where[first]
        alone = new & np.append(new[1:], True)
        kept.append(pending[a:b][~alone])
        kept_start.append(new[~alone])
        a = b
    if not kept:
        return pending[:0], pending_start[:0]
    return np.concatenate(kept), np.concatenate(kept_start)


def _group_aligned_end(starts: np.ndarray, target: int) -> int:
    """The first group start at or after `target` (or the end), so that no group is cut in two."""
    size = starts.size
    j = target
    while j < size:
        hit = np.flatnonzero(starts[j : j + 65536])
        if hit.size:
            return j + int(hit[0])
        j += 65536
    return size


def word_table(vocab: Vocabulary) -> np.ndarray:
    """id -> whether the symbol is part of words (see the module docstring), as a bool array."""
    if vocab.is_bytes:
        return np.array([b >= 0x80 or re.fullmatch(r"\w", chr(b)) is not None for b in range(256)])
    return np.array([re.fullmatch(r"\w", c) is not None for c in vocab.chars], dtype=bool)


def _word_spans(is_word: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends (exclusive) of the maximal runs of True."""
    edges = np.diff(is_word.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _hash_spans(symbols: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each span symbols[start:end] (symbols as ids; the same ids give the same hash
    wherever they stand): a polynomial in _HASH_BASE modulo 2**64, mixed with the length."""
    m = symbols.size
    powers = np.empty(m, dtype=np.uint64)
    powers[:1] = 1
    if m > 1:
        powers[1:] = _HASH_BASE
        np.cumprod(powers, out=powers)
    inverse = np.empty(m, dtype=np.uint64)
    inverse[:1] = 1
    if m > 1:
        inverse[1:] = np.uint64(pow(int(_HASH_BASE), -1, 2**64))
        np.cumprod(inverse, out=inverse)
    prefix = np.zeros(m + 1, dtype=np.uint64)
    np.cumsum((symbols.astype(np.uint64) + np.uint64(1)) * powers, out=prefix[1:])
    raw = (prefix[ends] - prefix[starts]) * inverse[starts]
    return _mix(raw ^ ((ends - starts).astype(np.uint64) * np.uint64(0xD6E8FEB86659FD93)))


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: spreads every input bit over the output."""
    x = x.copy()
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def word_hashes(ids: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """The sorted unique hashes of the corpus's words, read WORD_CHUNK symbols at a time; a chunk ends
    after a non-word symbol, so no word is cut."""
    table = word_table(vocab)
    n = ids.size
    found: list[np.ndarray] = []
    held = 0
    a = 0
    while a < n:
        b = min(n, a + WORD_CHUNK)
        while b < n:  # move the cut back to just after a non-word symbol (forward if a word fills it)
            tail = np.flatnonzero(~table[np.asarray(ids[a:b])])
            if tail.size:
                b = a + int(tail[-1]) + 1
                break
            b = min(n, b + WORD_CHUNK)
        chunk = np.asarray(ids[a:b], dtype=np.int64)
        starts, ends = _word_spans(table[chunk])
        if starts.size:
            found.append(np.unique(_hash_spans(chunk, starts, ends)))
            held += found[-1].size
        if held > 1 << 24:  # merge now and then, so repeated words do not pile up
            found = [np.unique(np.concatenate(found))]
            held = found[0].size
        a = b
    return np.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.uint64)


# ---- the index file ------------------------------------------------------------------------------------
@dataclass
class NoveltyIndex:
    sa: np.ndarray  # see the module docstring (memory-mapped when read from a file)
    words: np.ndarray
    path: Path | None = None


def index_path(token_path: Path) -> Path:
    return token_path.with_suffix(INDEX_SUFFIX)


def _header_bytes(header: dict) -> bytes:
    body = json.dumps(header, sort_keys=True).encode("ascii")
    padding = -(len(MAGIC) + 8 + len(body)) % ALIGN
    return MAGIC + struct.pack("<Q", len(body) + padding) + body + b" " * padding


def write_index(path: Path, index: NoveltyIndex, fingerprint: str) -> None:
    """Write `index` atomically, stamped with its token file's fingerprint."""
    digest = hashlib.sha256()
    sa = np.ascontiguousarray(index.sa)
    words = np.ascontiguousarray(index.words, dtype="<u8")
    digest.update(sa)
    digest.update(words)
    header = {
        "tokens": fingerprint,
        "count": int(sa.size),
        "sa_dtype": sa.dtype.name,
        "words": int(words.size),
        "sha256": digest.hexdigest(),
    }
    with atomic_write(path) as f:
        f.write(_header_bytes(header))
        f.write(sa.data)
        f.write(words.data)


def read_index(path: Path, fingerprint: str, count: int, verify: bool = True) -> NoveltyIndex:
    """Map an index file; DamagedIndex unless it is whole, belongs to the token file with `fingerprint`
    and `count` symbols, and (with `verify`) its contents match their checksum (one read, ~0.3 s for
    100 MB of corpus, which also brings the index into the page cache)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC) + 8)
            if len(head) < len(MAGIC) + 8 or head[: len(MAGIC)] != MAGIC:
                raise DamagedIndex("not a novelty index of this version")
            (length,) = struct.unpack("<Q", head[len(MAGIC) :])
            if length > 1 << 20:
                raise DamagedIndex("its header length is implausible")
            header = json.loads(f.read(length))
            offset = len(MAGIC) + 8 + length
            sa_dtype = np.dtype({"uint32": np.uint32, "uint64": np.uint64}[header["sa_dtype"]])
            n, w = int(header["count"]), int(header["words"])
            if header["tokens"] != fingerprint or n != count:
                raise DamagedIndex("it was built for another version of the corpus")
            size = os.fstat(f.fileno()).st_size
            if size != offset + n * sa_dtype.itemsize + w * 8:
                raise DamagedIndex(f"its size is {size:,} bytes, its header says otherwise")
            digest = hashlib.sha256()
            buffer = bytearray(1 << 22)
            while verify and (got := f.readinto(buffer)):
                digest.update(memoryview(buffer)[:got])
            if verify and digest.hexdigest() != header["sha256"]:
                raise DamagedIndex("its contents do not match their checksum")
    except OSError as e:
        raise DamagedIndex(f"cannot read it ({e.strerror})") from None
    except (ValueError, KeyError, TypeError) as e:
        raise DamagedIndex(f"its header is unreadable ({type(e).__name__})") from None
    sa = np.memmap(path, dtype=sa_dtype, mode="r", offset=offset, shape=(n,))
    words_at = offset + n * sa_dtype.itemsize
    words = np.memmap(path, dtype="<u8", mode="r", offset=words_at, shape=(w,)) if w else np.empty(0, "<u8")
    return NoveltyIndex(sa, words, path)


def build_index(ids: np.ndarray, vocab: Vocabulary) -> NoveltyIndex:
    return NoveltyIndex(suffix_array(ids, len(vocab)), word_hashes(ids, vocab))


def load_index(
    ids: np.ndarray, vocab: Vocabulary, token_path: Path | None, fingerprint: str, label: str, report: Report
) -> NoveltyIndex:
    """The corpus's index from the cache, built (and cached when the corpus is) if it is missing or stale.
    A corpus without a cached token file (standard input, a read-only cache) gets an index in memory."""
    path = index_path(token_path) if token_path is not None else None
    if path is not None and path.exists():
        try:
            return read_index(path, fingerprint, int(ids.size))
        except DamagedIndex as e:
            report(f"note: the novelty index for {label} was damaged ({e}); rebuilding it")
    report(f"building the novelty index for {label} (once; about a minute per 100 MB)...")
    index = build_index(ids, vocab)
    if path is None:
        return index
    try:
        write_index(path, index, fingerprint)
    except OSError as e:
        reason = e.strerror or e
        report(f"note: cannot keep the novelty index in {path.parent} ({reason}); it is rebuilt each time")
        return index
    _sweep_orphans(path.parent)
    return read_index(path, fingerprint, int(ids.size), verify=False)  # just written and hashed


def _sweep_orphans(folder: Path) -> None:
    """Remove indexes whose token file the corpus cache has replaced (a changed corpus)."""
    for path in folder.glob(f"*{INDEX_SUFFIX}"):
        if not path.with_suffix(".tok").exists():
            with contextlib.suppress(OSError):
                path.unlink()


# ---- querying ------------------------------------------------------------------------------------------
def _corpus_windows(ids: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """(k, width) int64: ids[start : start + width] for each start, -1 past the corpus's end."""
    positions = starts[:, None] + np.arange(width)
    return _symbols_at(ids, positions) - 1


def _first_difference(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise: the first column where a and b differ (width if none), and whether a < b there."""
    differ = a != b
    column = np.where(differ.any(axis=1), differ.argmax(axis=1), a.shape[1])
    inside = np.minimum(column, a.shape[1] - 1)
    rows = np.arange(a.shape[0])
    less = (column < a.shape[1]) & (a[rows, inside] < b[rows, inside])
    return column, less


def _bound(
    ids: np.ndarray,
    sa: np.ndarray,
    pattern: np.ndarray,
    depth: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    upper: bool,
) -> np.ndarray:
    """Binary search per row within sa[lo:hi) (suffixes that agree with the pattern on their first depth
    symbols), comparing symbols depth .. depth + pattern width: the first position whose window is >=
    the pattern (lower bound), or > it (upper)."""
    lo, hi = lo.copy(), hi.copy()
    width = pattern.shape[1]
    while True:
        live = np.flatnonzero(lo < hi)
        if not live.size:
            return lo
        mid = (lo[live] + hi[live]) // 2
        window = _corpus_windows(ids, sa[mid].astype(np.int64) + depth[live], width)
        if upper:  # go right while window <= pattern
            _, pattern_less = _first_difference(pattern[live], window)
            right = ~pattern_less
        else:  # go right while window < pattern
            _, right = _first_difference(window, pattern[live])
        lo[live] = np.where(right, mid + 1, lo[live])
        hi[live] = np.where(right, hi[live], mid)


def matching_statistics(
    ids: np.ndarray, sa: np.ndarray, text: np.ndarray, positions: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """ms[i] (see the module docstring) and a corpus start of that match (-1 where ms[i] == 0).

    Each position's longest match is next to where its window would sort among the suffixes: a lower-bound
    search comparing WINDOW symbols, then the common prefix with the two neighbours. A position that matched
    all WINDOW symbols continues within the range of suffixes sharing them, WINDOW symbols further on.
    A symbol the corpus lacks (-1) ends every match that reaches it, like the end of the text. `positions`
    (text offsets): compute only there; ms stays 0 (and the start -1) at every other position.
    """
    m = text.size
    ms = np.zeros(m, dtype=np.int64)
    where = np.full(m, -1, dtype=np.int64)
    if m == 0 or ids.size == 0:
        return ms, where
    everywhere = np.arange(m)
    cut = np.where(text < 0, everywhere, m)
    room = np.minimum.accumulate(cut[::-1])[::-1] - everywhere  # symbols before the next cut
    targets = everywhere if positions is None else np.asarray(positions, dtype=np.int64).reshape(-1)
    for block in range(0, targets.size, QUERY_BLOCK):
        rows = targets[block : block + QUERY_BLOCK]
        rows = rows[room[rows] > 0]
        if not rows.size:
            continue
        width = min(WINDOW, int(room[rows].max()))  # short matches (items) need no wider window
        depth = np.zeros(rows.size, dtype=np.int64)
        lo = np.zeros(rows.size, dtype=np.int64)
        hi = np.full(rows.size, ids.size, dtype=np.int64)
        while rows.size:
            columns = np.arange(width)
            offsets = depth[:, None] + columns
            within = offsets < room[rows][:, None]
            gathered = text[np.minimum(rows[:, None] + offsets, m - 1)]
            low = np.where(within, gathered, _LOW)
            lower = _bound(ids, sa, low, depth, lo, hi, upper=False)
            best = np.full(rows.size, -1, dtype=np.int64)  # at least one neighbour lies in [lo, hi)
            best_at = np.full(rows.size, -1, dtype=np.int64)
            for neighbour in (lower - 1, lower):
                ok = (neighbour >= lo) & (neighbour < hi)
                start = np.where(ok, sa[np.clip(neighbour, 0, ids.size - 1)].astype(np.int64), 0)
                column, _ = _first_difference(_corpus_windows(ids, start + depth, width), low)
                better = ok & (column > best)
                best = np.where(better, column, best)
                best_at = np.where(better, start, best_at)
            best = np.maximum(best, 0)
            ms[rows] = depth + best
            where[rows] = np.where(depth + best > 0, best_at, -1)
            more = (best == width) & (room[rows] > depth + width)
            if not more.any():
                break
            high = np.where(within, gathered, _HIGH)[more]
            upper = _bound(ids, sa, high, depth[more], lower[more], hi[more], upper=True)
            rows, lo, hi, depth = rows[more], lower[more], upper, depth[more] + width
    return ms, where


def occurrences(ids: np.ndarray, sa: np.ndarray, pattern: np.ndarray) -> tuple[int, int]:
    """How often `pattern` (ids) occurs in the corpus, and its first occurrence (-1 if none)."""
    if pattern.size == 0 or (pattern < 0).any():
        return 0, -1
    rows = pattern[None, :]
    zero, end = np.zeros(1, dtype=np.int64), np.full(1, ids.size, dtype=np.int64)
    lower = _bound(ids, sa, rows, zero, zero, end, upper=False)
    upper = _bound(ids, sa, rows, zero, lower, end, upper=True)
    count = int(upper[0] - lower[0])
    if not count:
        return 0, -1
    return count, int(np.min(sa[int(lower[0]) : int(upper[0])]))


def _counts_before(ids: np.ndarray, stop: int, symbol: int | None) -> tuple[int, int]:
    """How many times `symbol` occurs in ids[:stop], and where its last occurrence there is (-1)."""
    if symbol is None:
        return 0, -1
    total, last = 0, -1
    for a in range(0, stop, 1 << 24):
        hits = np.flatnonzero(np.asarray(ids[a : min(stop, a + (1 << 24))]) == symbol)
        total += hits.size
        if hits.size:
            last = a + int(hits[-1])
    return total, last


# ---- the report ----------------------------------------------------------------------------------------
@dataclass
class Novelty:
    """What `novelty` reports; offsets and lengths count symbols (characters, or bytes at the byte level)."""

    unit: str
    text_length: int
    corpus_length: int
    longest: dict
    ngrams: dict[int, dict]
    words: dict

    def to_dict(self) -> dict:
        return {
            "unit": self.unit,
            "text_length": self.text_length,
            "corpus_length": self.corpus_length,
            "longest": self.longest,
            "ngrams": {str(k): v for k, v in self.ngrams.items()},
            "words": self.words,
        }


def text_ids(text: str, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """The text as corpus ids (int64, -1 for characters the corpus lacks) and which symbols are word
    symbols (judged on the text's own characters, so an unknown letter still belongs to its word)."""
    ids = symbol_ids(text, vocab)
    if vocab.is_bytes:
        return ids, word_table(vocab)[ids]
    if not text:
        return ids, np.empty(0, dtype=bool)
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    unique, inverse = np.unique(points, return_inverse=True)
    wordy = np.array([re.fullmatch(r"\w", chr(c)) is not None for c in unique.tolist()], dtype=bool)
    return ids, wordy[inverse.reshape(-1)]


def symbol_ids(text: str, vocab: Vocabulary) -> np.ndarray:
    """The text as corpus ids (int64, -1 for characters the corpus lacks; UTF-8 bytes at the byte level)."""
    if vocab.is_bytes:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
    if not text:
        return np.empty(0, dtype=np.int64)
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    table = vocab.codepoint_table()
    ids = np.full(points.size, -1, dtype=np.int64)
    known = points < table.size
    ids[known] = table[points[known]]
    return ids


def _symbols_text(vocab: Vocabulary, ids: np.ndarray) -> str:
    if vocab.is_bytes:
        return bytes(ids.astype(np.uint8).tolist()).decode("utf-8", errors="replace")
    return "".join(vocab.chars[i] for i in ids.tolist())


def novelty(
    text: str,
    ids: np.ndarray,
    vocab: Vocabulary,
    index: NoveltyIndex,
    ngrams: Sequence[int] = DEFAULT_NGRAMS,
    files: Sequence[str] | None = None,
    several: bool = False,
) -> Novelty:
    """Score `text` against the corpus `ids` with its `index`. `several`: the corpus joins files with
    separators (a folder or glob); `files` names them in order, when known, for the longest match's place."""
    symbols, wordy = text_ids(text, vocab)
    m = symbols.size
    ms, where = matching_statistics(ids, index.sa, symbols)

    ngram_stats = {}
    for k in sorted(set(ngrams)):
        total = max(0, m - k + 1)
        found = int(np.count_nonzero(ms[:total] >= k)) if total else 0
        ngram_stats[k] = {"total": total, "found": found, "share": found / total if total else None}

    longest: dict = {"length": 0, "text": "", "text_offset": None, "text_line": None}
    length = int(ms.max()) if m else 0
    if length:
        at = int(np.argmax(ms))
        piece = symbols[at : at + length]
        count, first = occurrences(ids, index.sa, piece)
        before = text.encode("utf-8")[:at] if vocab.is_bytes else text[:at]
        longest = {
            "length": length,
            "text": _symbols_text(vocab, piece),
            "text_offset": at,
            "text_line": before.count(b"\n" if vocab.is_bytes else "\n") + 1,
            "occurrences": count,
            **_corpus_place(ids, vocab, first, files, several),
        }

    starts, ends = _word_spans(wordy)
    word_total = int(starts.size)
    if word_total:
        unknown_before = np.concatenate(([0], np.cumsum(symbols < 0)))
        has_unknown = (unknown_before[ends] - unknown_before[starts]) > 0
        hashes = _hash_spans(np.maximum(symbols, 0), starts, ends)
        present = ~has_unknown & _isin_sorted(hashes, index.words)
        spans = _slices(text, vocab, starts, ends)  # the text's words (the text, not the corpus)
        verdict = dict(zip(spans, present.tolist(), strict=True))
        words = {
            "total": word_total,
            "found": int(present.sum()),
            "share": float(present.mean()),
            "distinct": len(verdict),
            "distinct_found": sum(verdict.values()),
            "novel": [w for w, found in verdict.items() if not found][:NOVEL_WORDS],
        }
    else:
        words = {"total": 0, "found": 0, "share": None, "distinct": 0, "distinct_found": 0, "novel": []}
    return Novelty(vocab.unit, m, int(ids.size), longest, ngram_stats, words)


def _slices(text: str, vocab: Vocabulary, starts: np.ndarray, ends: np.ndarray) -> list[str]:
    """The text's symbols start:end (bytes at the byte level) as strings, for each span."""
    if vocab.is_bytes:
        data = text.encode("utf-8")
        pieces = [data[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]
        return [piece.decode("utf-8", errors="replace") for piece in pieces]
    return [text[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def _isin_sorted(values: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
    if sorted_values.size == 0:
        return np.zeros(values.size, dtype=bool)
    at = np.searchsorted(sorted_values, values)
    return np.asarray(sorted_values[np.minimum(at, sorted_values.size - 1)]) == values


def _symbol_id(vocab: Vocabulary, char: str) -> int | None:
    if vocab.is_bytes:
        return ord(char)
    return vocab.index(char) if char in vocab else None


def _corpus_place(
    ids: np.ndarray, vocab: Vocabulary, offset: int, files: Sequence[str] | None, several: bool
) -> dict:
    """Where corpus offset `offset` is: its line, and for a corpus of several files which file and line."""
    newline = _symbol_id(vocab, "\n")
    lines, _ = _counts_before(ids, offset, newline)
    place = {"corpus_offset": offset, "corpus_line": lines + 1, "file": None, "file_index": None}
    if several:
        separator = _symbol_id(vocab, "\x1c")
        before, last = _counts_before(ids, offset, separator)
        start = last + 2 if last >= 0 else 0  # a separator is "\x1c\n"
        file_lines = (
            int(np.count_nonzero(np.asarray(ids[start:offset]) == newline)) if newline is not None else 0
        )
        place.update(
            file_index=before,
            file=files[before] if files is not None and before < len(files) else None,
            file_line=file_lines + 1,
            file_offset=offset - start,
        )
    return place


# ---- items ---------------------------------------------------------------------------------------------
class ItemMatcher:
    """Checks generated items against a corpus through its novelty index.

    The corpus is read as items separated by `delimiter` ("\n": lines, "\n\n": paragraphs). An item is
    whole in it when the corpus contains delimiter + item + delimiter, starts with item + delimiter, ends
    with delimiter + item + T, or is item + T, where T is a proper prefix of the delimiter (nothing for a
    one-symbol delimiter; for "\n\n" also a single final newline). `several` (a folder or glob corpus,
    whose files are each followed by FILE_SEPARATOR): a file's start and end bound items like the corpus's,
    so a file's first and last items count, and a last item without a final newline. An item holding the
    delimiter is checked by the same rule (a run of consecutive corpus items is whole); symbols count as
    characters, or UTF-8 bytes at the byte level.
    """

    def __init__(
        self, ids: np.ndarray, vocab: Vocabulary, index: NoveltyIndex, delimiter: str, several: bool = False
    ):
        if not delimiter:
            raise ValueError("the item delimiter is empty")
        self.ids, self.vocab, self.sa = ids, vocab, index.sa
        mark = symbol_ids(delimiter, vocab)  # -1 symbols (a delimiter the corpus lacks) never match
        separator = symbol_ids(FILE_SEPARATOR, vocab)
        tails = [mark[:k] for k in range(mark.size)]  # proper prefixes of the delimiter, nothing first
        self._lefts = [mark, separator] if several else [mark]
        self._rights = [mark] + ([np.concatenate((t, separator)) for t in tails] if several else [])
        self._tails = tails

    def _items(self, items: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The items' ids, concatenated, and each item's length in symbols."""
        flat = symbol_ids("".join(items), self.vocab)
        if self.vocab.is_bytes:
            lengths = (len(item.encode("utf-8")) for item in items)
        else:
            lengths = (len(item) for item in items)
        return flat, np.fromiter(lengths, dtype=np.int64, count=len(items))

    def whole_items(self, items: Sequence[str]) -> np.ndarray:
        """(len(items),) bool: True where the item occurs in the corpus as a whole item (see the class).

        One matching-statistics pass, at the first symbol of each framed pattern (left + item + right, all
        items and frames concatenated with -1 between them): a pattern occurs iff its match there is as long
        as it. The corpus's start and end are compared directly with the items, all at once."""
        count = len(items)
        if count == 0:
            return np.zeros(0, dtype=bool)
        flat, lengths = self._items(items)
        frames = [_framed(flat, lengths, left, right) for left in self._lefts for right in self._rights]
        text = np.concatenate([f[0] for f in frames])
        offsets = np.cumsum([0] + [f[0].size for f in frames[:-1]])
        starts = np.concatenate([f[1] + at for f, at in zip(frames, offsets, strict=True)])
        need = np.concatenate([f[2] for f in frames])
        ms, _ = matching_statistics(self.ids, self.sa, text, positions=starts)
        found = (ms[starts] >= need).reshape(len(frames), count).any(axis=0)

        n = int(self.ids.size)
        nothing = np.empty(0, dtype=np.int64)
        heads = [_framed(flat, lengths, nothing, right) for right in self._rights]  # corpus starts with
        whole = [_framed(flat, lengths, nothing, tail) for tail in self._tails]  # corpus is item + tail
        ends = [_framed(flat, lengths, left, tail) for left in self._lefts for tail in self._tails]
        width = int(max(f[2].max() for f in heads + whole + ends))
        head = np.asarray(self.ids[:width], dtype=np.int64)
        end = np.asarray(self.ids[max(0, n - width) :], dtype=np.int64)[::-1]
        for pattern, at, size in heads:
            found |= _has_prefix(pattern, at, size, head)
        for pattern, at, size in whole:
            found |= _has_prefix(pattern, at, size, head) & (size == n)
        for pattern, at, size in ends:
            found |= _has_prefix(pattern, at, size, end, backwards=True)
        return found

    def longest_overlaps(self, items: Sequence[str]) -> np.ndarray:
        """(len(items),) int64: the length in symbols of each item's longest substring found anywhere in
        the corpus (0 for an empty item). One matching-statistics pass over the items joined with -1
        between them (so no match runs from one item into the next); a symbol the corpus lacks ends a
        match like an item's end."""
        if len(items) == 0:
            return np.zeros(0, dtype=np.int64)
        flat, lengths = self._items(items)
        text, starts, _ = _framed(flat, lengths, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
        ms, _ = matching_statistics(self.ids, self.sa, text)
        return np.maximum.reduceat(ms, starts)  # each segment ends with its -1, whose ms is 0


def _framed(
    flat: np.ndarray, lengths: np.ndarray, left: np.ndarray, right: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """left + item + right + [-1] for every item (flat: the items' ids concatenated, lengths: theirs),
    concatenated: the int64 array, each pattern's start in it and each pattern's length (without the -1)."""
    size = left.size + lengths + right.size
    starts = np.concatenate(([0], np.cumsum(size + 1)[:-1])).astype(np.int64)
    out = np.full(int((size + 1).sum()), -1, dtype=np.int64)
    out[starts[:, None] + np.arange(left.size)] = left
    if flat.size:
        item_starts = np.cumsum(lengths) - lengths
        out[np.repeat(starts + left.size - item_starts, lengths) + np.arange(flat.size)] = flat
    out[(starts + left.size + lengths)[:, None] + np.arange(right.size)] = right
    return out, starts, size


def _has_prefix(
    patterns: np.ndarray, starts: np.ndarray, sizes: np.ndarray, sequence: np.ndarray, backwards: bool = False
) -> np.ndarray:
    """Whether `sequence` begins with each pattern (patterns[start : start + size]); `backwards`: with
    each pattern reversed (`sequence` being a reversed tail, to test how something ends)."""
    width = int(sizes.max()) if sizes.size else 0
    if width == 0:
        return np.ones(sizes.size, dtype=bool)
    columns = np.arange(width)
    inside = columns < sizes[:, None]
    at = starts[:, None] + (sizes[:, None] - 1 - columns if backwards else columns)
    symbols = patterns[np.clip(at, 0, patterns.size - 1)]
    padded = np.full(width, _LOW - 2, dtype=np.int64)  # past the sequence's end: equal to no symbol
    padded[: min(width, sequence.size)] = sequence[:width]
    return (~inside | (symbols == padded)).all(axis=1)
