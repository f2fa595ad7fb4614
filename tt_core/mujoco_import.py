"""Import glfw, which gymnasium's MuJoCo envs import, with Ctrl+C held back.

At import, glfw starts a second Python to read its library's version. That Python is in our
process group, so a terminal's Ctrl+C in that moment reaches it too: it dies printing "Fatal
Python error" and a traceback, and glfw, without an answer, fails with "Failed to load GLFW3
shared library" (the probe of #27 saw both under our one line). With SIGINT blocked in this
thread while glfw imports, the helper starts with it blocked as well (a signal mask survives
fork and exec) and answers; our own Ctrl+C waits and is delivered when the import is over.
"""

from __future__ import annotations

import signal
import sys


def import_glfw_shielded() -> None:
    """Import glfw once, where a Ctrl+C cannot reach its helper process."""
    if "glfw" in sys.modules:
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        import glfw  # noqa: F401
    except Exception:  # a missing or broken glfw: gymnasium says so when it imports it in turn
        pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
