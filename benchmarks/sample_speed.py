"""Generation speed of charrnn against the bare one-step nn.LSTM loop, measured in the same run.

    python benchmarks/sample_speed.py

The reference feeds one character at a time through the fused module (embedding, nn.LSTM with T=1,
linear, softmax, multinomial) in inference mode, carrying the state. charrnn is the generation engine as
`charrnn sample` drives it (`charrnn.sample.samples`: its hand-stepped cell on the same weights, per-row
random streams, text decoded per chunk). Both sample at temperature 1 from the same random weights, for
1 stream and for 32 streams. The stepper's logits are also checked against the fused module. The int8
column is the engine with `quantize="int8"` (int8 recurrent weights, see charrnn/quantize.py); its loss cost
is measured by `benchmarks/quantize_cost.py` on a trained model.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import machine, median, table

from charrnn.engine import CHUNK, Engine
from charrnn.model import CharRNN, ModelConfig
from charrnn.sample import SamplingConfig, samples
from charrnn.stepper import Stepper
from charrnn.vocab import Vocabulary

VOCAB = Vocabulary(chr(c) for c in range(32, 97))  # 65 characters, like tiny-shakespeare


def fused_copy(model: CharRNN) -> torch.nn.Module:
    """The per-layer weights in one multi-layer fused module, as a plain PyTorch user holds them."""
    cfg = model.config
    fused_class = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cfg.cell]
    fused = fused_class(cfg.embedding, cfg.hidden, cfg.layers, batch_first=True)
    with torch.no_grad():
        for k, layer in enumerate(model.rnns):
            for name, value in layer.named_parameters():
                getattr(fused, name.replace("_l0", f"_l{k}")).copy_(value)
    return fused.eval()


@torch.inference_mode()
def bare_loop(model: CharRNN, streams: int, length: int) -> float:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(streams, 1, dtype=torch.long)
    rnn = fused_copy(model)
    state = None
    start = time.perf_counter()
    for _ in range(length):
        out, state = rnn(model.embed(x), state)
        probs = torch.softmax(model.head(out[:, -1]), dim=-1)
        x = torch.multinomial(probs, 1, generator=g)
    return streams * length / (time.perf_counter() - start)


def charrnn_loop(
    model: CharRNN, streams: int, length: int, quantize: str = "none", numpy: bool = True
) -> float:
    """Steady-state chars/s: clocked from the end of the first chunk, so the one-off set-up (the
    stepper's weight preparation: about 1 ms in float32, 40-60 ms for int8 at 2x512) is left out, as the
    bare loop's module copy is."""
    engine = Engine(model, VOCAB, "cpu", quantize)
    if not numpy:
        engine._numpy = None  # the PyTorch step for every row count (what one row took before numpy_step.py)
    config = SamplingConfig(length=length + CHUNK, seed=0, num_samples=streams)
    clock: list[float] = []

    def first_piece(piece: str) -> None:  # the end of the first chunk: the clock starts
        if not clock:
            clock.append(time.perf_counter())

    for _ in samples(engine, "A", config, stream_first=first_piece):
        pass
    return streams * length / (time.perf_counter() - clock[0])


def max_logit_error(model: CharRNN) -> float:
    ids = torch.randint(0, len(VOCAB), (2, 50))
    with torch.inference_mode():
        reference, _ = model(ids)
        stepper = Stepper(model)
        state = stepper.split_state(model.init_state(2))
        stepped = torch.stack([stepper.step(ids[:, t], state) for t in range(50)], dim=1)
    return float((stepped - reference).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for cell in ("lstm", "gru"):
        for hidden in (128, 512):
            torch.manual_seed(0)
            model = CharRNN(ModelConfig(len(VOCAB), cell=cell, layers=2, hidden=hidden, embedding=64)).eval()
            error = max_logit_error(model)
            for streams in (1, 32):
                length = (2000 if hidden == 128 else 400) // (1 if streams == 1 else 4)
                bare_length = length if cell == "gru" or hidden == 128 else length // 4
                refs, tools, int8s, torch_paths = [], [], [], []
                for _ in range(args.repeats):
                    refs.append(bare_loop(model, streams, bare_length))
                    tools.append(charrnn_loop(model, streams, length))
                    int8s.append(charrnn_loop(model, streams, length, "int8"))
                    torch_paths.append(charrnn_loop(model, streams, length, numpy=False))
                ref, tool, int8 = median(refs), median(tools), median(int8s)
                torch_path = median(torch_paths)
                rows.append(
                    [
                        f"{cell} 2x{hidden}",
                        streams,
                        f"{ref:,.0f}",
                        f"{tool:,.0f}",
                        f"{tool / ref:.1f}",
                        f"{int8:,.0f}",
                        f"{int8 / tool:.2f}",
                        f"{torch_path:,.0f}",
                        f"{tool / torch_path:.2f}",
                        f"{error:.1e}",
                    ]
                )
                print(rows[-1], flush=True)
    print()
    print(machine())
    print(
        table(
            [
                "model",
                "streams",
                "bare nn loop chars/s",
                "charrnn sample chars/s",
                "ratio",
                "int8 chars/s",
                "int8 / float",
                "PyTorch step chars/s",
                "charrnn / PyTorch step",
                "max |logit error|",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
