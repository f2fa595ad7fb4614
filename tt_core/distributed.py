"""torch.distributed for tt-tui: which rank this process is, and the few collectives the
trainer needs. Processes are started by `torchrun` (or `tt-tui ... --nproc N`, which runs
torch.distributed.run); a process started any other way is a world of one.

Two process groups: the default one (nccl on CUDA, gloo on CPU) carries DDP's gradients
every step; a CPU gloo group with a long timeout carries the control traffic (barriers,
the run directory, stop requests, evaluation results), where a rank may wait a long time
for a normal reason: rank 0 collecting a dataset, paused in the app, or the slowest
rank's episodes.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Iterator, Optional

import torch
import torch.distributed as dist

from tt_core.device import resolve_device
from tt_core.errors import ConfigError, PeerLost

PEER_LOST_EXIT = PeerLost.exit_code  # a rank that stops because another rank died
CONTROL_TIMEOUT = timedelta(days=7)  # waits on the control group are waits for work, not faults


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of one job."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    control: Optional[Any] = field(default=None, compare=False)  # the CPU gloo process group

    @property
    def main(self) -> bool:
        """Rank 0 alone writes the run directory and talks to the user."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def device(self, name: str) -> torch.device:
        """`name` resolved for this rank: the GPU of its local rank where there are GPUs."""
        device = resolve_device(name)
        if self.distributed and device.type == "cuda":
            if device.index is not None:
                raise ConfigError(
                    f"--device {name}: under torchrun each process takes the GPU of its local "
                    "rank; give --device cuda"
                )
            device = torch.device("cuda", self.local_rank)
        return device

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier(group=self.control)

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Run the block on rank 0 first (collecting a dataset, writing a cache, fetching
        a model), then on the first rank of every other machine, then on the rest, so
        that nothing is fetched twice at once whether or not machines share a disk."""
        phase = 0 if self.main else 1 if self.local_rank == 0 else 2
        for _ in range(phase):
            self.barrier()
        yield
        for _ in range(2 - phase):
            self.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (a small picklable object)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on any rank (stop requests)."""
        if not self.distributed:
            return flag
        t = torch.tensor([1 if flag else 0])
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return bool(t.item())  # a CPU tensor: no device sync

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
        dist.all_gather_object(out, value, group=self.control)
        return out

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """In-place sum of `t` (on the training device) over the ranks."""
        if self.distributed:
            dist.all_reduce(t)
        return t


def check_batch_split(batch_size: int, processes: int) -> None:
    """The global batch must split evenly over the ranks (each takes an equal share)."""
    if batch_size % processes:
        raise ConfigError(f"train.batch_size: {batch_size} does not split evenly over {processes} "
                          "processes (it is the global batch)")


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def join(device_name: str) -> World:
    """Join the job torchrun started (nccl on CUDA, gloo otherwise), or a world of one."""
    if not launched_by_torchrun():
        return World()
    local = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        cuda = resolve_device(device_name).type == "cuda"
        if cuda:
            here = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
            if torch.cuda.device_count() < here:
                raise ConfigError(
                    f"{here} processes on this machine need {here} GPUs, it has "
                    f"{torch.cuda.device_count()}; start fewer (--nproc) or use --device cpu"
                )
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo")
    control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    return World(dist.get_rank(), dist.get_world_size(), local, control)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
