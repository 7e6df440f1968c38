"""Training batches as N contiguous streams, so the hidden state can be carried from batch to batch.

The training ids are cut into N (batch size) equal streams laid side by side; batch i is columns
[i*T, (i+1)*T) of every stream, so row j of batch i+1 continues exactly where row j of batch i ended.
Each epoch starts the streams at a new offset in [0, T) drawn from (seed, epoch), which moves the window
edges; the position is (epoch, batch), so a resumed run picks up at the same window. In a data-parallel
run the N streams are the global batch (ranks x per-rank batch) and each rank reads its own block of rows,
so every stream stays contiguous and the epochs and positions stay global.

    inputs   (N, T) of the corpus id dtype
    targets  (N, T) the same windows shifted by one character
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from charrnn.errors import BadInput


def epoch_offset(seed: int, epoch: int, seq_len: int) -> int:
    """The deterministic start offset of an epoch (epoch 0 starts at 0)."""
    if epoch == 0:
        return 0
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (1 << 63))
    return int(torch.randint(0, seq_len, (1,), generator=g))


def fit_batch_size(n_chars: int, batch_size: int, seq_len: int) -> int:
    """The largest batch size <= the requested one that gives at least one full window per stream.

    Raises a CharrnnError saying the minimum when even one stream of one window does not fit.
    """
    usable = n_chars - 1 - (seq_len - 1)  # room for the largest epoch offset and the shifted targets
    if usable < seq_len:
        raise BadInput(
            f"the training text has {n_chars} characters, too few for one window of --seq-len {seq_len} "
            f"(needs at least {2 * seq_len}); use a longer text or a smaller --seq-len"
        )
    return max(1, min(batch_size, usable // seq_len))


@dataclass
class StreamBatcher:
    data: torch.Tensor  # 1-D ids (may be a memory map: batches are views of it)
    batch_size: int  # streams in all (the global batch)
    seq_len: int
    seed: int = 0
    rows: slice = field(
        default_factory=lambda: slice(None)
    )  # the streams this process trains (a rank's block in a distributed run)

    def __post_init__(self):
        if self.data.dim() != 1:
            raise ValueError("data must be 1-D")
        self._epoch = -1
        self._set_epoch(0)

    def _set_epoch(self, epoch: int) -> None:
        if epoch == self._epoch:
            return
        n, t = self.batch_size, self.seq_len
        offset = epoch_offset(self.seed, epoch, t)
        stream_len = (self.data.numel() - 1 - offset) // n
        self.batches_per_epoch = stream_len // t
        if self.batches_per_epoch < 1:
            raise BadInput(f"text too short for batch size {n} and seq len {t}")
        used = n * stream_len
        self._inputs = self.data[offset : offset + used].view(n, stream_len)[self.rows]
        self._targets = self.data[offset + 1 : offset + used + 1].view(n, stream_len)[self.rows]
        self._epoch = epoch

    def batches_in_epoch(self, epoch: int) -> int:
        self._set_epoch(epoch)
        return self.batches_per_epoch

    def batch(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Window `index` of `epoch` (index < batches_in_epoch(epoch))."""
        self._set_epoch(epoch)
        cols = slice(index * self.seq_len, (index + 1) * self.seq_len)
        return self._inputs[:, cols], self._targets[:, cols]
