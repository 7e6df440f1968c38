import pytest
import torch

from charrnn.batching import StreamBatcher, epoch_offset, fit_batch_size
from charrnn.errors import CharrnnError


def test_rows_continue_across_batches():
    data = torch.arange(1000)
    batcher = StreamBatcher(data, batch_size=4, seq_len=10, seed=0)
    for epoch in (0, 1, 2):
        n = batcher.batches_in_epoch(epoch)
        assert n >= 20
        for i in range(n - 1):
            x0, y0 = batcher.batch(epoch, i)
            x1, _ = batcher.batch(epoch, i + 1)
            assert torch.equal(x1[:, 0], x0[:, -1] + 1)  # row j of batch i+1 continues row j of batch i
            assert torch.equal(y0, x0 + 1)  # targets are the next characters
            assert torch.equal(x1[:, 0], y0[:, -1])


def test_streams_are_contiguous_and_disjoint():
    data = torch.arange(1000)
    batcher = StreamBatcher(data, batch_size=4, seq_len=10, seed=0)
    rows = torch.cat([batcher.batch(0, i)[0] for i in range(batcher.batches_in_epoch(0))], dim=1)
    starts = rows[:, 0]
    assert torch.all(rows[:, 1:] - rows[:, :-1] == 1)
    assert torch.all(starts[1:] - starts[:-1] == starts[1] - starts[0])  # equal-length side-by-side streams


def test_each_epoch_moves_the_window_edges():
    offsets = {epoch_offset(seed=7, epoch=e, seq_len=50) for e in range(1, 30)}
    assert len(offsets) > 5 and all(0 <= o < 50 for o in offsets)
    assert epoch_offset(7, 3, 50) == epoch_offset(7, 3, 50)


def test_batch_size_adapts_to_short_text_and_explains_the_minimum():
    assert fit_batch_size(10_000, 32, 64) == 32
    assert fit_batch_size(300, 32, 64) == 3
    with pytest.raises(CharrnnError, match="needs at least 128"):
        fit_batch_size(100, 32, 64)
