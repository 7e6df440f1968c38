"""`charrnn export --format html`: one self-contained page that writes text in the browser.

The step is plain JavaScript (writer.html), not onnxruntime-web: the whole runtime is about 300 lines, the
page is the weights plus a few KB (onnxruntime-web's WebAssembly alone is about 10 MB), it runs from
file:// with no worker or fetch, and every cell (the peephole LSTM too) is a few loops.

Weights: every matrix in int8 with one float32 scale per row (the row's largest |w| / 127), every bias and
peephole vector in float32; the page widens them back to float32 (w = q * scale) once at load, so its
arithmetic is float on those dequantised weights. `dequantised(checkpoint)` gives charrnn the very same
weights, which is how the browser test compares the page's text with `charrnn sample -T 0`. A 2x512 LSTM
(3.4M weights) makes a page of about 4.6 MB; its float32 checkpoint is 13.7 MB.

Data travels as JSON in a <script type="application/json"> element (with '<', '>', '&' escaped), tensors
as base64; the page's Content-Security-Policy allows no network at all.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from charrnn.atomic import atomic_write
from charrnn.checkpoint import Checkpoint
from charrnn.page import script_safe_json


def _quantise_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scales = np.abs(matrix).max(axis=1) / 127.0
    scales[scales == 0] = 1.0
    q = np.clip(np.rint(matrix / scales[:, None]), -127, 127).astype(np.int8)
    return q, scales.astype(np.float32)


def _tensors(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    model = checkpoint.build_model()
    tensors = {k: v.detach().float() for k, v in model.state_dict().items()}
    if checkpoint.model_config.weight_tying:
        del tensors["head.weight"]  # the page reads embed.weight for both
    return tensors


def dequantised(checkpoint: Checkpoint) -> Checkpoint:
    """The checkpoint with exactly the weights the page computes with (each matrix int8-rounded per row)."""
    weights = {}
    for name, t in _tensors(checkpoint).items():
        if t.dim() == 2 and not name.endswith("peephole_l0"):
            q, scales = _quantise_rows(t.numpy())
            t = torch.from_numpy(q.astype(np.float32) * scales[:, None])
        weights[name] = t
    if checkpoint.model_config.weight_tying:
        weights["head.weight"] = weights["embed.weight"]
    return replace(checkpoint, weights=weights, training=None)


def page_model(checkpoint: Checkpoint) -> dict:
    """The page's JSON document: settings, vocabulary and tensors."""
    c = checkpoint.model_config
    tensors = {}
    for name, t in _tensors(checkpoint).items():
        array = t.numpy()
        if array.ndim == 2 and not name.endswith("peephole_l0"):
            q, scales = _quantise_rows(array)
            tensors[name] = {
                "shape": list(array.shape),
                "int8": base64.b64encode(q.tobytes()).decode("ascii"),
                "scales": base64.b64encode(scales.astype("<f4").tobytes()).decode("ascii"),
            }
        else:
            tensors[name] = {
                "shape": list(array.shape),
                "f32": base64.b64encode(array.astype("<f4").tobytes()).decode("ascii"),
            }
    return {
        "name": checkpoint.corpus.name or (checkpoint.path.stem if checkpoint.path else "model"),
        "cell": c.cell,
        "layers": c.layers,
        "hidden": c.hidden,
        "input": c.input,
        "tied": c.weight_tying,
        "level": checkpoint.level,
        "vocab": checkpoint.vocab.to_list(),
        "tensors": tensors,
    }


def write_page(checkpoint: Checkpoint, out: Path) -> None:
    template = resources.files("charrnn.export").joinpath("writer.html").read_text(encoding="utf-8")
    data = script_safe_json(page_model(checkpoint))
    title = _html_text(checkpoint.corpus.name or "charrnn")
    page = template.replace("__TITLE__", title).replace("__DATA__", data)
    with atomic_write(out) as f:
        f.write(page.encode("utf-8"))


def _html_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
