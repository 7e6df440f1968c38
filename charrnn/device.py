"""Where a job runs and in what precision: the device (a rank's own GPU in distributed runs) and autocast."""

from __future__ import annotations

import torch

from charrnn.errors import CharrnnError


def pick_device(requested: str, local_rank: int = 0, local_world_size: int = 1) -> torch.device:
    """`auto` takes CUDA when present. In a distributed run local rank k gets GPU k of its machine."""
    if requested not in ("auto", "cpu", "cuda"):
        raise CharrnnError(f"--device {requested!r}: choose auto, cpu or cuda")
    if requested == "cuda" and not torch.cuda.is_available():
        raise CharrnnError("--device cuda: no CUDA GPU is available here; use --device cpu or auto")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    gpus = torch.cuda.device_count()
    if local_world_size > gpus:
        raise CharrnnError(
            f"{local_world_size} ranks on this machine but {gpus} GPU(s): start at most {gpus} with "
            "torchrun --nproc-per-node, or train on the CPU with --device cpu"
        )
    if local_world_size > 1 or local_rank:
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cuda")


def pick_autocast(precision: str, device: torch.device) -> torch.dtype | None:
    """bfloat16 autocast on GPUs that support it; float32 on CPUs, where bf16 RNNs measured slower."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise CharrnnError(f"--precision {precision!r}: choose auto, fp32 or bf16")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None
