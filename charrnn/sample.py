"""Samples: N texts of up to `length` symbols from one prime, written as `charrnn sample` shows them.

Every text comes from the generation engine (engine.py): the prime is read once, then each sample is a
row with its own random stream (`row_key(seed, i)`), so sample i of a seeded run is the same text whatever
--num-samples is and however the rows are batched. At most MAX_SAMPLE_ROWS rows are stepped together; a
row that finishes (its length, or a stop string) makes room for the next sample at once. Output keeps the
samples' order: sample 0 streams as it is written, the others are printed in turn as they are done.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TextIO

import torch

from charrnn.engine import (
    Engine,
    Generated,
    Sampling,
    TextRow,
    check_prime,
    filter_logits,
    random_seed,
    row_key,
    stop_symbols,
)
from charrnn.errors import BadSetting, setting_ref
from charrnn.model import CharRNN
from charrnn.vocab import Vocabulary

__all__ = ["MAX_SAMPLE_ROWS", "SamplingConfig", "check_prime", "filter_logits", "samples", "write_samples"]

# Samples stepped together, which bounds the per-step activations. On a 2x384 LSTM (2 cores) 100,000 samples
# of length 1 peaked at 272 MB RSS with 512 rows (268 MB with 256, 294 MB with 1024, 2.4 GB in one batch);
# 512 rows stepped 10-25% faster than 256 and within 15% of 1024.
MAX_SAMPLE_ROWS = 512
MAX_LENGTH = 10_000_000  # symbols per sample


@dataclass
class SamplingConfig:
    length: int = 500
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    num_samples: int = 1
    stop: tuple[str, ...] = ()

    @property
    def sampling(self) -> Sampling:
        return Sampling(self.temperature, self.top_k, self.top_p)


def check_length(length: int) -> None:
    if not isinstance(length, int) or not 1 <= length <= MAX_LENGTH:
        raise BadSetting(f"{setting_ref('length')} must be a whole number from 1 to {MAX_LENGTH:,}", "length")


def samples(
    engine: Engine,
    prime: str,
    config: SamplingConfig,
    stream_first: Callable[[str], None] | None = None,
    max_rows: int | None = None,
) -> Iterator[Generated]:
    """The `config.num_samples` samples in order, each as soon as it and all before it are done.

    `stream_first` receives sample 0's text as it is written (its `Generated.text` is then empty: the
    text was given away piece by piece). What is held is the rows being written and the finished samples
    waiting for an earlier one: at most 2 x `max_rows` (default MAX_SAMPLE_ROWS) texts."""
    check_length(config.length)
    bound = max_rows or MAX_SAMPLE_ROWS
    start = engine.start(prime)
    sampling = config.sampling
    stops = stop_symbols(engine.symbols, config.stop)
    seed = config.seed if config.seed is not None else random_seed()
    finished: dict[int, Generated] = {}
    mine: list[TextRow] = []

    def done(row: TextRow) -> None:
        finished[row.tag] = row.result()

    added = shown = 0
    try:
        while shown < config.num_samples:
            while added < config.num_samples and engine.active < bound and added - shown < 2 * bound:
                streamed = added == 0 and stream_first is not None
                row = TextRow(
                    start,
                    sampling,
                    row_key(seed, added),
                    engine.symbols,
                    config.length,
                    stops,
                    on_text=stream_first if streamed else None,
                    keep=not streamed,
                    on_done=done,
                )
                row.tag = added
                engine.add(row)
                mine.append(row)
                added += 1
            engine.advance()
            mine = [r for r in mine if r.finish is None]
            while shown in finished:
                yield finished.pop(shown)
                shown += 1
    finally:
        engine.discard(mine)


def write_samples(
    out: TextIO,
    engine: Engine,
    prime: str,
    config: SamplingConfig,
    separator: str = "\n",
    echo: bool = True,
    as_json: bool = False,
) -> None:
    """Write the samples to `out` as `charrnn sample` shows them: the prime (if `echo`) and sample 0,
    streamed as it is written, then separator, prime and text of each other sample, and a final newline.
    `as_json`: one JSON object per sample and line instead (see `Generated.to_dict`), prime not included."""
    if as_json:
        for generated in samples(engine, prime, config):
            out.write(json.dumps(generated.to_dict(), ensure_ascii=False) + "\n")
            out.flush()
        return
    shown = prime if echo else ""
    out.write(shown)
    out.flush()

    def stream(piece: str) -> None:
        out.write(piece)
        out.flush()

    for i, generated in enumerate(samples(engine, prime, config, stream_first=stream)):
        if i:
            out.write(separator + shown + generated.text)
            out.flush()
    out.write("\n")
    out.flush()


def sample_text(
    model: CharRNN,
    vocab: Vocabulary,
    prime: str = "",
    config: SamplingConfig | None = None,
    device: torch.device | str = "cpu",
    quantize: str = "none",
) -> str:
    """The new text of one sample (the prime not included; `config.num_samples` is not used) as a str."""
    config = config or SamplingConfig()
    one = SamplingConfig(
        config.length, config.temperature, config.top_k, config.top_p, config.seed, 1, config.stop
    )
    engine = Engine(model, vocab, device, quantize)
    return next(samples(engine, prime, one)).text
