"""int8 weights for one-step inference: `sample --quantize int8` and `evaluate --quantize int8`.

Generating a character streams every recurrent weight matrix through the CPU's caches: at 2x512 three
512 x 2048 float32 matrices, 12.6 MB a character. PyTorch's dynamic quantization keeps them as int8 with one
scale per output row (per-channel) and multiplies with its int8 kernels (fbgemm), quantizing the small
activation vector on the fly: a 1 x 512 by 512 x 2048 product measured 3x faster than in float32 on the
2-core EPYC (19 us against 59 us). Layer 0's input table (a lookup) and the output layer (small, and the
place where the probabilities are made) stay float32.

The int8 kernels are CPU kernels: quantized inference runs on the CPU.

Shapes as in stepper.py. `SteppedModel` gives a Stepper the (N, T) interface of CharRNN, so
`evaluate.score_ids` scores a text with exactly the arithmetic that generation uses.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from charrnn.cells import has_cell_state
from charrnn.errors import BadSetting
from charrnn.model import CharRNN, State
from charrnn.stepper import Stepper

QUANTIZE_CHOICES = ("none", "int8")


def int8_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A dynamically quantized Linear computing x @ weight^T + bias with int8 weights (per output row)."""
    out_features, in_features = weight.shape
    linear = nn.Linear(in_features, out_features)
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias if bias is not None else torch.zeros(out_features))
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError:  # pragma: no cover - depends on the PyTorch build
        raise BadSetting(
            "--quantize int8 needs PyTorch's dynamic quantization (torch.ao.quantization), which this "
            "PyTorch lacks; drop --quantize"
        ) from None
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        wrapped = quantize_dynamic(
            nn.Sequential(linear), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
        )
    return wrapped[0]


class Int8Stepper(Stepper):
    """The Stepper with the recurrent and between-layer matrices in int8 (see the module docstring)."""

    def __init__(self, model: CharRNN):
        if next(model.parameters()).device.type != "cpu":
            raise BadSetting("--quantize int8 runs on the CPU (int8 kernels); add --device cpu")
        super().__init__(model)
        gru = self.cell == "gru"
        self.q_hh = []
        self.q_ih: list[nn.Module | None] = [None]
        for k, layer in enumerate(model.rnns):
            w_hh = layer.weight_hh_l0.detach()
            self.q_hh.append(int8_linear(w_hh, self.b_hh[k] if gru else None))
            if k > 0:
                self.q_ih.append(int8_linear(layer.weight_ih_l0.detach(), self.b_ih[k]))
        self.w_hh_t = [None] * len(self.w_hh_t)  # the float copies are no longer used
        self.w_ih_t = [None] * len(self.w_ih_t)

    def input_product(self, k: int, x: torch.Tensor) -> torch.Tensor:
        return self.q_ih[k](x)

    def add_recurrent(self, k: int, gates: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return gates.add_(self.q_hh[k](h))

    def recurrent_product(self, k: int, h: torch.Tensor) -> torch.Tensor:
        return self.q_hh[k](h)


def make_stepper(model: CharRNN, quantize: str = "none") -> Stepper:
    if quantize == "none":
        return Stepper(model)
    if quantize == "int8":
        return Int8Stepper(model)
    raise BadSetting(f"--quantize {quantize!r}: choose {' or '.join(QUANTIZE_CHOICES)}")


class SteppedModel(nn.Module):
    """CharRNN's scoring interface (init_state, forward over (N, T) ids) on a Stepper, one step at a time."""

    def __init__(self, model: CharRNN, stepper: Stepper):
        super().__init__()
        self.model = model
        self.stepper = stepper
        self.config = model.config

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        return self.model.init_state(batch_size, device)

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        n, t = ids.shape
        layer_state = self.stepper.split_state(state if state is not None else self.init_state(n, ids.device))
        logits = torch.empty(n, t, self.config.vocab_size)
        for i in range(t):
            logits[:, i] = self.stepper.step(ids[:, i], layer_state)
        if has_cell_state(self.config.cell):
            h = torch.stack([s[0] for s in layer_state])
            return logits, (h, torch.stack([s[1] for s in layer_state]))
        return logits, torch.stack(layer_state)
