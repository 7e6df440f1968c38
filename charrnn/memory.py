"""What a training run needs in memory, estimated before anything is allocated (placeholder: see issue 21)."""

from __future__ import annotations

import torch

from charrnn.config import TrainConfig
from charrnn.model import ModelConfig


def check_training_fits(model_config: ModelConfig, config: TrainConfig, device: torch.device) -> None:
    """Raise OutOfMemory when the run cannot fit on `device` (not written yet: accepts everything)."""
