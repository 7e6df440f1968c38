"""Training speed on a CUDA GPU: charrnn's Trainer against the bare nn.LSTM loop, fp32 and bf16, same run.

    python benchmarks/gpu_speed.py            # needs a CUDA GPU
    python benchmarks/gpu_speed.py --quick

Same method as train_speed.py (bare loop on random ids; charrnn on tiny-shakespeare clocked from the end
of its 3rd step to the end of its last, dropout 0, validation off), with the GPU synchronised at each
clock mark so queued kernels are counted. Sizes are GPU-sized: the CPU defaults leave an H100 idle.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torch.nn.functional as F
from common import machine, median, shakespeare, table
from torch import nn

from charrnn.config import TrainConfig
from charrnn.corpus import load_text_file
from charrnn.model import ModelConfig
from charrnn.train import Trainer

SIZES = [(2, 512, 64, 128), (3, 1024, 128, 128), (3, 2048, 256, 128)]  # layers, hidden, batch, seq


def bare_loop(layers: int, hidden: int, batch: int, seq: int, vocab: int, steps: int, bf16: bool) -> float:
    torch.manual_seed(0)
    device = torch.device("cuda")
    embed = nn.Embedding(vocab, 64).to(device)
    rnn = nn.LSTM(64, hidden, layers, batch_first=True).to(device)
    head = nn.Linear(hidden, vocab).to(device)
    params = [*embed.parameters(), *rnn.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=2e-3)
    x = torch.randint(0, vocab, (batch, seq), device=device)
    y = torch.randint(0, vocab, (batch, seq), device=device)
    state = None
    start = 0.0
    for i in range(steps + 3):
        if i == 3:
            torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out, state = rnn(embed(x), state)
            loss = F.cross_entropy(head(out).flatten(0, 1).float(), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        state = tuple(s.detach() for s in state)
    torch.cuda.synchronize()
    return batch * seq * steps / (time.perf_counter() - start)


def charrnn_loop(corpus, layers: int, hidden: int, batch: int, seq: int, steps: int, bf16: bool) -> float:
    model_config = ModelConfig(len(corpus.vocab), layers=layers, hidden=hidden, embedding=64, dropout=0.0)
    config = TrainConfig(
        batch_size=batch, seq_len=seq, max_steps=steps + 3, eval_every=10**9, val_fraction=0.0,
        device="cuda", precision="bf16" if bf16 else "fp32",
    )  # fmt: skip
    marks = {}

    def clock(trainer):
        torch.cuda.synchronize()
        marks[trainer.progress.step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as folder:
        Trainer(corpus, model_config, config, folder, on_step=clock).run()
    return batch * seq * steps / (marks[steps + 3] - marks[3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    corpus = load_text_file(shakespeare())
    rows = []
    for layers, hidden, batch, seq in SIZES:
        steps = 10 if args.quick else 30
        for bf16 in (False, True):
            refs, tools = [], []
            for _ in range(args.repeats):
                refs.append(bare_loop(layers, hidden, batch, seq, len(corpus.vocab), steps, bf16))
                tools.append(charrnn_loop(corpus, layers, hidden, batch, seq, steps, bf16))
            ref, tool = median(refs), median(tools)
            rows.append(
                [f"lstm {layers}x{hidden}", f"{batch}x{seq}", "bf16" if bf16 else "fp32",
                 f"{ref:,.0f}", f"{tool:,.0f}", f"{tool / ref:.3f}"]
            )  # fmt: skip
            print(rows[-1], flush=True)
    print()
    print(machine(), torch.cuda.get_device_name())
    print(table(["model", "batch x seq", "precision", "bare loop chars/s", "charrnn chars/s", "ratio"], rows))


if __name__ == "__main__":
    main()
