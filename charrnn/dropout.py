"""The dropout masks of sequence models, drawn once per window so that they can be shared across time.

Three modes (`--dropout-mode`), all at rate p on the inputs and outputs of every recurrent layer:
    standard     a new mask for every element at every time step (plain dropout, what PyTorch's multi-layer
                 RNNs apply between layers)
    locked       one mask per sequence (batch row), the same at every time step (AWD-LSTM's LockedDropout;
                 Gal and Ghahramani's variational dropout on the non-recurrent connections)
    variational  locked, plus weight dropout (DropConnect) on every hidden-to-hidden matrix: one mask on
                 W_hh per window, shared by the batch rows and all time steps. This is how AWD-LSTM puts
                 variational dropout on the recurrent connections of fused cells, whose kernels cannot take
                 a per-row mask on h_{t-1}.
Embedding dropout (AWD-LSTM) removes whole characters: one keep/drop decision per vocabulary entry per
window, so every occurrence of a dropped character in the window reads a zero vector.

Shapes: N batch rows, D features, V vocabulary size.
    locked mask      (N, 1, D)   broadcasts over the T time steps of (N, T, D)
    character mask   (V,)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

DROPOUT_MODES = ("standard", "locked", "variational")


def keep_mask(shape: tuple[int, ...], p: float, device, dtype=torch.float32) -> torch.Tensor:
    """Inverted-dropout mask: 0 with probability p, else 1 / (1 - p), so expectations are unchanged."""
    return torch.empty(shape, device=device, dtype=dtype).bernoulli_(1 - p).div_(1 - p)


@dataclass
class WindowMasks:
    """The masks of one window; None where that dropout is off or drawn afresh at each use (standard)."""

    layer_inputs: list[torch.Tensor | None] = field(default_factory=list)  # (N, 1, D) per layer
    output: torch.Tensor | None = None  # (N, 1, H) before the output layer
    w_hh: list[torch.Tensor | None] = field(default_factory=list)  # dropped recurrent matrices per layer
    chars: torch.Tensor | None = None  # (V,) embedding dropout

    def layer_input(self, k: int) -> torch.Tensor | None:
        return self.layer_inputs[k] if self.layer_inputs else None

    def recurrent_weight(self, k: int) -> torch.Tensor | None:
        return self.w_hh[k] if self.w_hh else None


def apply_mask(x: torch.Tensor, mask: torch.Tensor | None, p: float, training: bool) -> torch.Tensor:
    """Locked dropout when a mask was drawn for the window, else standard dropout at rate p."""
    if mask is not None:
        return x * mask.to(x.dtype)
    return torch.nn.functional.dropout(x, p, training) if p > 0 else x


def drop_characters(x: torch.Tensor, ids: torch.Tensor, chars: torch.Tensor | None) -> torch.Tensor:
    """Zero the input vectors of the characters dropped for this window, scaling the rest."""
    if chars is None:
        return x
    return x * chars[ids.long()].unsqueeze(-1).to(x.dtype)
