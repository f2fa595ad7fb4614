"""Signals (#27 case 11): Ctrl+C at any moment is exit 130 in at most one line, a Ctrl+C
that lands inside a library's import is never read as a missing package, and SIGTERM to
`train --seeds` stops every seed after it saved. Real processes, real signals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_tiny_config
from test_cli import tt
from tt_core.data.minari_io import TEMP_PREFIX
from tt_core.runs import checkpoint as ckpt
from tt_core.runs.listing import STOPPED

EARLY = (0.0, 0.02, 0.05, 0.1, 0.2)  # seconds after the entry point's guard is in place
# `tt-tui` as the console script runs it, saying on stdout the moment main() has put its
# Ctrl+C handler in place: what comes before (the interpreter's own start, the few
# bytecodes from the script's first line to main's first) is no program's to guard, and
# a marker written before main() is called let a loaded machine land the signal there
ENTRY = """import os, signal
install = signal.signal
def marked(*args):
    previous = install(*args)
    signal.signal = install
    os.write(1, b".")
    return previous
signal.signal = marked
from tt_tui.cli import main
main()
"""


def _as_from_a_terminal() -> None:
    """In the child: SIGINT at its default, as a terminal's shell starts a command, whatever
    this test run inherited (a CI started as a background job ignores SIGINT, and Python,
    like the entry point on purpose, keeps ignoring it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupted_at(delay: float, *args) -> subprocess.CompletedProcess:
    with subprocess.Popen([sys.executable, "-c", ENTRY, *map(str, args)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, preexec_fn=_as_from_a_terminal) as proc:
        try:  # a failing check must not leave the command running (a spinning one slows every test after)
            assert proc.stdout.read(1) == "."
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _at_most_one_line(err: str) -> None:
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert len([line for line in err.splitlines() if line.strip()]) <= 1, err


@pytest.mark.parametrize("command", ["runs", "train"])
def test_ctrl_c_at_any_early_moment_is_exit_130_and_the_one_line_interrupted(command, tmp_path):
    """A Ctrl+C typer catches outside a command (while it parses) it turns into a silent
    exit 130; the probe of #27 saw that: the line must be there all the same."""
    args = ["runs", tmp_path / "none"] if command == "runs" else \
        ["train", write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs"), "--headless"]
    for delay in EARLY:
        result = _interrupted_at(delay, *args)
        finished = command == "runs" and result.returncode == 0 and "no runs under" in result.stdout
        if not finished:
            assert (result.returncode, result.stderr) == (130, "interrupted\n"), delay


LOST_CHAIN = """import os, signal, sys, time, types
def run():  # a compiled import that turns the Ctrl+C into its own error, the chain lost
    pressed = False
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(10)
    except KeyboardInterrupt:
        pressed = True
    if pressed:
        raise ImportError('PyCapsule_Import could not import module "datetime"')
commands = types.ModuleType("tt_tui.cli.commands")
commands.run = run
sys.modules["tt_tui.cli.commands"] = commands
from tt_tui.cli import main
main()
"""


def test_an_error_after_a_ctrl_c_is_that_ctrl_c_even_when_its_chain_lost_it():
    """numpy interrupted while it imports datetime raised ImportError('PyCapsule_Import could
    not import module "datetime"') with no KeyboardInterrupt in its chain: exit 1 and a
    traceback in the probe of #27."""
    result = subprocess.run([sys.executable, "-c", LOST_CHAIN], capture_output=True, text=True, timeout=60,
                            preexec_fn=_as_from_a_terminal)
    assert (result.returncode, result.stderr) == (130, "interrupted\n")


def test_a_caught_ctrl_c_keeps_exit_130_under_python_m_after_it_left_generated_code(tmp_path):
    """CPython (3.11, 3.12) remembers a KeyboardInterrupt that left an exec() of a string (the
    code dataclasses and namedtuples generate while modules import) and, under `python -m`,
    kills itself with SIGINT at exit although the program caught it: the probe of #27 saw
    exit -2 instead of 130 after a Ctrl+C during the imports."""
    (tmp_path / "caught.py").write_text(
        "import os, sys\n"
        "from tt_tui.cli import _forget_caught_interrupt\n"
        "try:\n"
        "    os.write(1, b'.')\n"
        "    exec('while True: pass')\n"
        "except KeyboardInterrupt:\n"
        "    _forget_caught_interrupt()\n"
        "    sys.exit(130)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]), str(tmp_path)]))
    with subprocess.Popen([sys.executable, "-m", "caught"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                          preexec_fn=_as_from_a_terminal) as proc:
        try:  # a failing check must not leave the busy loop running
            assert proc.stdout.read(1) == b"."
            time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=60) == 130
        finally:
            proc.kill()


GLFW_HELPER_TARGET = """import signal, sys
pressed = []
signal.signal(signal.SIGINT, lambda *_: pressed.append(1))
print("ready", flush=True)
from tt_core.mujoco_import import import_glfw_shielded
import_glfw_shielded()
import glfw.library
print(glfw.library.glfw is not None, len(pressed) > 0, flush=True)
"""


def test_ctrl_c_presses_while_glfw_imports_never_reach_its_helper_python():
    """glfw starts a second Python at import to read its library's version; a terminal's
    Ctrl+C (sent to the whole process group) killed it mid-start: "Fatal Python error" under
    our one line, then "Failed to load GLFW3 shared library" (the probe of #27). Presses
    are sent every 3 ms through the whole import: the helper answers, stderr stays empty,
    and the importing process still gets the presses once glfw is in."""
    proc = subprocess.Popen([sys.executable, "-c", GLFW_HELPER_TARGET], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, text=True)
    assert proc.stdout.readline() == "ready\n"
    while proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            break
        time.sleep(0.003)
    out, err = proc.communicate(timeout=60)
    assert (out, err) == ("True True\n", "")


def _pids(runs: Path) -> dict[str, int]:
    """Each seed's training process, from its run's heartbeat."""
    return {p.parent.name: json.loads(p.read_text())["pid"] for p in runs.glob("*/heartbeat.json")}


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_to_a_seeds_launcher_stops_and_saves_every_seed_then_exits_143(tmp_path):
    runs = tmp_path / "runs"
    cfg = write_tiny_config(tmp_path / "c.yaml", runs, max_steps=100_000, epochs=10_000, checkpoint_every=20)
    proc = subprocess.Popen([sys.executable, "-m", "tt_tui.cli", "train", cfg, "train.group=t", "--seeds", "2",
                             "--parallel", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while len(list(runs.glob("t-seed*/latest.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)  # both seeds are training: each has saved a checkpoint
    pids = _pids(runs)
    assert sorted(pids) == ["t-seed0", "t-seed1"]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=240)
    try:
        assert proc.returncode == 143, err
        _at_most_one_line(err)
        assert f"group t: stopped by SIGTERM; seed(s) 0, 1 stopped and saved; resume with tt-tui train " \
               f"--resume {runs}/t-seed<seed>" in err
        assert out.count("SIGTERM: stopping after this step") == 2  # each seed was told once
        assert not [name for name, pid in pids.items() if _alive(pid)]  # no orphan: each stopped itself
    finally:
        for pid in pids.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    listed = tt("runs", runs, "--json")
    states = sorted((Path(r["path"]).name, r["state"]) for r in json.loads(listed.stdout))
    assert states == [("t-seed0", STOPPED), ("t-seed1", STOPPED)]  # not crashed, not running
    for seed in ("t-seed0", "t-seed1"):
        saved = ckpt.load_run(runs / seed).step
        assert f"[seed {seed[-1]}] training stopped at step {saved};" in out  # saved where it stopped
    resumed = tt("train", "--resume", runs / "t-seed0", f"train.max_steps={ckpt.load_run(runs / 't-seed0').step + 2}",
                 "--headless")
    assert resumed.returncode == 0, resumed.stderr


def test_ctrl_c_while_a_seeds_launcher_collects_its_dataset_is_an_interrupt_not_a_missing_package(
        tmp_path, monkeypatch):
    minari = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari))
    cfg = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs")
    cfg.write_text(cfg.read_text().replace("steps: 400", "steps: 200000"))  # still collecting when signalled
    for delay in (0.0, 0.02, 0.05, 0.1, 0.3):  # the imports of gymnasium's MuJoCo env, its creation, its steps
        proc = subprocess.Popen([sys.executable, "-m", "tt_tui.cli", "train", cfg, "--seeds", "2"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_as_from_a_terminal)
        for line in proc.stdout:
            if "collecting" in line:
                break
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, (delay, err)
        _at_most_one_line(err)
        assert "stopped while collecting" in err and "not installed" not in err, (delay, err)
        assert not list(minari.glob(f"{TEMP_PREFIX}*")) and not (minari / "test").exists()
        assert not (tmp_path / "runs").exists()  # no seed started


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
