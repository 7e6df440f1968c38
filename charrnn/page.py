"""The self-contained HTML page of `evaluate --html`: surprisal colouring, top predictions, neuron view.

Everything the page needs is inside the file: the style, the script (charrnn/page.html) and the data,
a JSON document in a <script type="application/json"> element. Any text is safe to show: the data is
JSON with every '<', '>' and '&' written as a \\u escape, so nothing in it can close the element or
open a tag, and the script puts characters on the page only through textContent, never as markup.
Control characters are shown as escapes (\\x07).

Activations travel as one base64 block of int8 values, laid out (state, layer, unit, character) so one
unit's series is contiguous, each unit scaled by its own largest |activation| (the scales travel too):
2,000 characters of a 2x512 LSTM take about 5.5 MB.
"""

from __future__ import annotations

import base64
import html
import json
import math
from importlib import resources
from pathlib import Path

import numpy as np

from charrnn.atomic import atomic_write
from charrnn.features import feature_units, text_features
from charrnn.trace import Trace

STATE_LABELS = {"h": "hidden state h", "c": "cell state c"}


def visible(ch: str) -> str:
    """A character as shown: control characters (not newline or tab) as escapes such as \\x07, since
    fonts rarely draw their Unicode control pictures and the characters themselves draw nothing."""
    code = ord(ch)
    if (code < 0x20 and ch not in "\n\t") or 0x7F <= code < 0xA0 or code in (0x2028, 0x2029):
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return ch


def symbol_label(ch: str) -> str:
    """A predicted symbol in the top-5 list, where whitespace must be visible too."""
    return {"\n": "\u21b5", " ": "\u2423", "\t": "\u21e5"}.get(ch) or visible(ch)


def page_data(trace: Trace, vocab_chars: list[str], summary: dict, per_feature: int = 3) -> dict:
    """The page's JSON document (see the module docstring)."""
    n = len(trace.chars)
    names = list(trace.states)
    stacked = np.stack([trace.states[name] for name in names])  # (S, L, T, H)
    stacked = stacked.transpose(0, 1, 3, 2)  # (S, L, H, T)
    scales = np.abs(stacked).max(axis=3, keepdims=True)
    scales[scales == 0] = 1.0
    quantised = np.rint(stacked / scales * 127).astype(np.int8)
    matches = feature_units(trace.states, text_features(trace.chars), per_feature)
    layers, hidden = stacked.shape[1], stacked.shape[2]
    return {
        "summary": summary,
        "chars": [visible(c) for c in trace.chars],
        "bits": [None if math.isnan(b) else round(float(b), 4) for b in trace.surprisal],
        "ids": trace.ids.tolist(),
        "bitsTotal": trace.bits_total,
        "scored": trace.scored,
        "vocab": [symbol_label(c) for c in vocab_chars],
        "topK": int(trace.top_ids.shape[1]) if n else 0,
        "topIds": trace.top_ids.reshape(-1).tolist(),
        "topProbs": [round(float(p), 4) for p in trace.top_probs.reshape(-1)],
        "states": [{"name": name, "label": STATE_LABELS.get(name, name)} for name in names],
        "layers": int(layers),
        "hidden": int(hidden),
        "scales": [round(float(s), 5) for s in scales.reshape(-1)],
        "activations": base64.b64encode(quantised.tobytes()).decode("ascii"),
        "units": [m.to_dict() for m in matches],
    }


def script_safe_json(data: dict) -> str:
    """JSON that cannot end its <script> element or start markup: ASCII only, '<', '>', '&' escaped."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(data: dict, title: str) -> str:
    template = resources.files("charrnn").joinpath("page.html").read_text(encoding="utf-8")
    head, tail = template.split("__DATA__")
    return head.replace("__TITLE__", html.escape(title, quote=True)) + script_safe_json(data) + tail


def write_page(path: str | Path, trace: Trace, vocab_chars: list[str], summary: dict, title: str) -> None:
    page = render_page(page_data(trace, vocab_chars, summary), title)
    with atomic_write(path) as f:
        f.write(page.encode("utf-8"))
