"""Scoring text: exact cross-entropy of a model over a whole text, with the hidden state carried.

The text is cut into S parallel streams (one batch row each) so the fused kernels work on S rows at once;
each stream is fed in chunks with its state carried. Every character but the first is scored exactly
once (the last target of stream s is the first character of stream s+1); the tail of the last stream is
padded and masked out. Stream s > 0 starts from the state reached by reading the 256 characters before it,
so no scored character lacks context; on tiny-shakespeare's validation text this matches a single
sequential pass to within 0.001 nats (BENCHMARKS.md) at a fifth of its time. Each model call covers at
most MAX_CHUNK_POSITIONS positions and gathers only its own ids, so scoring a memory-mapped gigabyte
needs no more memory than scoring a page.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from charrnn.checkpoint import Checkpoint, load_checkpoint
from charrnn.corpus import check_level, encode_with_vocab
from charrnn.device import pick_device
from charrnn.errors import BadInput
from charrnn.model import CharRNN

LN2 = math.log(2)
MIN_STREAM_CHARS = 512
MAX_CHUNK_POSITIONS = 16384  # streams x characters per model call
WARMUP_CHARS = 256  # context each stream reads, unscored, before its first scored character


@dataclass
class Score:
    nats: float  # mean cross-entropy per character (per byte at the byte level), natural log
    chars: int  # characters (bytes) scored
    unknown: int = 0  # characters outside the vocabulary (removed before scoring)
    unit: str = "character"  # what one symbol is: "character", or "byte" for byte-level models

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


class EvaluationStopped(Exception):
    """Raised by `score_ids` between chunks when its `should_stop` says so (a signal arrived)."""


def chunk_length(streams: int) -> int:
    """Characters per stream per model call: at most MAX_CHUNK_POSITIONS positions in all, so the
    activations (positions x hidden x layers) and logits stay a few tens of MB whatever the text."""
    return max(16, min(1024, MAX_CHUNK_POSITIONS // streams))


def score_ids(
    model: CharRNN,
    ids: torch.Tensor,
    device: torch.device | str = "cpu",
    max_streams: int = 64,
    chunk_len: int | None = None,
    autocast_dtype: torch.dtype | None = None,
    warmup: int = WARMUP_CHARS,
    should_stop: Callable[[], bool] | None = None,
) -> Score:
    """Mean next-character cross-entropy over `ids` (1-D) with the state carried along each stream.

    Every stream after the first starts from the state reached by reading the `warmup` characters before
    it (unscored), so no character is predicted from a blank state except at the very start of the text.
    `ids` may be a memory map: each chunk gathers just its (streams, chunk_len) window, so memory does not
    grow with the text. `should_stop` is asked before every chunk; True raises EvaluationStopped.
    """
    total, count = score_sums(model, ids, device, max_streams, chunk_len, autocast_dtype, warmup, should_stop)
    return Score(nats=total / count if count else float("nan"), chars=count)


@torch.inference_mode()
def score_sums(
    model: CharRNN,
    ids: torch.Tensor,
    device: torch.device | str = "cpu",
    max_streams: int = 64,
    chunk_len: int | None = None,
    autocast_dtype: torch.dtype | None = None,
    warmup: int = WARMUP_CHARS,
    should_stop: Callable[[], bool] | None = None,
    part: tuple[int, int] = (0, 1),
) -> tuple[float, int]:
    """(sum of nats, characters scored) over this part's streams: part (k, K) takes the k-th of K
    contiguous blocks of the streams, so K ranks that add up their sums get exactly `score_ids`'s
    streams, warm-ups and total (see `score_ids`)."""
    n = ids.numel()
    if n < 2:
        return 0.0, 0
    streams = stream_count(n, max_streams)
    stream_len = math.ceil(n / streams)
    chunk_len = chunk_len or chunk_length(streams)
    k, parts = part
    rows = torch.arange(streams * k // parts, streams * (k + 1) // parts, dtype=torch.long)
    if rows.numel() == 0:
        return 0.0, 0
    starts = rows[:, None] * stream_len  # (rows, 1)

    def gather(positions: torch.Tensor) -> torch.Tensor:
        # past the end of the text (the last stream's tail) read the last id: those steps are not scored
        return ids[positions.clamp(max=n - 1)].long().to(device)

    was_training = model.training
    model.eval()
    device_type = torch.device(device).type
    autocast = torch.autocast(
        device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
    )
    state = None
    warmed_rows = starts[1:] if rows[0] == 0 else starts
    if warmup > 0 and warmed_rows.numel():
        width = min(warmup, stream_len)
        with autocast:
            _, warmed = model(gather(warmed_rows - width + torch.arange(width)))  # (rows, width)
        state = _prepend_zero_row(model.init_state(1, device), warmed) if rows[0] == 0 else warmed
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    try:
        for start in range(0, stream_len, chunk_len):
            if should_stop is not None and should_stop():
                raise EvaluationStopped
            positions = starts + start + torch.arange(min(chunk_len, stream_len - start))
            scored = positions < n - 1  # its input is a real character and so is its target
            x = gather(positions)
            y = gather(positions + 1).masked_fill_(~scored.to(device), -100)
            count += int(scored.sum())
            with autocast:
                logits, state = model(x, state)
            total += F.cross_entropy(
                logits.float().flatten(0, 1), y.flatten(), reduction="sum", ignore_index=-100
            )
    finally:
        model.train(was_training)
    return float(total), count


def _check_scorable(known: int, unknown: int, unit: str = "character") -> None:
    if known >= 2:
        return
    if unknown:
        raise BadInput(
            f"too few of the text's characters are in the model's vocabulary ({unknown} unknown, "
            f"{known} known); score a text in the language the model was trained on"
        )
    raise BadInput(f"the text is too short to score; it needs at least 2 {unit}s")


def score_text(model: CharRNN, vocab, text: str, device: torch.device | str = "cpu") -> Score:
    """Score a text held in memory; characters outside the vocabulary are removed first and counted in
    `unknown`. (Files go through `score_text_file`, which streams them.)"""
    unknown_set = set(vocab.unknown_chars(text))
    unknown = 0
    if unknown_set:
        kept = "".join(c for c in text if c not in unknown_set)
        unknown = len(text) - len(kept)
        text = kept
    ids = vocab.encode(text)
    _check_scorable(ids.numel(), unknown, vocab.unit)
    score = score_ids(model, ids, device)
    score.unknown = unknown
    score.unit = vocab.unit
    return score


@dataclass
class ScoringJob:
    """A checkpoint's model and a text's ids, ready to score (and to trace, for the views)."""

    model: CharRNN
    vocab: object  # Vocabulary
    checkpoint: Checkpoint
    ids: torch.Tensor  # 1-D, memory-mapped from a temporary file
    unknown: int
    device: torch.device

    def score(self, model: CharRNN | None = None) -> Score:
        """Score the text with the checkpoint's model, or with `model` (e.g. its int8 stepped form)."""
        score = score_ids(model if model is not None else self.model, self.ids, self.device)
        score.unknown = self.unknown
        score.unit = self.vocab.unit
        return score


def prepare_scoring(
    checkpoint, text_path: str, device: str = "auto", encoding: str | None = None, lossy: bool = False
) -> ScoringJob:
    """Load a checkpoint and stream a file (or '-' for stdin) into ids on disk (see
    `corpus.encode_with_vocab`), so a file of any size is scored through a memory map in constant memory."""
    dev = pick_device(device)
    loaded = load_checkpoint(checkpoint)
    model, vocab = loaded.build_model(dev), loaded.vocab
    check_level(vocab.level, encoding, lossy)
    ids, unknown = encode_with_vocab(text_path, vocab, encoding or "utf-8", lossy)
    _check_scorable(ids.numel(), unknown, vocab.unit)
    return ScoringJob(model, vocab, loaded, ids, unknown, dev)


def score_text_file(
    checkpoint, text_path: str, device: str = "auto", encoding: str | None = None, lossy: bool = False
):
    """Load a checkpoint and score a file (or '-' for stdin) with it: (Score, Checkpoint)."""
    job = prepare_scoring(checkpoint, text_path, device, encoding, lossy)
    return job.score(), job.checkpoint
