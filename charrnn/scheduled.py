"""Scheduled sampling (Bengio et al., 2015): train partly on the model's own guesses.

Teacher forcing always feeds the true previous character, but generation feeds the model's own samples,
so at generation time the model meets its own mistakes, which it never saw in training. Scheduled sampling
closes that gap: at each time step after the first, each batch row is fed, with probability `rate`, a
character sampled from the model's prediction at the previous step (not back-propagated through) instead
of the true one. The targets stay the true next characters.

The input at step t depends on the output at step t-1, so the window cannot go through the fused kernels
in one call: it is stepped through the differentiable cell functions (CharRNN.step), which costs several
times a fused window (BENCHMARKS.md). The window's dropout masks are drawn once and shared by its steps.

Shapes: N rows, T steps, V vocabulary.
    ids     (N, T) true inputs        logits (N, T, V)        fed (N, T) bool: where a prediction was fed
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from charrnn.errors import BadSetting, setting_ref
from charrnn.model import CharRNN, State


@dataclass(frozen=True)
class SamplingSchedule:
    """The rate rises linearly from `start` to `end` over the run's budget (constant when equal)."""

    start: float
    end: float

    def rate(self, progress: float) -> float:
        p = min(max(progress, 0.0), 1.0)
        return self.start + (self.end - self.start) * p

    @property
    def active(self) -> bool:
        return self.start > 0 or self.end > 0

    def to_list(self) -> list[float]:
        return [self.start, self.end]


def parse_schedule(text: str) -> SamplingSchedule:
    """'0.25' (constant) or '0:0.25' (from 0 to 0.25 over the budget) -> a schedule."""
    parts = text.strip().split(":")
    try:
        values = [float(x) for x in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or not all(0.0 <= v <= 1.0 for v in values):
        raise BadSetting(
            f"{setting_ref('scheduled_sampling')} {text!r}: give a probability in [0, 1] such as 0.25, "
            "or a linear schedule START:END such as 0:0.25"
        )
    return SamplingSchedule(values[0], values[-1])


def scheduled_forward(
    model: CharRNN, ids: torch.Tensor, state: State | None, rate: float
) -> tuple[torch.Tensor, State, torch.Tensor]:
    """Run a window feeding the model's own samples at `rate`; returns (logits, state, fed)."""
    n, t = ids.shape
    ids = ids.long()
    if state is None:
        state = model.init_state(n, ids.device)
    masks = model.draw_masks(n, ids.device)
    fed = torch.zeros(n, t, dtype=torch.bool, device=ids.device)
    current = ids[:, 0]
    outputs = []
    for step in range(t):
        if step > 0:
            with torch.no_grad():
                probs = torch.softmax(outputs[-1].detach().float(), dim=-1)
                guess = torch.multinomial(probs, 1).squeeze(1)
                fed[:, step] = torch.rand(n, device=ids.device) < rate
            current = torch.where(fed[:, step], guess, ids[:, step])
        logits, state = model.step(current, state, masks)
        outputs.append(logits)
    return torch.stack(outputs, dim=1), state, fed
