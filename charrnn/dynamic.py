"""Dynamic evaluation (Krause et al., "Dynamic Evaluation of Neural Sequence Models", 2018): the model
goes on learning from the text it reads, so it picks up the text's own names, words and style.

The text is read in one stream, segment by segment, with the state carried. Each segment is scored first
with the weights as they are, then the model takes one gradient step on that segment's loss before it
reads the next: every character is scored exactly once, before the model has learned from it, so the loss
is an honest prediction loss. The step is RMS-normalised (each weight's step divided by the root mean
square of its recent gradients, as in RMSprop; Krause et al. use training-set statistics, which a
checkpoint does not carry) and the weights decay back towards the trained ones at a rate `decay` per
segment, so what one passage teaches fades over the following ones. `method="sgd"` takes plain gradient
steps instead.

Dropout is off throughout: the adapted copy is built without it. The checkpoint's weights are untouched.

Shapes: ids (n,) of any integer dtype (a memory map is fine: segments are gathered one at a time).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from charrnn.config import DYNAMIC_DECAY, DYNAMIC_LR, DYNAMIC_SEGMENT
from charrnn.errors import BadSetting
from charrnn.evaluate import EvaluationStopped, Score
from charrnn.model import CharRNN, detach_state

METHODS = ("rms", "sgd")


@dataclass
class DynamicConfig:
    lr: float = (
        DYNAMIC_LR  # step size: weight units per RMS-normalised step ("rms"), or gradient scale ("sgd")
    )
    segment: int = DYNAMIC_SEGMENT  # characters scored per step
    decay: float = DYNAMIC_DECAY  # pull back towards the trained weights per segment (0: none)
    method: str = "rms"
    beta: float = 0.99  # running mean of squared gradients ("rms")
    eps: float = 1e-8

    def check(self) -> None:
        if self.method not in METHODS:
            raise BadSetting(f"dynamic evaluation method {self.method!r}: choose {' or '.join(METHODS)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise BadSetting(f"--dynamic-lr {self.lr}: must be above 0")
        if self.segment < 1:
            raise BadSetting(f"--dynamic-segment {self.segment}: must be at least 1")
        if not 0 <= self.decay < 1:
            raise BadSetting(f"--dynamic-decay {self.decay}: must be at least 0 and below 1")


def adaptable_copy(model: CharRNN) -> CharRNN:
    """A copy of `model` with every dropout off, ready for gradient steps (the original is untouched).

    The copy stays in eval mode, so no dropout masks are drawn; its recurrent layers are put in train mode,
    which cuDNN needs for a backward pass (a single-layer nn.LSTM has no dropout of its own)."""
    adapted = copy.deepcopy(model)
    adapted.eval()
    for layer in adapted.rnns:
        layer.train()
        if hasattr(layer, "flatten_parameters"):  # a copy's weights are no longer one block for cuDNN
            layer.flatten_parameters()
    for p in adapted.parameters():
        p.requires_grad_(True)
    return adapted


class DynamicLearner:
    """The update rule: one call of `step()` per segment, after its loss's backward pass."""

    def __init__(self, model: CharRNN, config: DynamicConfig):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.trained = [p.detach().clone() for p in self.params]
        self.mean_square = [torch.zeros_like(p) for p in self.params]
        self.config = config
        self.steps = 0

    @torch.no_grad()
    def step(self) -> None:
        c = self.config
        self.steps += 1
        correction = 1 - c.beta**self.steps  # running mean started at zero: unbias it
        for p, p0, ms in zip(self.params, self.trained, self.mean_square, strict=True):
            if p.grad is None:
                continue
            g = p.grad
            if c.method == "rms":
                ms.mul_(c.beta).addcmul_(g, g, value=1 - c.beta)
                p.addcdiv_(g, (ms / correction).sqrt_().add_(c.eps), value=-c.lr)
            else:
                p.add_(g, alpha=-c.lr)
            if c.decay:
                p.add_(p0 - p, alpha=c.decay)
            p.grad = None


def dynamic_sums(
    model: CharRNN,
    ids: torch.Tensor,
    device: torch.device | str,
    config: DynamicConfig,
    should_stop: Callable[[], bool] | None = None,
    adapted: CharRNN | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[float, int, CharRNN]:
    """(sum of nats, characters scored, the adapted model) over `ids`, learning as it reads.

    Characters 1..n-1 are scored (the first has nothing before it), exactly as in `evaluate.score_ids`,
    so static and dynamic losses compare like for like. Pass `adapted` to go on from an earlier text."""
    config.check()
    adapted = adapted if adapted is not None else adaptable_copy(model)
    learner = DynamicLearner(adapted, config)
    n = int(ids.numel())
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    state = None
    for start in range(0, max(n - 1, 0), config.segment):
        if should_stop is not None and should_stop():
            raise EvaluationStopped
        end = min(start + config.segment, n - 1)
        window = ids[start : end + 1].long().to(device)
        x, y = window[:-1], window[1:]
        logits, state = adapted(x[None], state)
        loss = F.cross_entropy(logits[0].float(), y, reduction="sum")
        total += loss.detach()
        count += y.numel()
        (loss / y.numel()).backward()
        learner.step()
        state = detach_state(state)
        if on_progress is not None:
            on_progress(y.numel())
    return float(total), count, adapted


def dynamic_score(
    model: CharRNN,
    ids: torch.Tensor,
    device: torch.device | str,
    config: DynamicConfig,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Score:
    total, count, _ = dynamic_sums(model, ids, device, config, should_stop, on_progress=on_progress)
    return Score(nats=total / count if count else float("nan"), chars=count)
