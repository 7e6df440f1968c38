"""What a training run needs in memory, estimated from its settings before anything is allocated (issue 21).

Without it a model too large for the machine grew for minutes, starving everything else, until the kernel
killed it; with it training refuses at once, in one line that names the estimate, what is available and
which settings to shrink.

The figures are measured peaks, not worst cases (for issue 21, on a CPU with oneDNN kernels, torch 2.13):
    per weight    16 bytes that live through training (float32 weight, gradient, AdamW's two moments)
                  + 4 bytes at the step's peak (a float32 working copy: AdamW's multi-tensor step, the
                  kernels' own weight layout) + 4 with --ema. With the activations below the estimate
                  came within 5% of the measured growth of the peak at 2x2048 and 2x4096, 15% at 2x1024.
    per position  of a window, per layer, about (3G + 2) H elements kept for backpropagation through
                  time (G gates: LSTM 4, GRU 3, RNN 1; measured 13.2, 11.4, 5.1 and 11.7 (peephole) x H
                  float32 at 2x512, batch 128-256 x 256), in the autocast dtype (bfloat16 halves it)
                  except in the peephole LSTM, which runs in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch

from charrnn.config import TrainConfig, format_bytes
from charrnn.device import pick_autocast
from charrnn.errors import OutOfMemory, setting_ref
from charrnn.model import ModelConfig

# Refuse when the estimate exceeds this share of what is available: the rest is headroom for the
# allocator's fragmentation, the evaluation and what else the machine runs meanwhile.
SAFE_SHARE = 0.9

FLOAT32 = 4
GATES = {"lstm": 4, "peephole-lstm": 4, "gru": 3, "rnn": 1}
CELL_NAMES = {"lstm": "LSTM", "peephole-lstm": "peephole LSTM", "gru": "GRU", "rnn": "RNN"}
ADAMW_MOMENTS = 2  # exp_avg and exp_avg_sq, float32 like the weights
WORKING_BYTES_PER_WEIGHT = FLOAT32  # one transient float32 copy at the step's peak
EMA_BYTES_PER_WEIGHT = FLOAT32


def activation_width(cell: str) -> int:
    """Elements per hidden unit that one layer holds per window position through the backward pass, fitted
    to measurements: the gate activations, their gradients and the kernel's copies (3 G), the layer's output
    and state (2)."""
    return 3 * GATES[cell] + 2


def layer_parameters(cell: str, input_size: int, hidden: int) -> int:
    """Weights of one recurrent layer as cells.py builds it: W_ih, W_hh and two biases per gate, plus the
    peephole LSTM's three diagonal vectors."""
    width = GATES[cell] * hidden
    peepholes = 3 * hidden if cell == "peephole-lstm" else 0
    return width * (input_size + hidden) + 2 * width + peepholes


def count_weights(model_config: ModelConfig) -> int:
    """The model's weights, counted from its settings (equal to count_parameters(CharRNN(model_config)))."""
    c = model_config
    embedding = c.vocab_size * c.embedding if c.input == "embedding" else 0
    layers = sum(
        layer_parameters(c.cell, c.input_size if k == 0 else c.hidden, c.hidden) for k in range(c.layers)
    )
    head = c.vocab_size + (0 if c.weight_tying else c.hidden * c.vocab_size)  # tied: only the bias is new
    return embedding + layers + head


@dataclass(frozen=True)
class MemoryEstimate:
    """What a training run needs on its device, by what holds it."""

    weights: int  # how many the model has
    state_bytes: int  # live through training: weights, gradients, AdamW's two moments, the EMA copy
    working_bytes: int  # held at the step's peak only: a float32 working copy of the weights
    activation_bytes: int  # one window's, kept for backpropagation through time, logits included

    @property
    def per_weight_bytes(self) -> int:
        """Everything that scales with the number of weights."""
        return self.state_bytes + self.working_bytes

    @property
    def total(self) -> int:
        return self.per_weight_bytes + self.activation_bytes

    @property
    def mostly_weights(self) -> bool:
        """Whether a smaller model (rather than a smaller window) is what would help most."""
        return self.per_weight_bytes >= self.activation_bytes


def activation_bytes(model_config: ModelConfig, config: TrainConfig, autocast: torch.dtype | None) -> int:
    """One window's activations: the layers' saved gates and states, the input vectors, the logits with
    their float32 copy, log-softmax and gradient, and, with weight dropout, each layer's mask and masked
    recurrent matrix (drawn afresh per window)."""
    c = model_config
    positions = config.batch_size * config.seq_len
    element = FLOAT32 if autocast is None else autocast.itemsize
    layer_element = FLOAT32 if c.cell == "peephole-lstm" else element  # the peephole layer runs in float32
    layers = positions * c.layers * activation_width(c.cell) * c.hidden * layer_element
    inputs = positions * c.input_size * 2 * FLOAT32  # the vectors and their dropped copy
    logits = positions * c.vocab_size * (element + 3 * FLOAT32)
    dropped = 2 * FLOAT32 * c.layers * GATES[c.cell] * c.hidden * c.hidden if c.weight_dropout > 0 else 0
    return layers + inputs + logits + dropped


