"""Item mode: N complete items (names, lines, paragraphs), filtered, from parallel streams.

An item is the text between two delimiters. Each stream (an engine row) starts from the prime's state
(default: the delimiter), so its first item starts at an item boundary; an item ends at the next delimiter
and the stream goes straight on into the next one, its state carried. The prime's text after its last
delimiter begins a stream's first item (`--prime "\\nMc"` gives items starting "Mc"). An item that grows
past its cap (--max-chars, else --length) is abandoned and its stream starts again from the prime; one that
ends at a stop string is kept and its stream starts again too (its state is not at an item boundary).

Finished items go through the filters in the order they were written, each rejection counted by reason:
too short, too long, a repeat of a kept item (--unique), an item of the corpus (--novel: it occurs there
whole, between delimiters), or one sharing --max-overlap characters in a row with the corpus. The corpus
checks run once per chunk for all new items together through the corpus's novelty index (a suffix array
kept in the cache), so they cost a few vectorised searches whatever the corpus's size.

The run ends when N items are kept or after --max-tries finished (or abandoned) items; what was kept is
printed either way, and `ItemCounts.summary` says how many of how many and why the rest were dropped.
What is held: the kept items' 16-byte digests (--unique), the verdicts of up to VERDICT_CACHE distinct
rejected items, and each stream's unfinished item.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from charrnn.engine import (
    GO,
    RESTART,
    Engine,
    Generated,
    Row,
    Sampling,
    Start,
    Stops,
    Symbols,
    random_seed,
    row_key,
    stop_symbols,
)
from charrnn.errors import BadInput, BadSetting, CharrnnError, MissingResource, setting_ref

MAX_ITEMS = 100_000
MAX_TRIES_PER_ITEM = 50  # the default --max-tries is this many per item asked for
MAX_TRIES = 10_000_000
VERDICT_CACHE = 1 << 20  # distinct rejected items whose verdict is remembered
MAX_STREAMS = 512
MAX_ITEM_CHARS = 100_000  # the longest item (--max-chars, or the --length cap)


@dataclass
class ItemFilters:
    """What an item must be to be kept."""

    min_chars: int | None = None
    max_chars: int | None = None
    unique: bool = False
    novel: bool = False
    max_overlap: int | None = None  # reject items sharing this many consecutive characters with the corpus

    def check(self) -> None:
        for name in ("min_chars", "max_chars", "max_overlap"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or value < (0 if name == "min_chars" else 1)
            ):
                least = 0 if name == "min_chars" else 1
                raise BadSetting(
                    f"{setting_ref(name)} must be a whole number >= {least}, not {value!r}", name
                )
        if self.min_chars is not None and self.max_chars is not None and self.min_chars > self.max_chars:
            raise BadSetting(
                f"{setting_ref('min_chars')} {self.min_chars} is above {setting_ref('max_chars')} "
                f"{self.max_chars}: no item could pass; lower one or raise the other",
                "min_chars",
            )

    @property
    def needs_corpus(self) -> bool:
        return self.novel or self.max_overlap is not None


# the reasons an item is dropped, in the order they are checked, and how the summary names them
REASONS = {
    "too_long": "too long",
    "too_short": "too short",
    "repeat": "repeats",
    "in_corpus": "in the corpus",
    "overlap": "overlapping the corpus",
}


@dataclass
class ItemCounts:
    wanted: int
    kept: int = 0
    tries: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))

    @property
    def complete(self) -> bool:
        return self.kept >= self.wanted

    def summary(self) -> str:
        """'kept 37 of 50 after 2,500 tries: 2,104 in the corpus, 359 repeats' (reasons by count)."""
        reasons = sorted(((n, r) for r, n in self.dropped.items() if n), key=lambda x: -x[0])
        why = ", ".join(f"{n:,} {REASONS[r]}" for n, r in reasons)
        tries = "try" if self.tries == 1 else "tries"
        return f"kept {self.kept:,} of {self.wanted:,} after {self.tries:,} {tries}" + (
            f": {why}" if why else ""
        )

    def to_dict(self) -> dict:
        return {"wanted": self.wanted, "kept": self.kept, "tries": self.tries, "dropped": dict(self.dropped)}


class ItemRow(Row):
    """One stream of items: cuts its symbols at the delimiter (or a stop string) into candidates."""

    def __init__(
        self,
        start: Start,
        sampling: Sampling,
        key: int,
        symbols: Symbols,
        delimiter: str | bytes,
        stops: Sequence[str | bytes],
        prefix: str | bytes,
        cap: int,
        offer: Callable[[Generated | None], None],  # None: an item abandoned, too long
    ):
        super().__init__(start, sampling, key)
        self.symbols = symbols
        self.delimiter = delimiter
        self.ends = Stops([delimiter, *stops])
        self.prefix = prefix
        self.cap = cap  # symbols an item may have (prefix included) before it is abandoned
        self.offer = offer
        self._reset()

    def _reset(self) -> None:
        self.buffer = self.prefix  # the unfinished item's symbols
        self.given = len(self.prefix)  # how many of them came from the prime, not the model
        self.logprob = 0.0  # of the generated ones

    def budget(self) -> int:
        # the item is abandoned once it has cap symbols and room for all but the last of an end's
        return self.cap + self.ends.hold + 1 - len(self.buffer)

    def take(self, ids: list[int], logprobs: list[float]) -> str:
        """Cut the new symbols into items. Where an item ends, or is abandoned, depends only on this
        row's symbols (not on where chunks begin), and a restart gives back the random draws of the
        symbols it drops, so a row's items do not depend on which rows share its batch."""
        old = len(self.buffer)
        buffer = self.buffer + self.symbols.join(ids)
        at, given, carried = 0, self.given, self.logprob
        start = max(0, old - self.ends.hold)  # an end may begin in the old symbols (or the prime's)
        cap, limit_room = self.cap, self.cap + self.ends.hold + 1
        while True:
            limit = at + limit_room  # no end complete by here: the item is past the cap
            hit = self.ends.first(buffer, max(start, at), after=old)
            end_at = hit[0] + len(hit[1]) if hit is not None else None
            if hit is None or end_at > limit or hit[0] - at > cap:
                stop_at = limit if hit is None or end_at > limit else end_at
                if stop_at > len(buffer):
                    break  # neither ended nor past the cap yet
                self.offer(None)  # abandoned: too long
                return self._restart(ids, stop_at - old)
            where = hit[0]
            lp = math.fsum(logprobs[max(at, old) - old : end_at - old]) + (carried if at == 0 else 0.0)
            generated = end_at - at - (given if at == 0 else 0)
            finish = "delimiter" if hit[1] == self.delimiter else "stop"
            self.offer(Generated(self.symbols.text(buffer[at:where]), generated, lp, finish))
            at = end_at
            if finish == "stop":  # the state is not at an item boundary
                return self._restart(ids, end_at - old)
        self.logprob = (carried if at == 0 else 0.0) + math.fsum(logprobs[max(at, old) - old :])
        self.given = given if at == 0 else 0
        self.buffer = buffer[at:]
        return GO

    def _restart(self, ids: list[int], used: int) -> str:
        self.draws -= len(ids) - used  # the dropped symbols' draws are drawn again
        self._reset()
        return RESTART


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class ItemRun:
    """Iterate to get the kept items (`Generated`, finish "delimiter" or "stop") as they are found; then
    `counts` says what was tried and dropped. `matcher` (novelty.ItemMatcher) is needed by --novel and
    --max-overlap."""

    def __init__(
        self,
        engine: Engine,
        n: int,
        prime: str | None = None,
        delimiter: str = "\n",
        sampling: Sampling | None = None,
        seed: int | None = None,
        filters: ItemFilters | None = None,
        matcher=None,
        max_tries: int | None = None,
        stops: Sequence[str] = (),
        length: int = 500,
        streams: int | None = None,
    ):
        if not isinstance(n, int) or not 1 <= n <= MAX_ITEMS:
            raise BadSetting(
                f"{setting_ref('items')} must be a whole number from 1 to {MAX_ITEMS:,}", "items"
            )
        filters = filters or ItemFilters()
        filters.check()
        for name, value in (("length", length), ("max_chars", filters.max_chars)):
            if value is not None and value > MAX_ITEM_CHARS:
                raise BadSetting(
                    f"{setting_ref(name)} {value:,} is above {MAX_ITEM_CHARS:,}, the longest item written",
                    name,
                )
        if not isinstance(length, int) or length < 1:
            raise BadSetting(f"{setting_ref('length')} must be a whole number >= 1, not {length!r}", "length")
        if max_tries is None:
            max_tries = min(MAX_TRIES, MAX_TRIES_PER_ITEM * n)
        if not isinstance(max_tries, int) or not 1 <= max_tries <= MAX_TRIES:
            raise BadSetting(
                f"{setting_ref('max_tries')} must be a whole number from 1 to {MAX_TRIES:,}", "max_tries"
            )
        if filters.needs_corpus and matcher is None:
            raise BadSetting(
                f"{setting_ref('novel')} and {setting_ref('max_overlap')} need the corpus", "corpus"
            )
        symbols = engine.symbols
        self.engine = engine
        self.filters = filters
        self.matcher = matcher
        self.max_tries = max_tries
        self.counts = ItemCounts(n)
        self.delimiter = delimiter
        delim = symbols.encode(delimiter, "delimiter")
        stop_list = stop_symbols(symbols, stops)
        prime = delimiter if prime is None else prime
        start = engine.start(prime)
        prime_symbols = prime.encode("utf-8") if symbols.is_bytes else prime
        last = prime_symbols.rfind(delim) if prime_symbols else -1
        prefix = prime_symbols[last + len(delim) :] if last >= 0 else prime_symbols
        # a character is up to 4 bytes
        cap = length if filters.max_chars is None else filters.max_chars * (4 if symbols.is_bytes else 1)
        cap = max(cap, len(prefix))
        sampling = sampling or Sampling()
        seed = seed if seed is not None else random_seed()
        count = streams or min(MAX_STREAMS, max(8, 2 * n))
        self._candidates: list[Generated | None] = []
        self._kept: set[bytes] = set()
        self._verdicts: dict[bytes, str] = {}
        self.rows = [
            ItemRow(
                start,
                sampling,
                row_key(seed, i),
                symbols,
                delim,
                stop_list,
                prefix,
                cap,
                self._candidates.append,
            )
            for i in range(count)
        ]

    @property
    def done(self) -> bool:
        return self.counts.complete or self.counts.tries >= self.max_tries

    def __iter__(self) -> Iterator[Generated]:
        engine = self.engine
        for row in self.rows:
            engine.add(row)
        try:
            while not self.done:
                engine.advance()
                yield from self._settle()
        finally:
            engine.discard(self.rows)

    def _settle(self) -> list[Generated]:
        """Judge this chunk's candidates in the order they were written; the kept ones."""
        candidates, self._candidates[:] = list(self._candidates), []
        verdicts = self._corpus_verdicts([c for c in candidates if c is not None])
        kept = []
        counts, filters = self.counts, self.filters
        for item in candidates:
            if self.done:
                break
            counts.tries += 1
            reason = None
            if item is None or (filters.max_chars is not None and item.chars > filters.max_chars):
                reason = "too_long"
            elif filters.min_chars is not None and item.chars < filters.min_chars:
                reason = "too_short"
            else:
                digest = _digest(item.text)
                reason = "repeat" if filters.unique and digest in self._kept else verdicts.get(digest)
            if reason is not None:
                counts.dropped[reason] += 1
                continue
            if filters.unique:
                self._kept.add(digest)
            counts.kept += 1
            kept.append(item)
        return kept

    def _corpus_verdicts(self, items: list[Generated]) -> dict[bytes, str]:
        """digest -> "in_corpus" or "overlap" for the items the corpus rules out (cached)."""
        if not self.filters.needs_corpus or not items:
            return {}
        verdicts: dict[bytes, str] = {}
        fresh: dict[bytes, str] = {}
        for item in items:
            digest = _digest(item.text)
            if digest in self._verdicts:
                verdicts[digest] = self._verdicts[digest]
            elif digest not in self._kept:
                fresh.setdefault(digest, item.text)
        if fresh:
            digests, texts = list(fresh), list(fresh.values())
            whole = self.matcher.whole_items(texts) if self.filters.novel else [False] * len(texts)
            overlap = self.matcher.longest_overlaps(texts) if self.filters.max_overlap is not None else None
            for i, digest in enumerate(digests):
                verdict = None
                if whole[i]:
                    verdict = "in_corpus"
                elif overlap is not None and int(overlap[i]) >= self.filters.max_overlap:
                    verdict = "overlap"
                if verdict is not None:
                    verdicts[digest] = verdict
                    if len(self._verdicts) < VERDICT_CACHE:
                        self._verdicts[digest] = verdict
        return verdicts


