"""Where a job runs and in what precision: the device (a rank's own GPU in distributed runs) and autocast."""

from __future__ import annotations

import os

import torch

from charrnn.errors import BadSetting, CharrnnError, setting_ref


def apply_threads(threads: int | None, note=None) -> int:
    """Set PyTorch's intra-op threads (None: leave its default); returns the count in force. More threads
    than cores is allowed (PyTorch runs them) with a note, since it usually slows the work down."""
    if threads is not None:
        cores = os.cpu_count() or 1
        if threads > cores and note is not None:
            note(
                f"note: --threads {threads} is more than this machine's {cores} cores; oversubscribed "
                "threads usually make PyTorch slower"
            )
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def pick_device(requested: str, local_rank: int = 0, local_world_size: int = 1) -> torch.device:
    """`auto` takes CUDA when present. In a distributed run local rank k gets GPU k of its machine."""
    if requested not in ("auto", "cpu", "cuda"):
        raise BadSetting(f"{setting_ref('device')} {requested!r}: choose auto, cpu or cuda")
    if requested == "cuda" and not torch.cuda.is_available():
        raise BadSetting(
            f"{setting_ref('device')} cuda: no CUDA GPU is available here; use --device cpu or auto"
        )
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


# CPU instruction sets that compute in bfloat16 natively (AVX512-BF16: Zen 4, Cooper Lake and later Xeons;
# AMX: Sapphire Rapids and later). Without them bf16 is emulated and measured slower than float32.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them in /proc/cpuinfo (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    return bool(NATIVE_BF16_FLAGS & (cpu_flags() if flags is None else flags))


def pick_autocast(precision: str, device: torch.device) -> torch.dtype | None:
    """bfloat16 autocast on GPUs that support it and on CPUs with native bf16 instructions (measured faster
    there: BENCHMARKS.md); float32 on other CPUs, where bf16 recurrent layers measured slower."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise BadSetting(f"{setting_ref('precision')} {precision!r}: choose auto, fp32 or bf16")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_native_bf16() else None
