"""One line and a documented exit code for every way a command can fail.

Exit codes: 0 ok, 1 internal error (a bug: rerun with --debug for the traceback),
2 usage / config error, 3 data or checkpoint error, 130 interrupted, 141 stdout closed
by its reader (`| head`), quietly, 143 a job stopped by SIGTERM (foreground.py).
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from typing import Callable, Optional, TextIO

import typer

debug = False  # --debug: full tracebacks (set by the top-level callback in commands.py)
# the command's closing line is out (commands.run says "interrupted" for a Ctrl+C typer
# caught outside a command, which it turns into a silent exit 130)
closing_line_said = False


def one_line(text: str) -> str:
    """`text` on one line: line breaks (a server's multi-line reason, a newline pasted into
    an environment variable) become " / ", other control characters their escapes."""
    lines = [part.strip() for part in text.replace("\r", "\n").split("\n")]
    joined = " / ".join(part for part in lines if part)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in joined)


def fail(message: str, code: int) -> None:
    exit_with_line(f"error: {one_line(message)}", code)


def exit_with_line(line: str, code: int) -> None:
    """End the command with `line` on stderr and `code`."""
    global closing_line_said
    typer.echo(line, err=True)
    closing_line_said = True
    raise typer.Exit(code)


def user_errors(fn: Callable) -> Callable:
    """Turn the engine's user errors into one line + documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from tt_core.errors import PeerLost, TTError, as_user_error, caused_by_interrupt

        try:
            return fn(*args, **kwargs)
        except TTError as exc:
            if debug:
                traceback.print_exc()
            if caused_by_interrupt(exc):  # a Ctrl+C a library reported as its own error
                exit_interrupted()
            if isinstance(exc, PeerLost):
                exit_peer_lost(exc.exit_code)
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            exit_interrupted()
        except BrokenPipeError:  # before click's own handler makes it a silent exit 1
            exit_quietly_on_closed_stdout()
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # a full or read-only disk, else a bug: one line unless --debug
            if debug:
                traceback.print_exc()
            if caused_by_interrupt(exc):  # e.g. "MuJoCo is not installed": Ctrl+C during its import
                exit_interrupted()
            user = as_user_error(exc)
            if isinstance(user, PeerLost):
                exit_peer_lost(user.exit_code)
            if user is not None:
                fail(str(user), user.exit_code)
            fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)", 1)

    return wrapper


def exit_interrupted() -> None:
    """Stopped by Ctrl+C: one line, 130."""
    exit_with_line("interrupted", 130)


def exit_quietly_on_closed_stdout(stream: Optional[TextIO] = None) -> None:
    """The reader of stdout (or of `stream`, e.g. stderr in `2>&1 | head`) went away: no
    message and no second error when Python flushes at exit; 141, the shell's code for SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for closed in {sys.stdout, stream or sys.stdout}:
        try:
            os.dup2(devnull, closed.fileno())
        except (AttributeError, OSError, ValueError):  # not a real file: nothing flushes into it
            pass
    sys.exit(141)


def exit_peer_lost(code: int) -> None:
    """Leave at once and quietly: the launcher names the rank that died. A normal exit
    would tear down the collective backend's threads mid-operation and abort noisily."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
