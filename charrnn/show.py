"""`evaluate --show`: the text in the terminal, each character on a background coloured by its surprisal.

Rich picks the colour depth the terminal supports (and none where it is not a terminal or NO_COLOR is
set), so the same call serves a truecolor terminal, a 256-colour one and a log file.
"""

from __future__ import annotations

import math

from rich.console import Console, Group
from rich.text import Text

from charrnn.page import visible
from charrnn.trace import Trace

MAX_BITS = 10.0
# (position on the 0..MAX_BITS scale, RGB): white, pale yellow, orange, red, dark red; as on the page
STOPS = [
    (0.0, (255, 255, 255)),
    (0.25, (254, 240, 150)),
    (0.5, (253, 174, 97)),
    (0.75, (227, 74, 51)),
    (1.0, (150, 20, 30)),
]


def heat_colour(bits: float) -> tuple[int, int, int]:
    x = min(max(bits / MAX_BITS, 0.0), 1.0)
    for (a, ca), (b, cb) in zip(STOPS, STOPS[1:], strict=False):
        if x <= b:
            f = (x - a) / (b - a)
            return tuple(round(c + f * (d - c)) for c, d in zip(ca, cb, strict=True))
    return STOPS[-1][1]


def _style(bits: float) -> str:
    if math.isnan(bits):
        return ""
    r, g, b = heat_colour(bits)
    ink = "white" if bits / MAX_BITS > 0.7 else "black"
    return f"{ink} on #{r:02x}{g:02x}{b:02x}"


def heat_text(trace: Trace) -> Text:
    text = Text()
    for ch, bits in zip(trace.chars, trace.surprisal, strict=True):
        if ch == "\n":  # colour a visible mark, then break the line
            text.append("\u21b5", style=_style(bits))
            text.append("\n")
        else:
            text.append(visible(ch), style=_style(bits))
    return text


def legend() -> Text:
    text = Text("surprisal: ")
    for bits in (0, 1, 2, 3, 4, 6, 8, 10):
        text.append(f" {bits}{'+' if bits == MAX_BITS else ''} ", style=_style(float(bits)))
    text.append(" bits per character (0: expected, 10+: very surprising)")
    return text


def show_heat_map(console: Console, trace: Trace, heading: str, cap_note: str | None) -> None:
    parts = [Text(heading, style="bold"), legend()]
    if cap_note:
        parts.append(Text(cap_note, style="yellow"))
    parts += [Text(""), heat_text(trace), Text("")]
    console.print(Group(*parts), soft_wrap=True, highlight=False, markup=False)
