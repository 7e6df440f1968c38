"""The peephole LSTM layer's forward + backward speed: hand-written backward against autograd through the
stepped loop, both against the fused nn.LSTM layer of the same size, measured in the same run.

    python benchmarks/peephole_speed.py

One layer, input 64, on random inputs; the loss is the sum of the outputs. Median of 3 alternating runs.
"""

from __future__ import annotations

import time

import torch
from common import machine, median, table
from torch import nn

from charrnn.cells import PeepholeLSTM, lstm_step

SIZES = [(128, 50, 50), (384, 16, 64), (512, 64, 128)]  # hidden, batch, seq


def autograd_loop(layer: PeepholeLSTM, x: torch.Tensor) -> torch.Tensor:
    """The same layer differentiated by autograd step by step (what PeepholeSequence replaces)."""
    gates_x = nn.functional.linear(x, layer.weight_ih_l0, layer.bias_ih_l0)
    h = c = x.new_zeros(x.size(0), layer.hidden_size)
    outputs = []
    for t in range(x.size(1)):
        h, c = lstm_step(gates_x[:, t], h, c, layer.weight_hh_l0.t(), layer.bias_hh_l0, layer.peephole_l0)
        outputs.append(h)
    return torch.stack(outputs, dim=1)


def chars_per_second(run, x: torch.Tensor, iters: int) -> float:
    run(x).sum().backward()  # warm-up
    start = time.perf_counter()
    for _ in range(iters):
        run(x).sum().backward()
    return x.size(0) * x.size(1) * iters / (time.perf_counter() - start)


def main() -> None:
    rows = []
    for hidden, batch, seq in SIZES:
        torch.manual_seed(0)
        peephole, fused = PeepholeLSTM(64, hidden), nn.LSTM(64, hidden, batch_first=True)
        x = torch.randn(batch, seq, 64)
        iters = 3 if hidden >= 512 else 10
        runs = {
            "fused": lambda x, fused=fused: fused(x)[0],
            "autograd": lambda x, layer=peephole: autograd_loop(layer, x),
            "hand": lambda x, layer=peephole: layer(x)[0],
        }
        speeds = {name: [] for name in runs}
        for _ in range(3):
            for name, run in runs.items():
                speeds[name].append(chars_per_second(run, x, iters))
        fused_speed, auto, hand = (median(speeds[k]) for k in ("fused", "autograd", "hand"))
        rows.append([f"1x{hidden}", f"{batch}x{seq}", f"{fused_speed:,.0f}", f"{auto:,.0f}", f"{hand:,.0f}",
                     f"{hand / fused_speed:.2f}", f"{hand / auto:.1f}"])  # fmt: skip
        print(rows[-1], flush=True)
    print()
    print(machine())
    headers = [
        "layer",
        "batch x seq",
        "fused nn.LSTM chars/s",
        "peephole, autograd loop",
        "peephole, hand backward",
    ]
    print(table([*headers, "hand vs fused", "hand vs autograd"], rows))


if __name__ == "__main__":
    main()