def estimate_training(
    model_config: ModelConfig, config: TrainConfig, autocast: torch.dtype | None = None
) -> MemoryEstimate:
    """The memory a training run needs on its device, from the settings alone (nothing is allocated).
    `autocast` is the dtype the forward pass runs in (None: float32)."""
    n = count_weights(model_config)
    gradients, moments = FLOAT32, ADAMW_MOMENTS * FLOAT32
    ema = EMA_BYTES_PER_WEIGHT if config.ema > 0 else 0
    return MemoryEstimate(
        weights=n,
        state_bytes=n * (FLOAT32 + gradients + moments + ema),
        working_bytes=n * WORKING_BYTES_PER_WEIGHT,
        activation_bytes=activation_bytes(model_config, config, autocast),
    )


# ---- what the device has ---------------------------------------------------------------------------------
MEMINFO = Path("/proc/meminfo")
PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a huge number (9223372036854771712)


def available_bytes(device: torch.device) -> int | None:
    """Memory a new run can still take on `device`; None where it cannot be told (then nothing is refused).

    CPU: the kernel's MemAvailable, capped by the room left under a cgroup memory limit (a container's).
    CUDA: the GPU's free memory plus what this process's caching allocator holds unused."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != "cpu":
        return None
    known = [b for b in (meminfo_available(), cgroup_room()) if b is not None]
    return min(known, default=None)


def meminfo_available(path: Path = MEMINFO) -> int | None:
    """MemAvailable from /proc/meminfo in bytes: free memory plus the caches the kernel can reclaim."""
    try:
        for line in path.read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB (KiB)
    except (OSError, ValueError, IndexError):
        pass
    return None


def cgroup_room(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int | None:
    """Bytes left under the tightest memory limit of this process's cgroup and its ancestors (v2, or v1's
    memory controller); None without a limit. Inactive file cache counts as free: the kernel reclaims it
    before it kills anything."""
    if (root / "cgroup.controllers").is_file():  # cgroup v2 alone (a hybrid setup keeps memory on v1)
        mount, path = root, _own_cgroup(proc_cgroup, "")
        files = ("memory.max", "memory.current", "inactive_file")
    else:
        mount, path = root / "memory", _own_cgroup(proc_cgroup, "memory")
        files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
    rooms = [room for folder in _cgroup_folders(mount, path) if (room := _room(folder, *files)) is not None]
    return min(rooms, default=None)


def _own_cgroup(proc_cgroup: Path, controller: str) -> str:
    """This process's path in the hierarchy holding `controller` ("" for the v2 one), from /proc."""
    try:
        lines = proc_cgroup.read_text(encoding="utf-8").splitlines()
    except OSError:
        return "/"
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controller in controllers.split(","):  # the v2 line's list is empty: [""]
            return path
    return "/"


def _cgroup_folders(mount: Path, path: str) -> list[Path]:
    """The cgroup's folder and its ancestors up to the mount; just the mount where the folder is not
    visible (inside a container the mount is the container's own cgroup)."""
    relative = PurePosixPath(path.lstrip("/"))
    own = mount / relative
    if not own.is_dir():
        return [mount]
    return [own, *(mount / parent for parent in relative.parents)]


def _room(folder: Path, limit_file: str, usage_file: str, inactive_key: str) -> int | None:
    limit = _read_int(folder / limit_file)
    if limit is None or limit >= CGROUP_UNLIMITED:  # v2 writes "max", v1 a huge number
        return None
    usage = _read_int(folder / usage_file)
    if usage is None:
        return limit
    usage -= _stat(folder / "memory.stat", inactive_key)
    return max(0, limit - max(0, usage))


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def _stat(path: Path, key: str) -> int:
    """One `key value` line of a memory.stat file; 0 when absent."""
    try:
        for line in path.read_text(encoding="ascii").splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


# ---- the check -------------------------------------------------------------------------------------------
def check_training_fits(model_config: ModelConfig, config: TrainConfig, device: torch.device) -> None:
    """Raise OutOfMemory when the run cannot fit on `device`, before the model is built: a model too
    large would otherwise grow until the kernel kills it. Where the memory cannot be read, accept."""
    model_config.check()  # an impossible model gets its own message, not a failed estimate
    available = available_bytes(device)
    if available is None:
        return
    need = estimate_training(model_config, config, pick_autocast(config.precision, device))
    if need.total > SAFE_SHARE * available:
        setting = "hidden" if need.mostly_weights else "batch_size"
        raise OutOfMemory(_refusal(model_config, config, need, available, device), setting=setting)


def _refusal(
    model_config: ModelConfig, config: TrainConfig, need: MemoryEstimate, available: int, device: torch.device
) -> str:
    """One line: the estimate, its parts, what the device has, and the settings that shrink the largest."""
    c = model_config
    ema = ["the EMA copy"] if config.ema > 0 else []
    parts = ["weights", "gradients", "AdamW moments", *ema, "a working copy"]
    held = ", ".join(parts[:-1]) + " and " + parts[-1]
    window = (
        f"a {config.batch_size}x{config.seq_len} window's activations {format_bytes(need.activation_bytes)}"
    )
    where = "this GPU has" if device.type == "cuda" else "this machine has"
    flags = ("hidden", "layers", "batch_size") if need.mostly_weights else ("batch_size", "seq_len", "hidden")
    advice = f"{setting_ref(flags[0])}, {setting_ref(flags[1])} or {setting_ref(flags[2])}"
    return (
        f"a {c.layers}x{c.hidden} {CELL_NAMES[c.cell]} needs about {format_bytes(need.total)} to train "
        f"({_count(need.weights)} weights: {held} {format_bytes(need.per_weight_bytes)}, {window}) and "
        f"{where} "
        f"{format_bytes(available)} available; use a smaller {advice}"
    )


def _count(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return f"{n:,}"
