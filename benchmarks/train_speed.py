"""Training speed of charrnn against the bare PyTorch loop at the same sizes, measured in the same run.

    python benchmarks/train_speed.py            # all sizes, LSTM and GRU
    python benchmarks/train_speed.py --quick    # fewer steps
    python benchmarks/train_speed.py --family   # every cell, input and dropout mode against the fused LSTM
    python benchmarks/train_speed.py --family --only dropout,bf16   # some of them

The reference is the plainest correct loop: embedding, fused nn.LSTM/nn.GRU, linear, cross-entropy,
backward, gradient clipping, Adam step, hidden state carried and detached, on random ids. charrnn runs its
Trainer on tiny-shakespeare and is clocked from the end of its 3rd step to the end of its last, so all
per-step work counts (data slicing, schedule, loss bookkeeping, progress); validation is disabled there
and timed separately. Both use dropout 0 so they do the same arithmetic. Runs alternate
(reference, charrnn, reference, ...) and the median of each is kept, to cancel drift on a shared machine.
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
from charrnn.evaluate import score_ids
from charrnn.model import CharRNN, ModelConfig
from charrnn.train import Trainer

SIZES = [(2, 128, 50, 50), (2, 512, 64, 128)]  # layers, hidden, batch, seq


def bare_loop(cell: str, layers: int, hidden: int, batch: int, seq: int, vocab: int, steps: int) -> float:
    torch.manual_seed(0)
    embed = nn.Embedding(vocab, 64)
    rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(64, hidden, layers, batch_first=True)
    head = nn.Linear(hidden, vocab)
    params = [*embed.parameters(), *rnn.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=2e-3)
    x = torch.randint(0, vocab, (batch, seq))
    y = torch.randint(0, vocab, (batch, seq))
    state = None
    start = 0.0
    for i in range(steps + 3):
        if i == 3:
            start = time.perf_counter()
        out, state = rnn(embed(x), state)
        loss = F.cross_entropy(head(out).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
    return batch * seq * steps / (time.perf_counter() - start)


def charrnn_loop(
    corpus, cell: str, layers: int, hidden: int, batch: int, seq: int, steps: int, **options
) -> float:
    """chars/s of Trainer.run() from the end of step 3 to the end of the last step (all per-step work).

    `options` are further ModelConfig fields, or `scheduled_sampling`, `weight_decay` (default 0) or
    `precision` (default fp32, like the bare loop, whatever `--precision auto` would pick on this CPU)."""
    sampling = options.pop("scheduled_sampling", None)
    precision = options.pop("precision", "fp32")
    weight_decay = options.pop("weight_decay", 0.0)
    model_config = ModelConfig(
        len(corpus.vocab),
        cell=cell,
        layers=layers,
        hidden=hidden,
        **{"embedding": 64, "dropout": 0.0, **options},
    )
    config = TrainConfig(
        batch_size=batch, seq_len=seq, max_steps=steps + 3, eval_every=10**9, val_fraction=0.0, device="cpu",
        scheduled_sampling=sampling, precision=precision, weight_decay=weight_decay,
    )  # fmt: skip
    marks = {}

    def clock(trainer):
        marks[trainer.progress.step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as folder:
        Trainer(corpus, model_config, config, folder, on_step=clock).run()
    return batch * seq * steps / (marks[steps + 3] - marks[3])


def eval_speed(corpus, cell: str, layers: int, hidden: int) -> float:
    model = CharRNN(ModelConfig(len(corpus.vocab), cell=cell, layers=layers, hidden=hidden, embedding=64))
    _, val = corpus.split(0.1)
    start = time.perf_counter()
    score_ids(model, val)
    return val.numel() / (time.perf_counter() - start)


FAMILY = {
    "lstm (fused)": {},
    "gru (fused)": {"cell": "gru"},
    "rnn (fused)": {"cell": "rnn"},
    "peephole-lstm (stepped)": {"cell": "peephole-lstm"},
    "lstm, one-hot input": {"input": "onehot", "embedding": 65},
    "lstm, locked dropout 0.2": {"dropout": 0.2, "dropout_mode": "locked"},
    "lstm, variational dropout 0.2": {"dropout": 0.2, "dropout_mode": "variational"},
    "lstm, standard dropout 0.2": {"dropout": 0.2},
    "lstm, tied weights (embedding = hidden)": {"weight_tying": True, "embedding": 0},
    "lstm, scheduled sampling 0.25": {"scheduled_sampling": [0.25, 0.25]},
    "lstm, bf16 autocast": {"precision": "bf16"},
    "lstm, standard dropout 0.2, bf16": {"dropout": 0.2, "precision": "bf16"},
    "lstm, standard dropout 0.2, bf16, weight decay 0.1 (the defaults on bf16 CPUs)": {
        "dropout": 0.2,
        "precision": "bf16",
        "weight_decay": 0.1,
    },
    "lstm, weight decay 0.1": {"weight_decay": 0.1},
    "lstm, locked dropout 0.2, bf16": {"dropout": 0.2, "dropout_mode": "locked", "precision": "bf16"},
    "gru (fused), bf16 autocast": {"cell": "gru", "precision": "bf16"},
    "rnn (fused), bf16 autocast": {"cell": "rnn", "precision": "bf16"},
    "peephole-lstm (stepped), bf16 autocast": {"cell": "peephole-lstm", "precision": "bf16"},
}


def family(corpus, repeats: int, quick: bool, only: str | None = None) -> None:
    """Every variant against the fused LSTM (first row) at 2x128 (50x50) and 2x384 (16x64, the defaults)."""
    rows = []
    for layers, hidden, batch, seq in ((2, 128, 50, 50), (2, 384, 16, 64)):
        steps = 12 if quick else 30
        chosen = {
            name: options
            for name, options in FAMILY.items()
            if only is None or name == "lstm (fused)" or any(w in name for w in only.split(","))
        }
        speeds = {name: [] for name in chosen}
        for _ in range(repeats):  # interleaved, so drift hits every variant alike
            for name, options in chosen.items():
                options = dict(options)
                if options.get("embedding") == 0:
                    options["embedding"] = hidden
                cell = options.pop("cell", "lstm")
                speeds[name].append(charrnn_loop(corpus, cell, layers, hidden, batch, seq, steps, **options))
        reference = median(speeds["lstm (fused)"])
        for name, values in speeds.items():
            rows.append([name, f"{layers}x{hidden}", f"{batch}x{seq}", f"{median(values):,.0f}",
                         f"{median(values) / reference:.2f}"])  # fmt: skip
            print(rows[-1], flush=True)
    print()
    print(machine())
    print(table(["variant", "model", "batch x seq", "charrnn train chars/s", "speed vs fused lstm"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--family", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--only", help="with --family: variants whose name holds one of these, comma-separated"
    )
    args = parser.parse_args()
    corpus = load_text_file(shakespeare())
    if args.family:
        family(corpus, args.repeats, args.quick, args.only)
        return
    rows = []
    for layers, hidden, batch, seq in SIZES:
        steps = (16 if hidden >= 512 else 60) // (2 if args.quick else 1)
        for cell in ("lstm", "gru"):
            refs, tools = [], []
            for _ in range(args.repeats):
                refs.append(bare_loop(cell, layers, hidden, batch, seq, len(corpus.vocab), steps))
                tools.append(charrnn_loop(corpus, cell, layers, hidden, batch, seq, steps))
            ref, tool = median(refs), median(tools)
            evals = eval_speed(corpus, cell, layers, hidden)
            rows.append(
                [
                    f"{cell} {layers}x{hidden}",
                    f"{batch}x{seq}",
                    f"{ref:,.0f}",
                    f"{tool:,.0f}",
                    f"{tool / ref:.3f}",
                    f"{evals:,.0f}",
                ]
            )
            print(rows[-1], flush=True)
    print()
    print(machine())
    print(
        table(
            [
                "model",
                "batch x seq",
                "bare loop chars/s",
                "charrnn train chars/s",
                "ratio",
                "validation scoring chars/s",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
