"""What a training run needs in memory, estimated from its settings before anything is allocated.

A model too large for the machine used to grow until the kernel killed it (and took the machine's memory
from everything else meanwhile); now it is refused in one line. The estimate counts the weights from the
config (no model is built), then per weight: the weights, their gradients and AdamW's two moments (16 bytes
in float32), 4 more with --ema; and one window's activations kept for backpropagation through time
(batch x window x layers x the cell's gates and states, and the logits with their gradient).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from charrnn.config import TrainConfig
from charrnn.errors import OutOfMemory, setting_ref
from charrnn.model import ModelConfig

GATES = {"lstm": 4, "peephole-lstm": 4, "gru": 3, "rnn": 1}
USABLE_SHARE = 0.9  # refuse a run whose estimate passes this share of the memory available


@dataclass
class MemoryEstimate:
    weights: int  # parameters
    state_bytes: int  # weights, gradients, optimiser moments (and the moving average)
    activation_bytes: int  # one window's activations and logits, forward and backward

    @property
    def total(self) -> int:
        return self.state_bytes + self.activation_bytes


def count_weights(c: ModelConfig) -> int:
    """The model's parameter count from its config alone (matches `count_parameters(CharRNN(c))`)."""
    g = GATES.get(c.cell, 4)
    total = c.vocab_size * c.embedding if c.input == "embedding" else 0
    for k in range(c.layers):
        inputs = c.input_size if k == 0 else c.hidden
        total += g * c.hidden * (inputs + c.hidden) + 2 * g * c.hidden
        if c.cell == "peephole-lstm":
            total += 3 * c.hidden
    total += c.vocab_size + (0 if c.weight_tying else c.hidden * c.vocab_size)
    return total


def estimate_training(c: ModelConfig, config: TrainConfig) -> MemoryEstimate:
    weights = count_weights(c)
    per_weight = 16 + (4 if config.ema else 0)
    positions = config.batch_size * config.seq_len
    per_position = c.layers * c.hidden * (GATES.get(c.cell, 4) + 3) + c.input_size + 3 * c.vocab_size
    return MemoryEstimate(weights, weights * per_weight, 2 * 4 * positions * per_position)


def available_bytes(device: torch.device) -> int | None:
    """Memory this process may still take on `device`; None where the system does not say."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    free = _meminfo_available()
    limit = _cgroup_room()
    candidates = [x for x in (free, limit) if x is not None]
    return min(candidates) if candidates else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """A cgroup's memory limit less what it uses (v2, else v1); None without a limit."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            return max(int(limit) - usage, 0)
    return None


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def check_training_fits(model_config: ModelConfig, config: TrainConfig, device: torch.device) -> None:
    """Raise OutOfMemory, naming the estimate and what is available, when the run cannot fit."""
    estimate = estimate_training(model_config, config)
    available = available_bytes(device)
    if available is None or estimate.total <= USABLE_SHARE * available:
        return
    c = model_config
    raise OutOfMemory(
        f"a {c.layers}x{c.hidden} {c.cell.upper()} needs about {_gb(estimate.total)} to train "
        f"({estimate.weights / 1e9:.2f}B weights: weights, gradients and AdamW moments "
        f"{_gb(estimate.state_bytes)}; a {config.batch_size}x{config.seq_len} window's activations "
        f"{_gb(estimate.activation_bytes)}) and {device.type} memory has {_gb(available)} available; use a "
        f"smaller {setting_ref('hidden')}, {setting_ref('layers')} or {setting_ref('batch_size')}",
        setting="hidden",
    )