def corpus_matcher(checkpoint, delimiter: str, corpus: str | None = None, report=None):
    """The novelty.ItemMatcher for --novel and --max-overlap: against `corpus` (a file, folder, glob or
    named corpus, read as the checkpoint's was) or else the corpus the checkpoint records it was trained
    on, which must still be there and unchanged. The corpus's novelty index comes from the cache (built
    there the first time)."""
    from charrnn.corpus import load_corpus
    from charrnn.named_corpora import resolve
    from charrnn.novelty import ItemMatcher, load_index

    report = report or (lambda note: None)
    facts = checkpoint.corpus
    origin = facts.origin or {}
    level = checkpoint.vocab.level
    options = {
        "encoding": origin.get("encoding"),
        "lossy": bool(origin.get("lossy", False)),
        "level": level,
        "report": report,
    }
    if corpus is not None:
        path, name = resolve(corpus)
        loaded = load_corpus(path, name, **options)
    else:
        spec = origin.get("spec")
        if not spec or spec == "-":
            why = (
                "it was read from standard input"
                if spec == "-"
                else "it was written before charrnn kept that"
            )
            raise MissingResource(
                f"the checkpoint does not say where its training corpus is ({why}); "
                f"pass the corpus to compare with as {setting_ref('corpus')}",
                "corpus",
            )
        try:
            path, name = resolve(spec)
            loaded = load_corpus(
                path,
                name,
                include=origin.get("include") or (),
                exclude=origin.get("exclude") or (),
                **options,
            )
        except CharrnnError as e:
            raise MissingResource(
                f"cannot read the training corpus {spec} ({e}); "
                f"pass the corpus to compare with as {setting_ref('corpus')}",
                "corpus",
            ) from None
        if facts.sha256 and loaded.fingerprint != facts.sha256:
            raise BadInput(
                f"the training corpus {spec} has changed since the model was trained ({len(loaded):,} "
                f"{loaded.vocab.unit}s now, {facts.chars or 0:,} then); pass the corpus to compare with as "
                f"{setting_ref('corpus')}",
                "corpus",
            )
    ids = loaded.ids.numpy()
    label = loaded.source.get("label", loaded.name)
    index = load_index(ids, loaded.vocab, loaded.token_path, loaded.fingerprint, label, report)
    several = loaded.source.get("kind") in ("folder", "glob")  # each file's ends are item boundaries
    return ItemMatcher(ids, loaded.vocab, index, delimiter, several=several)


def write_items(out, run: ItemRun, as_json: bool = False) -> None:
    """Print the kept items as they come: one per line when the delimiter is a newline, else separated by
    the delimiter (and a final newline); or one JSON object per line."""
    import json

    newline = run.delimiter == "\n"
    first = True
    for item in run:
        if as_json:
            out.write(json.dumps(item.to_dict(), ensure_ascii=False) + "\n")
        elif newline:
            out.write(item.text + "\n")
        else:
            out.write(("" if first else run.delimiter) + item.text)
        first = False
        out.flush()
    if not as_json and not newline and not first:
        out.write("\n")
        out.flush()


__all__ = ["ItemCounts", "ItemFilters", "ItemRun", "write_items"]
