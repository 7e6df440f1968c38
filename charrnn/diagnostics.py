"""How far back the training signal reaches: the gradient norm at every time step of a window.

For the loss on the window's last character, the gradient with respect to the input vector of each earlier
step, ||dL_T / dx_t||, averaged over the batch rows. In a vanilla tanh RNN it shrinks geometrically with the
distance T - t (the vanishing gradient); an LSTM's cell state carries it much further. Measured in eval
mode (no dropout noise) on the current training window, from the carried state.

Shapes: N rows, T steps, D input size.   norms: list of T floats, index d = distance back (0 = last step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from charrnn.dropout import WindowMasks
from charrnn.model import CharRNN, State


def gradient_reach(
    model: CharRNN, ids: torch.Tensor, targets: torch.Tensor, state: State | None
) -> list[float]:
    was_training = model.training
    model.eval()
    try:
        masks = WindowMasks()
        with torch.enable_grad():
            x = model.inputs(ids, masks).detach().requires_grad_(True)
            out, _ = model.recurrent(x, state, masks)
            loss = F.cross_entropy(model.head(out[:, -1]).float(), targets[:, -1].long())
            (grad,) = torch.autograd.grad(loss, x)
    finally:
        model.train(was_training)
    per_step = grad.float().norm(dim=-1).mean(dim=0)  # (T,)
    return per_step.flip(0).tolist()


# Distances shown in the training summary.
SHOWN_DISTANCES = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256)


def summarise(norms: list[float]) -> list[tuple[int, float]]:
    """(distance, norm relative to distance 0) at the shown distances that fit the window, and the
    window's far end."""
    base = norms[0] if norms and norms[0] > 0 else 1.0
    distances = [d for d in SHOWN_DISTANCES if d < len(norms)]
    if norms and distances[-1] != len(norms) - 1:
        distances.append(len(norms) - 1)
    return [(d, norms[d] / base) for d in distances]
