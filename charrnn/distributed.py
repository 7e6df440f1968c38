"""Data-parallel runs under torchrun: the process group, this process's rank, and the few collectives the
training loop needs.

torchrun (or any launcher that sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and
MASTER_PORT) starts one process per rank; `Ranks.from_environment()` reads that environment and, for more
than one rank, joins the process group: NCCL when training on CUDA, gloo on CPUs. Without that environment
it is a world of one and every collective is a no-op, so the single-process path is unchanged.

Every collective has a timeout (CHARRNN_DIST_TIMEOUT seconds, default 120): a rank whose peer died or hangs
stops with a one-line error instead of waiting forever. The checkpoint's rank-0 writes take far less.
"""

from __future__ import annotations

import datetime
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from charrnn.errors import CharrnnError

DEFAULT_TIMEOUT = 120.0
BACKENDS = ("auto", "gloo", "nccl")
_COMMS = re.compile(r"gloo|nccl|connection (closed|reset)|timed out|processgroup|broken pipe", re.IGNORECASE)


def timeout_seconds() -> float:
    raw = os.environ.get("CHARRNN_DIST_TIMEOUT", "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        raise CharrnnError(f"CHARRNN_DIST_TIMEOUT={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise CharrnnError(f"CHARRNN_DIST_TIMEOUT={raw!r} must be above 0")
    return value


class PeerLost(CharrnnError):
    """A collective failed: another rank died, hung past the timeout, or cannot be reached."""


@dataclass
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None  # set once the process group is up

    launched: bool = False  # started by torchrun (a world of one then still runs through the process group)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or self.launched

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> Ranks:
        """This process's place in the run, from the launcher's environment (a world of one without it)."""
        if "WORLD_SIZE" not in os.environ:
            return cls()
        try:
            world = int(os.environ["WORLD_SIZE"])
            rank = int(os.environ.get("RANK", "0"))
            local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        except ValueError:
            raise CharrnnError(
                "RANK, WORLD_SIZE, LOCAL_RANK or LOCAL_WORLD_SIZE is not a whole number; start the ranks "
                "with torchrun"
            ) from None
        if world < 1 or not 0 <= rank < world or not 0 <= local_rank < local_world:
            raise CharrnnError(
                f"RANK {rank} / WORLD_SIZE {world} / LOCAL_RANK {local_rank} do not fit together; start the "
                "ranks with torchrun"
            )
        return cls(rank, world, local_rank, local_world, launched="TORCHELASTIC_RUN_ID" in os.environ)

    # ---- set-up and tear-down ----------------------------------------------------------------------------
    def join(self, device: torch.device, backend: str = "auto") -> None:
        """Join the process group (nothing for a world of one)."""
        if backend not in BACKENDS:
            raise CharrnnError(f"--backend {backend!r}: choose auto, gloo or nccl")
        if backend == "nccl" and (device.type != "cuda" or not torch.distributed.is_nccl_available()):
            raise CharrnnError(
                "--backend nccl needs CUDA GPUs (train with --device cuda on a machine with NVIDIA GPUs); "
                "use --backend gloo on CPUs"
            )
        if not self.distributed:
            return
        chosen = backend if backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(name):
                raise CharrnnError(f"WORLD_SIZE is set but {name} is not; start the ranks with torchrun")
        where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        try:
            torch.distributed.init_process_group(
                chosen,
                rank=self.rank,
                world_size=self.world_size,
                timeout=datetime.timedelta(seconds=timeout_seconds()),
            )
        except (RuntimeError, ValueError, OSError) as e:
            raise CharrnnError(
                f"rank {self.rank}: cannot join the other ranks at {where} ({_first_line(e)}); check that "
                "every rank was started with the same torchrun rendezvous and that the address is reachable"
            ) from None
        self.backend = chosen

    def leave(self) -> None:
        if self.backend is not None and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        self.backend = None

    # ---- collectives (no-ops for a world of one) ---------------------------------------------------------
    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce `tensor` in place by summing over the ranks; returns it."""
        if self.distributed:
            self._call(torch.distributed.all_reduce, tensor)
        return tensor

    def gather_rows(self, tensor: torch.Tensor, dim: int) -> torch.Tensor:
        """Every rank's `tensor` concatenated along `dim` in rank order (same shape on every rank)."""
        if not self.distributed:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        self._call(torch.distributed.all_gather, parts, tensor.contiguous())
        return torch.cat(parts, dim=dim)

    def barrier(self) -> None:
        if self.distributed:
            self._call(torch.distributed.barrier)

    def _call(self, collective, *args) -> None:
        try:
            collective(*args)
        except (RuntimeError, ValueError) as e:  # gloo and NCCL raise DistBackendError (a RuntimeError)
            raise self.peer_lost(e) from None

    def peer_lost(self, error: BaseException) -> PeerLost:
        return PeerLost(
            f"rank {self.rank}: lost contact with the other ranks ({_first_line(error)}); every rank stops; "
            "resume from the last checkpoint with --resume"
        )

    @contextmanager
    def peers_watched(self):
        """Turn a failure of the communication under way (DistributedDataParallel's gradient all-reduce
        reports a dead peer as a plain RuntimeError from backward) into PeerLost."""
        try:
            yield
        except RuntimeError as e:
            if self.distributed and (isinstance(e, torch.distributed.DistError) or _COMMS.search(str(e))):
                raise self.peer_lost(e) from None
            raise


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]
