"""Text generation: warm the state on a prime, then sample one character at a time and feed it back.

The prime goes through the fused model once, in chunks of a bounded number of positions with the state
carried (so a prime of any length fits in memory), for one row whose state every sample then starts from;
after that each step costs the same whatever has been generated (the state is carried, the history is never
re-run). The next character is drawn from softmax(logits / temperature), optionally restricted to the top-k
characters and/or the smallest set whose probability reaches top-p; temperature 0 takes the most likely
character.

Many samples are generated in batches of at most MAX_SAMPLE_ROWS rows (`write_samples`), one random stream
across the batches, so a large --num-samples costs time, not memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TextIO

import torch

from charrnn.errors import BadInput
from charrnn.evaluate import chunk_length
from charrnn.model import CharRNN, State, map_state
from charrnn.quantize import make_stepper
from charrnn.stepper import Stepper
from charrnn.vocab import Vocabulary

# Samples stepped together, which bounds the per-step activations. On a 2x384 LSTM (2 cores) 100,000 samples
# of length 1 peaked at 272 MB RSS with 512 rows (268 MB with 256, 294 MB with 1024, 2.4 GB in one batch);
# 512 rows stepped 10-25% faster than 256 and within 15% of 1024.
MAX_SAMPLE_ROWS = 512


@dataclass
class SamplingConfig:
    length: int = 500
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    num_samples: int = 1


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the top-p nucleus (rows are independent)."""
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # probability mass strictly ahead of each entry
        sorted_logits = sorted_logits.masked_fill(before >= top_p, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def choose(
    logits: torch.Tensor,
    temperature: float,
    generator: torch.Generator | None,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """One next-character id per row of `logits` (N, V)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    # shift so the largest logit is 0: a tiny temperature then gives a peaked, not an overflowing, softmax.
    # float32, unless the temperature is too small for it (it would round to 0, and 0/0 is NaN)
    logits = logits.float() if temperature >= torch.finfo(torch.float32).tiny else logits.double()
    logits = filter_logits((logits - logits.max(dim=-1, keepdim=True).values) / temperature, top_k, top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def check_prime(vocab: Vocabulary, prime: str, drop_unknown: bool = False) -> str:
    """The prime with unknown characters dropped (if asked), or BadInput listing them: the model has no
    input for a character it never saw."""
    unknown = vocab.unknown_chars(prime)
    if unknown:
        if not drop_unknown:
            shown = " ".join(repr(c) for c in unknown[:20]) + (" ..." if len(unknown) > 20 else "")
            raise BadInput(
                f"the prime has {len(unknown)} character(s) the model never saw: {shown}; "
                "change the prime or pass --drop-unknown"
            )
        prime = "".join(c for c in prime if c in vocab)
    return prime


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """The random stream of a run: seeded from `seed`, or from the OS when it is None."""
    seed = seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
    return torch.Generator(device=device).manual_seed(seed)


@dataclass
class Warmed:
    """What every sample starts from, prepared once however many batches follow."""

    state: State  # after all but the last prime symbol, one row (L, 1, H)
    first: int  # the first input: the prime's last symbol
    stepper: Stepper  # the weights prepared for one-step generation


def warm_up(
    model: CharRNN,
    vocab: Vocabulary,
    prime: str = "",
    device: torch.device | str = "cpu",
    quantize: str = "none",
) -> Warmed:
    """Run the prime (all but its last symbol) through the fused model for one row, in chunks of
    `evaluate.chunk_length(1)` symbols with the state carried, so any prime fits in bounded memory (one
    call over 900,000 characters failed in oneDNN); the samples share this state instead of each reading
    the prime again. int8 generation still warms up in float32.

    The prime must hold only known characters (see `check_prime`); a byte-level model reads its UTF-8
    bytes. Without a prime the first input is a newline (or the first vocabulary symbol if the corpus had
    no newline)."""
    model.eval()
    ids = vocab.encode(prime) if prime else torch.empty(0, dtype=torch.uint8)
    if ids.numel() == 0:
        ids = torch.tensor([vocab.index("\n") if "\n" in vocab else 0])
    warm = ids.numel() - 1
    with torch.inference_mode():
        state = model.init_state(1, device)
        step = chunk_length(1)
        for start in range(0, warm, step):
            chunk = ids[start : min(start + step, warm)].long().to(device)
            _, state = model(chunk.unsqueeze(0), state)
    return Warmed(state, int(ids[-1]), make_stepper(model, quantize))


def generate(
    model: CharRNN,
    vocab: Vocabulary,
    prime: str = "",
    config: SamplingConfig | None = None,
    device: torch.device | str = "cpu",
    quantize: str = "none",
    *,
    warmed: Warmed | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """Yield `config.length` steps of new characters, each an (num_samples,) tensor of ids, all rows at
    once (`write_samples` bounds the rows).

    `warmed` (from `warm_up` on this prime) and `generator` let batch after batch share one warm-up and one
    random stream; by default the prime is warmed up here and the stream is seeded from `config.seed`."""
    config = config or SamplingConfig()
    n = config.num_samples
    generator = generator if generator is not None else make_generator(config.seed, device)
    warmed = warmed if warmed is not None else warm_up(model, vocab, prime, device, quantize)
    stepper = warmed.stepper
    with torch.inference_mode():
        layer_state = stepper.split_state(map_state(warmed.state, lambda s: s.expand(-1, n, -1)))
        current = torch.full((n,), warmed.first, dtype=torch.long, device=device)
        for _ in range(config.length):
            logits = stepper.step(current, layer_state)
            current = choose(logits, config.temperature, generator, config.top_k, config.top_p)
            yield current


def decode_ids(vocab: Vocabulary, ids: Iterable[int]) -> str:
    """One sample's ids as text through the vocabulary's incremental decoder, so a byte-level model's
    multi-byte characters come out whole (only invalid sequences become U+FFFD), exactly as when streamed."""
    decoder = vocab.decoder()
    return "".join(map(decoder.feed, ids)) + decoder.flush()


def sample_text(
    model: CharRNN,
    vocab: Vocabulary,
    prime: str = "",
    config: SamplingConfig | None = None,
    device: torch.device | str = "cpu",
    quantize: str = "none",
) -> str:
    """The new text of one sample (the prime not included; `config.num_samples` is not used) as a str."""
    config = replace(config or SamplingConfig(), num_samples=1)
    return decode_ids(vocab, (int(ids[0]) for ids in generate(model, vocab, prime, config, device, quantize)))


def write_samples(
    out: TextIO,
    model: CharRNN,
    vocab: Vocabulary,
    prime: str,
    config: SamplingConfig,
    device: torch.device | str = "cpu",
    quantize: str = "none",
    separator: str = "\n",
    echo: bool = True,
    max_rows: int | None = None,
) -> None:
    """Write `config.num_samples` samples to `out` as `charrnn sample` shows them: the prime (if `echo`) and
    sample 0, streamed as it is generated, then separator, prime and text of each other sample, and a final
    newline.

    The samples are generated in batches of at most `max_rows` (default MAX_SAMPLE_ROWS) rows, from one
    warm-up and one random stream, so up to that many samples come out as when generated together. Each
    batch is written as soon as it ends: what is held is one batch's ids (rows x length, a byte each for up
    to 256 symbols) and one finished text at a time, whatever --num-samples is."""
    bound = max_rows or MAX_SAMPLE_ROWS
    shown = prime if echo else ""
    out.write(shown)
    out.flush()
    generator = make_generator(config.seed, device)
    warmed = warm_up(model, vocab, prime, device, quantize)
    held_dtype = torch.uint8 if len(vocab) <= 256 else torch.int32
    streamed = vocab.decoder()  # sample 0
    for start in range(0, config.num_samples, bound):
        rows = min(bound, config.num_samples - start)
        first = 1 if start == 0 else 0  # the first batch's row 0 is streamed, not held
        held = torch.empty(config.length, rows - first, dtype=held_dtype)
        batch = replace(config, num_samples=rows)
        steps = generate(model, vocab, prime, batch, device, quantize, warmed=warmed, generator=generator)
        for t, ids in enumerate(steps):
            if first:
                piece = streamed.feed(int(ids[0]))
                if piece:
                    out.write(piece)
                    out.flush()
            held[t] = ids[first:]
        if first:
            out.write(streamed.flush())
        for row in held.t():
            out.write(separator + shown + decode_ids(vocab, row.tolist()))
        out.flush()
    out.write("\n")
    out.flush()
