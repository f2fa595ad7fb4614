"""`--nproc N`: this command again in N processes on this machine, through
torch.distributed.run (what `torchrun --standalone --nproc-per-node N` does)."""

from __future__ import annotations

import os
import signal
import sys

import typer

from tt_tui.cli.exits import fail

SHUTDOWN_GRACE_S = 600  # ranks get this long to save after a Ctrl+C (torchrun's default: 30 s)


def _argv_without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip or arg.startswith("--nproc="):
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        out.append(arg)
    return out


def launch_local(nproc: int) -> None:
    """Run this command line (less --nproc) in `nproc` ranks. Each rank prints its own
    errors; a rank that dies stops the others, and this says which one, in one line."""
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from tt_core.threads import SHARE_ENV, choose_threads

    for name in list(logging.root.manager.loggerDict):  # the launcher's notices: our own lines instead
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    # the ranks share the cores: each computes with its share (tt_core/threads.py), and
    # OMP_NUM_THREADS says the same so torchrun does not set 1 and warn
    os.environ[SHARE_ENV] = str(nproc)
    os.environ.setdefault("OMP_NUM_THREADS", str(choose_threads()[0]))
    args = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", f"--shutdown-timeout={SHUTDOWN_GRACE_S}",
         "--module", "tt_tui.cli", *_argv_without_nproc(sys.argv[1:])]
    )
    try:
        run(args)
    except SignalException as exc:  # Ctrl+C: forwarded to every rank, which stop after a checkpoint
        if exc.sigval != signal.SIGINT:
            raise typer.Exit(128 + int(exc.sigval))
    except ChildFailedError as exc:
        _report_failed_rank(exc)


def _report_failed_rank(exc) -> None:
    """One line for the rank that failed first (a rank that only lost its peers is not
    the cause), then the exit code it gave."""
    from tt_core.distributed import PEER_LOST_EXIT

    failures = sorted(exc.failures.items(), key=lambda kv: kv[1].timestamp)
    cause = next(((r, f) for r, f in failures if f.exitcode != PEER_LOST_EXIT), None)
    if cause is None:
        fail("the ranks lost contact with each other (a network fault?); the newest checkpoint "
             "in the run directory is complete", PEER_LOST_EXIT)
    rank, failure = cause
    if failure.exitcode > 0:  # the rank said what went wrong itself, in one line
        raise typer.Exit(failure.exitcode)
    try:
        how = f"killed by {signal.Signals(-failure.exitcode).name}"
    except ValueError:
        how = f"ended with code {failure.exitcode}"
    fail(f"rank {rank} (pid {failure.pid}) {how}; the other ranks were stopped "
         "(the newest checkpoint in the run directory is complete)", PEER_LOST_EXIT)
