"""Simple features of a text, per character, and the units whose activation follows them.

The LSTM cells Karpathy, Johnson and Fei-Fei found ("Visualizing and Understanding Recurrent Networks",
2015) tracked things a reader can name: being inside quotes, the position in a line, indentation. Here
each feature is computed for every character (its value once that character has been read), and each
unit's activation over the text is correlated with it; the strongest correlations are listed first in
the neuron view, so a user starts from the interesting units rather than unit 0.

Shapes: T characters, U units (layers x hidden, per state kind).
    feature values  (T,) float64
    activations     (L, T, H) float32, as in trace.Trace.states
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

OPENING, CLOSING = "([{", ")]}"
QUOTES = {'"': '"', "\u201c": "\u201d"}  # opening -> closing; a straight quote toggles


def text_features(chars: list[str]) -> dict[str, np.ndarray]:
    """Feature name -> (T,) values, each the state of the text just after reading character t."""
    n = len(chars)
    inside_quote = np.zeros(n)
    inside_brackets = np.zeros(n)
    depth_values = np.zeros(n)
    column = np.zeros(n)
    indent = np.zeros(n)
    line_start = np.zeros(n)
    word_start = np.zeros(n)
    in_word = np.zeros(n)
    quote_closer: str | None = None
    depth = col = ind = 0
    leading = True  # still in the current line's leading whitespace
    previous_is_word = False
    for t, ch in enumerate(chars):
        if quote_closer is not None and ch == quote_closer:
            quote_closer = None
        elif quote_closer is None and ch in QUOTES:
            quote_closer = QUOTES[ch]
        if ch in OPENING:
            depth += 1
        elif ch in CLOSING:
            depth = max(0, depth - 1)
        if ch == "\n":
            col = ind = 0
            leading = True
        else:
            col += 1
            if leading and ch in " \t":
                ind += 4 if ch == "\t" else 1
            else:
                leading = False
        is_word = ch.isalnum() or ch == "_"
        inside_quote[t] = quote_closer is not None
        inside_brackets[t] = depth > 0
        depth_values[t] = depth
        column[t] = col
        indent[t] = ind
        line_start[t] = ch == "\n"
        word_start[t] = is_word and not previous_is_word
        in_word[t] = is_word
        previous_is_word = is_word
    return {
        "inside quotes": inside_quote,
        "inside brackets": inside_brackets,
        "bracket depth": depth_values,
        "position in line": column,
        "indentation": indent,
        "start of line": line_start,
        "start of word": word_start,
        "inside a word": in_word,
    }


@dataclass
class UnitMatch:
    feature: str
    state: str  # "h" (hidden) or "c" (cell)
    layer: int
    unit: int
    r: float  # Pearson correlation of the unit's activation with the feature

    def to_dict(self) -> dict:
        return asdict(self)


def feature_units(
    states: dict[str, np.ndarray], features: dict[str, np.ndarray], per_feature: int = 3
) -> list[UnitMatch]:
    """For each feature that varies over the text, the `per_feature` units most correlated with it (either
    sign), all sorted by |r|, strongest first. A unit that never varies correlates with nothing."""
    matches: list[UnitMatch] = []
    for name, values in features.items():
        f = values - values.mean()
        f_norm = np.sqrt((f * f).sum())
        if not np.isfinite(f_norm) or f_norm == 0:
            continue
        best: list[UnitMatch] = []
        for state, acts in states.items():
            layers, _, hidden = acts.shape
            a = acts.transpose(1, 0, 2).reshape(acts.shape[1], layers * hidden).astype(np.float64)
            a = a - a.mean(axis=0)
            a_norm = np.sqrt((a * a).sum(axis=0))
            with np.errstate(invalid="ignore", divide="ignore"):
                r = (f @ a) / (f_norm * a_norm)
            r[~np.isfinite(r)] = 0.0
            for flat in np.argsort(-np.abs(r))[:per_feature]:
                layer, unit = divmod(int(flat), hidden)
                best.append(UnitMatch(name, state, layer, unit, float(r[flat])))
        best.sort(key=lambda m: -abs(m.r))
        matches.extend(best[:per_feature])
    matches.sort(key=lambda m: -abs(m.r))
    return matches
