"""torch.distributed for tt-tui: which rank this process is, and the few collectives the
trainer needs. Processes are started by `torchrun` (or `tt-tui ... --nproc N`, which runs
torch.distributed.run); a process started any other way is a world of one.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist

from tt_core.device import resolve_device
from tt_core.errors import PeerLost


PEER_LOST_EXIT = PeerLost.exit_code  # a rank that stops because another rank died


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of one job."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 alone writes the run directory and talks to the user."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def device(self, name: str) -> torch.device:
        """`name` resolved for this rank: one GPU per local rank where there are GPUs."""
        device = resolve_device(name)
        if self.distributed and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank)
        return device

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (collecting a dataset, writing a cache), the others
        after it, reading what it wrote."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (a small picklable object)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when `flag` is true on any rank (stop requests)."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def share(self, n: int) -> range:
        """This rank's contiguous block of `n` items (episodes): sizes differ by at most one,
        rank 0 holds the first."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return range(start, start + base + (self.rank < extra))

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value` (a small picklable object), in rank order, on every rank."""
        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, value)
        return out

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """In-place sum of `t` over the ranks."""
        if self.distributed:
            dist.all_reduce(t)
        return t


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def join(device_name: str) -> World:
    """Join the job torchrun started (nccl on CUDA, gloo otherwise), or a world of one."""
    if not launched_by_torchrun():
        return World()
    if not dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", 0))
        cuda = resolve_device(device_name).type == "cuda"
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
