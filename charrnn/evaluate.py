"""Scoring text: exact cross-entropy of a model over a whole text, with the hidden state carried.

The text is cut into S parallel streams (one batch row each) so the fused kernels work on S rows at once;
each stream is fed in chunks with its state carried. Every character but the first is scored exactly
once (the last target of stream s is the first character of stream s+1); the tail of the last stream is
padded and masked out. Stream s > 0 starts from the state reached by reading the 256 characters before it,
so no scored character lacks context; on tiny-shakespeare's validation text this matches a single
sequential pass to within 0.001 nats (BENCHMARKS.md) at a fifth of its time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from charrnn.model import CharRNN

LN2 = math.log(2)
MIN_STREAM_CHARS = 512
WARMUP_CHARS = 256  # context each stream reads, unscored, before its first scored character


@dataclass
class Score:
    nats: float  # mean cross-entropy per character, natural log
    chars: int  # characters scored
    unknown: int = 0  # characters outside the vocabulary (removed before scoring)

    @property
    def bpc(self) -> float:
        return self.nats / LN2

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.nats, 700.0))

    def to_dict(self) -> dict:
        return {**asdict(self), "bpc": self.bpc, "perplexity": self.perplexity}


def stream_count(n_chars: int, max_streams: int = 64) -> int:
    return max(1, min(max_streams, n_chars // MIN_STREAM_CHARS))


def _prepend_zero_row(zero, warmed):
    """Stream 0's blank state followed by the warmed-up states of streams 1..S-1 (batch dimension 1)."""
    if isinstance(warmed, tuple):
        return tuple(torch.cat([z, w.to(z.dtype)], dim=1) for z, w in zip(zero, warmed, strict=True))
    return torch.cat([zero, warmed.to(zero.dtype)], dim=1)


@torch.inference_mode()
def score_ids(
    model: CharRNN,
    ids: torch.Tensor,
    device: torch.device | str = "cpu",
    max_streams: int = 64,
    chunk_len: int = 1024,
    autocast_dtype: torch.dtype | None = None,
    warmup: int = WARMUP_CHARS,
) -> Score:
    """Mean next-character cross-entropy over `ids` (1-D) with the state carried along each stream.

    Every stream after the first starts from the state reached by reading the `warmup` characters before
    it (unscored), so no character is predicted from a blank state except at the very start of the text.
    """
    n = ids.numel()
    if n < 2:
        return Score(nats=float("nan"), chars=0)
    streams = stream_count(n, max_streams)
    stream_len = math.ceil(n / streams)
    padded = torch.zeros(streams * stream_len + 1, dtype=torch.long)
    padded[:n] = ids.long()
    valid = torch.zeros(streams * stream_len + 1, dtype=torch.bool)
    valid[:n] = True
    inputs = padded[:-1].view(streams, stream_len)
    targets = padded[1:].view(streams, stream_len).clone()
    # target j of a stream is scored if it is a real character and its input is too
    mask = (valid[1:] & valid[:-1]).view(streams, stream_len)
    targets[~mask] = -100
    was_training = model.training
    model.eval()
    device_type = torch.device(device).type
    autocast = torch.autocast(
        device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
    )
    state = None
    if warmup > 0 and streams > 1:
        width = min(warmup, stream_len)
        starts = torch.arange(1, streams) * stream_len
        before = padded[starts[:, None] - width + torch.arange(width)[None, :]].to(device)  # (S-1, width)
        with autocast:
            _, warmed = model(before)
        state = _prepend_zero_row(model.init_state(1, device), warmed)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, stream_len, chunk_len):
        x = inputs[:, start : start + chunk_len].to(device)
        y = targets[:, start : start + chunk_len].to(device)
        with autocast:
            logits, state = model(x, state)
        total += F.cross_entropy(
            logits.float().flatten(0, 1), y.flatten(), reduction="sum", ignore_index=-100
        )
    model.train(was_training)
    count = int(mask.sum())
    return Score(nats=float(total) / count, chars=count)


def score_text(model: CharRNN, vocab, text: str, device: torch.device | str = "cpu") -> Score:
    """Score a text; characters outside the vocabulary are removed first and counted in `unknown`."""
    from charrnn.errors import CharrnnError

    unknown_set = set(vocab.unknown_chars(text))
    unknown = 0
    if unknown_set:
        kept = "".join(c for c in text if c not in unknown_set)
        unknown = len(text) - len(kept)
        text = kept
    if len(text) < 2:
        if unknown:
            raise CharrnnError(
                f"too few of the text's characters are in the model's vocabulary ({unknown} unknown, "
                f"{len(text)} known); "
                "score a text in the language the model was trained on"
            )
        raise CharrnnError("the text is too short to score; it needs at least 2 characters")
    score = score_ids(model, vocab.encode(text), device)
    score.unknown = unknown
    return score


def score_text_file(
    checkpoint, text_path: str, device: str = "auto", encoding: str = "utf-8", lossy: bool = False
):
    """Load a checkpoint and score a file (or '-' for stdin) with it: (Score, checkpoint dict)."""
    from charrnn.checkpoint import load_checkpoint, model_from_checkpoint
    from charrnn.corpus import decode_bytes, read_input_bytes
    from charrnn.train import pick_device

    dev = pick_device(device)
    blob = load_checkpoint(checkpoint)
    model, vocab = model_from_checkpoint(blob, dev)
    source = "standard input" if text_path == "-" else text_path
    text = decode_bytes(bytes(read_input_bytes(text_path)), encoding, lossy, source)
    return score_text(model, vocab, text, dev), blob
