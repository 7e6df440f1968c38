"""Text generation: warm the state on a prime, then sample one character at a time and feed it back.

The prime goes through the fused model in one call; after that each step costs the same whatever has been
generated (the state is carried, the history is never re-run). The next character is drawn from
softmax(logits / temperature), optionally restricted to the top-k characters and/or the smallest set whose
probability reaches top-p; temperature 0 takes the most likely character.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from charrnn.errors import CharrnnError
from charrnn.model import CharRNN
from charrnn.quantize import make_stepper
from charrnn.vocab import Vocabulary


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


def encode_prime(vocab: Vocabulary, prime: str, drop_unknown: bool = False) -> str:
    """The prime with unknown characters dropped (if asked) or an error listing them."""
    unknown = vocab.unknown_chars(prime)
    if unknown:
        if not drop_unknown:
            shown = " ".join(repr(c) for c in unknown[:20]) + (" ..." if len(unknown) > 20 else "")
            raise CharrnnError(
                f"the prime has {len(unknown)} character(s) the model never saw: {shown}; "
                "change the prime or pass --drop-unknown"
            )
        prime = "".join(c for c in prime if c in vocab)
    return prime


def generate(
    model: CharRNN,
    vocab: Vocabulary,
    prime: str = "",
    config: SamplingConfig | None = None,
    device: torch.device | str = "cpu",
    quantize: str = "none",
) -> Iterator[torch.Tensor]:
    """Yield `config.length` steps of new characters, each an (num_samples,) tensor of ids.

    The prime must hold only known characters (see `encode_prime`); a byte-level model reads its UTF-8
    bytes. Without a prime the first input is a newline (or the first vocabulary symbol if the corpus had
    no newline).
    """
    config = config or SamplingConfig()
    n = config.num_samples
    seed = config.seed if config.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
    generator = torch.Generator(device=device).manual_seed(seed)
    model.eval()
    prime_ids = vocab.encode(prime).long() if prime else None
    if prime_ids is None or prime_ids.numel() == 0:
        prime_ids = torch.tensor([vocab.index("\n") if "\n" in vocab else 0])
    with torch.inference_mode():
        state = model.init_state(n, device)
        if prime_ids.numel() > 1:  # all but the last symbol warm the state in one fused call
            _, state = model(prime_ids[:-1].to(device).unsqueeze(0).expand(n, -1), state)
        stepper = make_stepper(model, quantize)  # int8: the prime above still warms the state in float32
        layer_state = stepper.split_state(state)
        current = torch.full((n,), int(prime_ids[-1]), dtype=torch.long, device=device)
        for _ in range(config.length):
            logits = stepper.step(current, layer_state)
            current = choose(logits, config.temperature, generator, config.top_k, config.top_p)
            yield current
