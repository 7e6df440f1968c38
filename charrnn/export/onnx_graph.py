"""The model as an ONNX graph, for onnxruntime and anything else that runs ONNX.

One graph serves both jobs: `(ids[B, T], h[L, B, H], c[L, B, H]) -> (logits[B, T, V], h', c')` with B and T
dynamic. Priming runs it on the whole prime (T = its length); generating runs it one step at a time (T = 1,
logits[:, 0] are the next character's). One graph is one copy of the arithmetic and one file to ship; a
separate step graph would repeat every weight. The state is explicit (inputs and outputs), the known
pitfall of exporting stateful LSTMs. GRU and RNN models take and return `h` only (no `c`).

Exported with PyTorch's TorchScript-based exporter (`dynamo=False`), which writes each layer as ONNX's own
LSTM/GRU/RNN operator, at opset 17, and works for all three (the tests check it). The dynamo exporter was
not tried: it needs the onnxscript package, and several torch issues report it failing on recurrent
modules. The peephole LSTM has no ONNX operator (it is a Python
loop over time) and is refused. Metadata (`metadata_props`): the same keys as the safetensors export
(safetensors_file.metadata), so a reader finds the vocabulary and settings in the model file itself.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

from charrnn.atomic import atomic_write
from charrnn.checkpoint import Checkpoint
from charrnn.errors import BadInput, MissingResource
from charrnn.export.safetensors_file import metadata

OPSET = 17


class _Exportable(nn.Module):
    """The trained model's inference path with the state as explicit tensors (no dropout, no masks)."""

    def __init__(self, checkpoint: Checkpoint):
        super().__init__()
        self.model = checkpoint.build_model()
        self.lstm = self.model.config.cell == "lstm"
        v = self.model.config.vocab_size
        if self.model.embed is None:  # one-hot input: the same as looking up rows of the identity
            self.register_buffer("table", torch.eye(v), persistent=False)

    def forward(self, ids: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None = None):
        m = self.model
        x = m.embed(ids) if m.embed is not None else self.table[ids]
        new_h, new_c = [], []
        for k, layer in enumerate(m.rnns):
            if self.lstm:
                x, (hk, ck) = layer(x, (h[k : k + 1], c[k : k + 1]))
                new_c.append(ck)
            else:
                x, hk = layer(x, h[k : k + 1])
            new_h.append(hk)
        logits = m.head(x)
        if self.lstm:
            return logits, torch.cat(new_h, 0), torch.cat(new_c, 0)
        return logits, torch.cat(new_h, 0)


def write_onnx(checkpoint: Checkpoint, out: Path) -> None:
    """Export the checkpoint's model to `out` (atomically); BadInput for a cell ONNX cannot express."""
    config = checkpoint.model_config
    if config.cell == "peephole-lstm":
        raise BadInput(
            "the peephole LSTM has no ONNX operator (its cell is stepped in Python): export it as "
            "safetensors, or train an lstm, gru or rnn model to export to ONNX"
        )
    try:
        import onnx
    except ImportError:
        raise MissingResource(
            "exporting ONNX needs the onnx package: pip install 'charrnn[export]' (or bash scripts/setup.sh)"
        ) from None
    module = _Exportable(checkpoint).eval()
    layers, hidden = config.layers, config.hidden
    ids = torch.zeros(1, 3, dtype=torch.long)
    h = torch.zeros(layers, 1, hidden)
    lstm = config.cell == "lstm"
    args = (ids, h, torch.zeros(layers, 1, hidden)) if lstm else (ids, h)
    inputs = ["ids", "h", "c"] if lstm else ["ids", "h"]
    outputs = ["logits", "h_out", "c_out"] if lstm else ["logits", "h_out"]
    axes = {"ids": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"}}
    for name in inputs[1:] + outputs[1:]:
        axes[name] = {1: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the exporter warns about batch_first LSTMs and its own deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            buffer,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    graph = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata(checkpoint).items():
        graph.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    with atomic_write(out) as f:
        f.write(graph.SerializeToString())
