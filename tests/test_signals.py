"""Signals (#27 case 11): Ctrl+C at any moment is exit 130 in at most one line, a Ctrl+C
that lands inside a library's import is never read as a missing package, and SIGTERM to
`train --seeds` stops every seed after it saved. Real processes, real signals."""

import signal

import pytest


def _error_of_an_interrupted_import() -> Exception:
    """What gymnasium raises when a Ctrl+C lands in `import mujoco`: pybind11 turns the
    KeyboardInterrupt into ImportError("initialization failed"), gymnasium that into
    DependencyNotInstalled (the chain the probe's "MuJoCo is not installed" came with)."""
    from gymnasium.error import DependencyNotInstalled

    try:
        try:
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as exc:
                raise ImportError("initialization failed") from exc
        except ImportError as exc:
            raise DependencyNotInstalled('MuJoCo is not installed, run `pip install "gymnasium[mujoco]"`') from exc
    except DependencyNotInstalled as exc:
        return exc


def test_an_error_is_read_as_an_interrupt_only_when_a_ctrl_c_is_in_its_chain():
    import ctypes

    from tt_core.errors import ConfigError, caused_by_interrupt

    assert caused_by_interrupt(_error_of_an_interrupted_import())
    assert caused_by_interrupt(ctypes.ArgumentError("argument 1: KeyboardInterrupt: "))  # one in a ctypes call
    try:
        try:
            raise _error_of_an_interrupted_import()
        except Exception:
            raise ConfigError("cannot make environment 'Hopper-v5': MuJoCo is not installed") from None
    except ConfigError as exc:
        assert caused_by_interrupt(exc)  # `from None` hides the chain from tracebacks, not from us
    assert not caused_by_interrupt(ImportError("No module named 'mujoco'"))
    assert not caused_by_interrupt(ctypes.ArgumentError("argument 1: TypeError: wrong type"))


def test_a_ctrl_c_inside_the_mujoco_import_of_make_env_ends_as_interrupted_not_as_not_installed(
        monkeypatch, capsys):
    import typer

    from tt_core.data import minari_io
    from tt_tui.cli.exits import user_errors

    def make(*args, **kwargs):
        raise _error_of_an_interrupted_import()

    monkeypatch.setattr(minari_io.gym, "make", make)
    with pytest.raises(typer.Exit) as exit_:
        user_errors(lambda: minari_io.make_env("Hopper-v5", None))()
    assert exit_.value.exit_code == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_a_job_whose_error_stands_for_a_ctrl_c_is_not_recorded_as_failed():
    from tt_core.events import Failed
    from tt_tui.cli.foreground import run_job

    seen = []

    class Reporter:
        def __call__(self, event):
            seen.append(event)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def job(bus, controls):
        raise _error_of_an_interrupted_import()

    try:
        with pytest.raises(KeyboardInterrupt):
            run_job(job, Reporter())
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert not [e for e in seen if isinstance(e, Failed)]
