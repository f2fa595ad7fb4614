"""The `tt-tui` command's entry point (the console script and `python -m tt_tui.cli`).

Only the standard library is imported here: numpy and the commands (commands.py) are
loaded inside the Ctrl+C guard of `main`, so an interrupt at any moment, during typer's
and the command modules' imports included, ends in one line and exit 130, never a traceback.
"""

import signal
import sys


def main() -> None:
    """Run the command line `sys.argv[1:]`; an interrupt anywhere: "interrupted", 130."""
    try:  # from the first line: Python's own handler may raise before ours is in place
        # ours only where Python installed its own: a process started with SIGINT ignored
        # (a background job of a script) keeps ignoring it
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _interrupt)
        # numpy before torch: torch's C start-up imports numpy and swallows any error of that
        # import, a Ctrl+C included, which then is lost or leaves numpy half-imported
        # ("module 'numpy' has no attribute ..."); here it is interrupted like any import
        import numpy  # noqa: F401

        from tt_tui.cli.commands import run

        run()
    except SystemExit:  # the command is over: a Ctrl+C while Python shuts down changes nothing
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _forget_caught_interrupt()
        raise
    except BaseException as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # what follows an interrupt is not interrupted
        from tt_core.errors import caused_by_interrupt

        if not caused_by_interrupt(exc):
            raise
        _exit_interrupted()


def _interrupt(signum, frame) -> None:
    """Python's Ctrl+C (a KeyboardInterrupt), once: a second press while the first one
    unwinds would interrupt its cleanup and end in a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _exit_interrupted() -> None:
    exits = sys.modules.get("tt_tui.cli.exits")
    if exits is not None and exits.debug:  # --debug: where it was interrupted
        import traceback

        traceback.print_exc()
    print("interrupted", file=sys.stderr)
    _forget_caught_interrupt()
    sys.exit(130)


def _forget_caught_interrupt() -> None:
    """Keep the exit code we chose. CPython (3.11, 3.12) remembers a KeyboardInterrupt that
    left an exec() of a string (the code dataclasses and namedtuples generate while modules
    import) and, under `python -m`, kills the process with SIGINT at exit although we caught
    it (the probe of #27 saw -2 instead of 130); the next exec() of a string that ends
    normally clears that flag."""
    exec("pass")
