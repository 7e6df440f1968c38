"""The Python API: `charrnn.load(path)` gives a `Model` that writes and scores text.

    model = charrnn.load("checkpoints/shakespeare")
    model.generate("ROMEO:", length=200, temperature=0.8, seed=1)
    for piece in model.stream("ROMEO:", length=200): print(piece, end="")
    model.items(20, unique=True, novel=True)
    model.score("To be, or not to be").nats

Everything goes through the generation engine (engine.py) that `charrnn sample` uses, so the same
checkpoint, prime, settings and seed give the same text here and on the command line. Errors are the
CharrnnError subclasses of charrnn.errors, naming settings by these functions' argument names.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from charrnn.checkpoint import Checkpoint, load_checkpoint
from charrnn.device import pick_device
from charrnn.engine import Engine, Generated, TextRow, check_prime, random_seed, row_key, stop_symbols
from charrnn.errors import BadSetting
from charrnn.evaluate import Score, score_text
from charrnn.items import ItemCounts, ItemFilters, ItemRun, corpus_matcher
from charrnn.sample import SamplingConfig, check_length, samples

MAX_SAMPLES = 1_000_000  # samples() holds them all

Stop = str | Sequence[str]


class Items(list):
    """The kept items (a list of `Generated`), with `counts`: what was tried and why the rest were dropped."""

    def __init__(self, kept: list[Generated], counts: ItemCounts):
        super().__init__(kept)
        self.counts = counts

    @property
    def complete(self) -> bool:
        return self.counts.complete


def _stops(stop: Stop | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


class Model:
    """A checkpoint's model on a device, prepared once for generation."""

    def __init__(self, checkpoint: Checkpoint, device: str | torch.device = "auto", quantize: str = "none"):
        self.checkpoint = checkpoint
        self.vocab = checkpoint.vocab
        self.device = pick_device(str(device))
        self.network = checkpoint.build_model(self.device)
        self.engine = Engine(self.network, self.vocab, self.device, quantize)

    def __repr__(self) -> str:
        m = self.network.config
        where = self.checkpoint.path or "memory"
        return f"<charrnn.Model {m.cell} {m.layers}x{m.hidden}, {len(self.vocab)} symbols, from {where}>"

    def _config(self, length, temperature, top_k, top_p, seed, stop, n=1) -> SamplingConfig:
        return SamplingConfig(length, temperature, top_k, top_p, seed, n, _stops(stop))

    def generate(
        self,
        prime: str = "",
        length: int = 500,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: Stop | None = None,
    ) -> str:
        """New text after `prime` (not included): `length` symbols, or less where a `stop` string (one or
        several) first appears (the stop string not included)."""
        return self.sample(prime, length, temperature, top_k, top_p, seed, stop).text

    def sample(
        self,
        prime: str = "",
        length: int = 500,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: Stop | None = None,
    ) -> Generated:
        """As `generate`, with how it ended and how likely the model found it (`Generated`)."""
        return self.samples(1, prime, length, temperature, top_k, top_p, seed, stop)[0]

    def samples(
        self,
        n: int,
        prime: str = "",
        length: int = 500,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: Stop | None = None,
    ) -> list[Generated]:
        """`n` samples from one prime, generated together (`charrnn sample --num-samples n --json`)."""
        if not isinstance(n, int) or not 1 <= n <= MAX_SAMPLES:
            raise BadSetting(f"n must be a whole number from 1 to {MAX_SAMPLES:,}, not {n!r}", "n")
        prime = check_prime(self.vocab, prime)
        config = self._config(length, temperature, top_k, top_p, seed, stop, n)
        return list(samples(self.engine, prime, config))

    def stream(
        self,
        prime: str = "",
        length: int = 500,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: Stop | None = None,
    ) -> Iterator[str]:
        """`generate`'s text piece by piece, as it is written."""
        prime = check_prime(self.vocab, prime)
        config = self._config(length, temperature, top_k, top_p, seed, stop)
        check_length(length)
        pieces: list[str] = []
        engine = self.engine
        row = TextRow(
            engine.start(prime),
            config.sampling,
            row_key(seed if seed is not None else random_seed(), 0),
            engine.symbols,
            length,
            stop_symbols(engine.symbols, config.stop),
            on_text=pieces.append,
            keep=False,
        )
        engine.add(row)
        try:
            while row.finish is None:
                engine.advance()
                yield from pieces
                pieces.clear()
        finally:
            engine.discard([row])

    def items(
        self,
        n: int,
        delimiter: str = "\n",
        prime: str | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        unique: bool = False,
        novel: bool = False,
        max_overlap: int | None = None,
        min_chars: int | None = 1,
        max_chars: int | None = None,
        corpus: str | Path | None = None,
        max_tries: int | None = None,
        stop: Stop | None = None,
        length: int = 500,
    ) -> Items:
        """`n` complete items (see charrnn.items), as `charrnn sample --items n`. When the filters leave
        fewer than `n` after `max_tries` (default 50 x n) tries, the list is shorter: `counts` says why."""
        filters = ItemFilters(min_chars, max_chars, unique, novel, max_overlap)
        filters.check()
        self.engine.symbols.encode(delimiter, "delimiter")  # before the corpus is read for the filters
        prime = check_prime(self.vocab, prime) if prime is not None else None
        matcher = None
        if filters.needs_corpus:
            matcher = corpus_matcher(self.checkpoint, delimiter, str(corpus) if corpus is not None else None)
        config = self._config(length, temperature, top_k, top_p, seed, stop)
        run = ItemRun(
            self.engine,
            n,
            prime,
            delimiter,
            config.sampling,
            seed,
            filters,
            matcher,
            max_tries,
            config.stop,
            length,
        )
        return Items(list(run), run.counts)

    def score(self, text: str) -> Score:
        """How well the model predicts `text`: nats per character (`nats`), `bpc`, `perplexity`, as
        `charrnn evaluate`."""
        return score_text(self.network, self.vocab, text, self.device)


def load(path: str | Path, device: str = "auto", quantize: str = "none") -> Model:
    """The model in a checkpoint (a .pt file, or a run folder: its best.pt) on `device` ("auto", "cpu",
    "cuda"); `quantize="int8"` generates with int8 recurrent weights (faster on CPUs)."""
    return Model(load_checkpoint(path), device, quantize)
