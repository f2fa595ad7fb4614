"""The Textual app driving the real engine (tiny model, real Hopper), its panels'
helpers, snapshot images of the main layouts, and the CLI's terminal / no-terminal paths."""

import asyncio
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import fcntl
import time
from pathlib import Path

import numpy as np
import pytest
from textual.widgets import Input

from conftest import write_tiny_config
from tt_core.runs import checkpoint as ckpt
from tt_core.config import PlanConfig, PlanningPatch, load_config
from tt_core.jobs.factories import eval_job, train_job
from tt_core.jobs.thread import JobThread
from tt_core.events import EventBus, Message
from tt_core.events import BeamSnapshot, BeamStep
from tt_core.train.trainer import Trainer
from tt_tui.app import TTApp
from tt_tui.beams import read_snapshot
from tt_tui.demo import demo_app, eval_events, settle, train_events
from tt_tui.plan_edit import check_plan_edit
from tt_tui.resources import ModelDims
from tt_tui.series import DecimatedSeries
from tt_tui.widgets.attention_map import AttentionPanel
from tt_tui.widgets.beam_tree import BeamTreePanel
from tt_tui.widgets.help_screen import HelpScreen
from tt_tui.widgets.loss_plot import LossPanel
from tt_tui.widgets.plan_controls import PlanControls

MB = 2**20


async def wait_for(pilot, condition, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def wait_exit(app, timeout=60.0):
    deadline = time.monotonic() + timeout
    while app.return_code is None:
        if time.monotonic() > deadline:
            raise AssertionError("the app did not exit")
        await asyncio.sleep(0.05)


def logged(app, text):
    return any(text in line for line in app.event_log.lines_text)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    cfg = load_config(write_tiny_config(root / "c.yaml", root / "runs", max_steps=40))
    return Trainer(cfg, EventBus()).run()


# ---------------------------------------------------------------- training in the app


def test_training_in_the_app_plots_saves_on_s_and_stops_cleanly_on_q(tmp_path):
    cfg = load_config(write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=100_000,
                                        epochs=1000, log_every=1, checkpoint_every=100_000))
    cfg.train.device = "cpu"
    engine = JobThread(train_job(cfg))
    app = TTApp(engine, "train")

    async def drive():
        async with app.run_test(size=(100, 30)) as pilot:
            loss = app.query_one(LossPanel)
            await wait_for(pilot, lambda: len(loss.series) >= 3, what="loss points")
            await pilot.press("s")
            await wait_for(pilot, lambda: logged(app, "checkpoint step"), what="checkpoint")
            saved = [line for line in app.event_log.lines_text if "checkpoint step" in line]
            await pilot.press("l")  # learning-rate view, then back
            assert loss.view == "lr"
            await pilot.press("l")
            await pilot.press("q")
            await wait_exit(app)
            return saved

    saved = asyncio.run(drive())
    assert app.return_code == 0 and not engine.running
    assert logged(app, "training stopped at step")
    run_dir = Path(engine.result)
    loaded = ckpt.load_run(run_dir)  # q saved the last step; everything loads
    assert loaded.step >= int(saved[0].split()[2].rstrip(":"))
    assert loaded.step == ckpt.latest_step(ckpt.RunFiles(run_dir))


def test_a_worker_exception_is_shown_the_app_stays_responsive_and_exits_non_zero(tmp_path):
    def job(bus, controls):
        bus.emit(Message("about to fail"))
        raise RuntimeError("boom in the worker")

    app = TTApp(JobThread(job), "train", screenshot_dir=tmp_path)

    async def drive():
        async with app.run_test() as pilot:
            await wait_for(pilot, lambda: app.failed is not None, what="Failed event")
            assert logged(app, "boom in the worker")
            assert any(sev == "error" and "boom in the worker" in msg for sev, msg in app.notices)
            await pilot.press("question_mark")  # still answers keys
            assert isinstance(app.screen, HelpScreen)
            await pilot.pause(0.3)  # the drain timer keeps running under the help screen
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)
            await pilot.press("S")  # SVG screenshot
            assert app.last_screenshot and Path(app.last_screenshot).is_file()
            assert Path(app.last_screenshot).parent == tmp_path
            await pilot.press("q")
            await wait_exit(app)

    asyncio.run(drive())
    assert app.return_code == 1


# ---------------------------------------------------------------- planning in the app


def test_eval_in_the_app_edits_reach_the_planner_bad_edits_are_refused_r_records_and_g_saves_a_plan(tiny_run, tmp_path):
    gifs = tmp_path / "gifs"
    engine = JobThread(eval_job(tiny_run, PlanningPatch.checked({"eval.episodes": 2, "eval.max_steps": 300}), "cpu",
                             record_dir=gifs, snapshots=True))
    engine.controls.set_paused(True)  # hold the first step until the edits are in
    sent = []
    request = engine.controls.request_plan_params
    engine.controls.request_plan_params = lambda **p: (sent.append(p), request(**p))
    app = TTApp(engine, "eval", available=lambda: 1 * MB)

    async def edit(pilot, value):
        await pilot.press("e")
        field = app.query_one("#plan-beam_width", Input)
        assert app.focused is field
        field.value = ""
        await pilot.press(*value, "enter")

    async def drive():
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.envs == 2, what="EvalStarted")
            await edit(pilot, "0")  # out of range: refused in the UI, nothing sent
            assert sent == [] and logged(app, "width: 0 must be in [1, 4096]")
            await edit(pilot, "4096")  # the KV cache would not fit in 1 MB: refused with numbers
            assert sent == [] and logged(app, "only 1.0 MB is available")
            await edit(pilot, "8")
            assert sent == [{"beam_width": 8}]
            await pilot.press("escape", "r", "g", "p")  # record env 0, save its next plan, resume
            await wait_for(pilot, lambda: logged(app, "planning: beam_width=8"), what="planner answer")
            assert app.query_one(PlanControls).current.beam_width == 8
            await wait_for(pilot, lambda: logged(app, "recording env 0"), what="recording start")
            await wait_for(pilot, lambda: logged(app, "plan of env 0 at step 0 beside the simulator"),
                           what="plan GIF written")
            await pilot.press("r")
            await wait_for(pilot, lambda: logged(app, "recorded env 0"), what="GIF written")
            tree = app.query_one(BeamTreePanel)
            await wait_for(pilot, lambda: tree.shown is not None, what="beam tree")
            await pilot.press("right_square_bracket", "f")
            assert tree.env == 1 and tree.frozen and app.selected_env == 1
            await wait_for(pilot, lambda: len(tree.history.get(0, ())) >= 2, what="two plans")
            await pilot.click("#env-table", offset=(2, 1))  # mouse: the row of env 0
            assert app.selected_env == 0 and tree.env == 0 and not tree.frozen
            await pilot.press("left")  # freezes and steps back one plan
            assert tree.frozen and tree.index == len(tree.history[0]) - 2
            await wait_for(pilot, lambda: not engine.running, timeout=120, what="eval end")
            await pilot.press("q")
            await wait_exit(app)

    asyncio.run(drive())
    assert app.return_code == 0
    assert list(gifs.glob("*episode000.gif")), "r then r wrote no GIF"
    assert len(list(gifs.glob("*episode000-plan-step*.gif"))) == 1, "g wrote no plan GIF"
    assert logged(app, "evaluation done")


def test_a_shows_the_selected_envs_attention_maps_live_and_o_switches_the_planners_objective(tiny_run):
    """The engine computes maps only for the env the shown panel asks for; L and H choose
    the layer and head. o asks the planner to rank by likelihood."""
    engine = JobThread(eval_job(tiny_run, PlanningPatch.checked({"eval.episodes": 2, "eval.max_steps": 300}), "cpu"))
    engine.controls.set_paused(True)
    app = TTApp(engine, "eval")

    async def drive():
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.envs == 2, what="EvalStarted")
            attention = app.query_one(AttentionPanel)
            assert engine.controls.attention_env is None  # hidden: no maps are computed
            await pilot.press("o")  # while paused: the planner takes it at its next plan
            assert logged(app, "requested objective=likelihood")
            await pilot.press("right_square_bracket", "a", "p")
            assert engine.controls.attention_env == 1
            await wait_for(pilot, lambda: logged(app, "planning: objective=likelihood"), what="the planner's answer")
            assert app.query_one(PlanControls).current.objective == "likelihood"
            await wait_for(pilot, lambda: attention.latest is not None, what="attention maps")
            assert attention.latest.env_index == 1
            layers, heads = attention.latest.weights.shape[:2]
            await pilot.press("L", "H")
            assert (attention.map_layer, attention.map_head) == (1 % layers, 1 % (heads + 1))
            await pilot.press("left_square_bracket")
            assert engine.controls.attention_env == 0
            await pilot.press("a")
            assert engine.controls.attention_env is None
            await pilot.press("q")
            await wait_exit(app)

    asyncio.run(drive())


# ---------------------------------------------------------------- helpers


def test_decimated_series_stays_bounded_and_even_over_a_million_points():
    s = DecimatedSeries(["loss"], max_points=1000)
    for i in range(1_000_000):
        s.append(i, [float(i)])
    xs = s.xs()
    assert len(xs) <= 1001 and xs[0] == 0 and xs[-1] == 999_999
    gaps = {b - a for a, b in zip(xs[:-2], xs[1:-1])}
    assert gaps == {s.stride}


def test_real_beam_snapshot_is_read_with_the_chosen_path():
    steps = [BeamStep(np.zeros(3, int), np.array([1.0, 3.0, 2.0]), np.zeros((3, 2)),
                      np.array([0.1, 0.3, 0.2]), np.array([9.0, 8.0, 7.0])),
             BeamStep(np.array([1, 1, 2]), np.array([5.0, 4.0, 6.0]), np.ones((3, 2)),
                      np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]))]
    view = read_snapshot(BeamSnapshot(steps, chosen=[2, 2]))
    assert view.parents == [[0, 0, 0], [1, 1, 2]] and view.chosen == [2, 2]
    assert view.rewards[1] == [1.0, 2.0, 3.0] and view.actions[1][0] == [1.0, 1.0]
    assert view.values[0] == [9.0, 8.0, 7.0] and view.scores[1] == [5.0, 4.0, 6.0]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_the_cache_size_the_engine_reports_is_what_the_planner_allocates(tiny_run, dtype):
    import torch

    from tt_core.plan.agent import load_agent
    from tt_core.model.cache_size import cascade_cache_bytes, kv_dtype
    from tt_core.plan.beam_search import BeamPlanner

    agent = load_agent(tiny_run, torch.device("cpu"))
    plan = replace_plan(agent.config.plan, beam_width=6, sample_expand=3, dtype=dtype)
    planner = BeamPlanner(agent.model, agent.discretizer, plan,
                          dtype=torch.bfloat16 if dtype == "bf16" else None)
    E, T = 2, agent.observation_dim + agent.action_dim + 2
    planner.plan(torch.zeros(E, 1, T, dtype=torch.long), torch.zeros(E, agent.observation_dim, dtype=torch.long))
    gpt = agent.model.cfg
    assert cascade_cache_bytes(E, 6, 3, n_layers=gpt.n_layers, embedding_dim=gpt.embedding_dim,
                               block_tokens=gpt.block_size, action_dim=gpt.action_dim,
                               dtype=kv_dtype(dtype, "cpu")) == planner.cache.nbytes


def replace_plan(plan, **kw):
    from dataclasses import replace

    return replace(plan, **kw)


def test_plan_edit_checks_numbers_ranges_and_memory():
    dims = ModelDims(n_layers=4, embedding_dim=128, transition_dim=25, seq_len=10, action_dim=6)
    current = PlanConfig(beam_width=128, beam_steps=15, beam_context=5, sample_expand=2)
    ok = check_plan_edit({"beam_width": "64"}, current, 10, dims, lambda: 64 * 2**30)
    assert ok.params == {"beam_width": 64} and ok.error is None
    assert check_plan_edit({"beam_width": "x"}, current, 10, dims, lambda: None).params is None
    assert "must be in [1, 4096]" in check_plan_edit({"beam_width": "5000"}, current, 10, dims, lambda: None).error
    big = check_plan_edit({"beam_width": "4096"}, current, 1000, dims, lambda: 2**30)
    assert big.params is None and "only 1.0 GB is available" in big.error


def test_the_edit_estimate_counts_the_cache_in_the_dtype_the_engine_holds_it():
    """A bf16 planner keeps fp32 keys and values on a CPU and bf16 ones on a GPU
    (kv_dtype): the panel's estimate follows the engine's device."""
    dims = ModelDims(n_layers=4, embedding_dim=128, transition_dim=25, seq_len=10, action_dim=6)
    estimate = {}
    for dtype in ("fp32", "bf16"):
        current = PlanConfig(beam_width=32, dtype=dtype)
        for device in ("cpu", "cuda:0"):
            edit = check_plan_edit({"beam_width": "64"}, current, 10, dims, lambda: None, device=device)
            estimate[dtype, device] = edit.estimate_bytes
    assert estimate["bf16", "cpu"] == estimate["fp32", "cpu"] == estimate["fp32", "cuda:0"]
    assert estimate["bf16", "cuda:0"] * 2 == estimate["fp32", "cuda:0"]


def test_the_edit_panel_takes_its_bounds_from_the_config():
    """One place for the bounds: the panel's input limits are tt_core.config.LIMITS."""
    from tt_core.config import LIMITS
    from tt_tui.plan_edit import EDITABLE, edit_bounds

    for key in EDITABLE:
        lo, hi = edit_bounds(key)
        assert lo in LIMITS[f"plan.{key}"] and hi in LIMITS[f"plan.{key}"] and hi + 1 not in LIMITS[f"plan.{key}"]
    dims = ModelDims(n_layers=1, embedding_dim=8, transition_dim=5, seq_len=2, action_dim=1)
    refused = check_plan_edit({"sample_expand": "257"}, PlanConfig(), 1, dims, lambda: None)
    assert refused.error == f"expand: 257 must be {LIMITS['plan.sample_expand']}" == "expand: 257 must be in [1, 256]"


# ---------------------------------------------------------------- snapshots (deterministic events)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_layout_snapshot(snap_compare, mode, size):
    events = train_events() if mode == "train" else eval_events()
    assert snap_compare(demo_app(mode, events), terminal_size=size, run_before=settle)


def test_prediction_error_panel_snapshot(snap_compare):
    """v swaps the beam tree for the plans' prediction error against the step into the plan."""
    assert snap_compare(demo_app("eval", eval_events()), terminal_size=(120, 40),
                        run_before=settle, press=["v"])


def test_attention_panel_snapshot(snap_compare):
    """a swaps the beam tree for the model's attention; L and H choose the layer and head."""
    assert snap_compare(demo_app("eval", eval_events()), terminal_size=(120, 40),
                        run_before=settle, press=["a", "L", "H"])


def test_help_screen_snapshot(snap_compare):
    assert snap_compare(demo_app("eval", eval_events()), terminal_size=(80, 24),
                        run_before=settle, press=["question_mark"])


# ---------------------------------------------------------------- the command, with and without a terminal


def test_without_a_terminal_train_falls_back_to_headless_output(tmp_path):
    config = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=4)
    r = subprocess.run([sys.executable, "-m", "tt_tui.cli", "train", str(config)],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert "training finished at step 4" in r.stderr
    assert "\x1b[?1049h" not in r.stdout + r.stderr  # never switched to the app's screen


def _in_a_terminal(*args: str, timeout: float = 60, interact=None) -> tuple[int, bytes]:
    """Run `tt-tui ARGS` on a real 100x30 pseudo-terminal; (exit code, everything it
    wrote). `interact(output so far, fd)` may type into it after each read."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(sys.executable, [sys.executable, "-m", "tt_tui.cli", *args],
                   {**os.environ, "TERM": "xterm-256color"})
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    out, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                out += os.read(fd, 65536)
            except OSError:
                pass
        if interact is not None:
            interact(out, fd)
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            os.close(fd)
            return os.waitstatus_to_exitcode(st), out
    os.kill(pid, 9)
    raise AssertionError(f"did not exit: {out[-2000:]!r}")


def test_in_a_terminal_train_opens_the_app_and_ctrl_c_saves_and_exits_0(tmp_path):
    config = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=100_000, epochs=1000)
    sent = []

    def ctrl_c_once_training_shows(out: bytes, fd: int) -> None:
        if not sent and b"epoch" in out:  # the first logged step is on screen
            time.sleep(0.5)
            os.write(fd, b"\x03")  # Ctrl+C: a key in the app's raw mode, same as q
            sent.append(True)

    status, out = _in_a_terminal("train", str(config), timeout=120, interact=ctrl_c_once_training_shows)
    assert sent and status == 0, out[-2000:]
    assert b"\x1b[?1049h" in out  # the app used the alternate screen
    runs = list((tmp_path / "runs").iterdir())
    assert ckpt.load_run(runs[0]).step >= 1


def test_the_ui_never_imports_torch():
    code = ("import sys, tt_tui.app, tt_tui.demo, tt_tui.cli.commands; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_resizing_the_terminal_relayouts_for_small_and_big_screens():
    app = demo_app("eval", eval_events())

    async def drive():
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            main = app.query_one("#main")
            assert main.has_class("-short") and main.has_class("-narrow")
            await pilot.resize_terminal(160, 50)
            await pilot.pause(0.2)
            assert not main.has_class("-short") and not main.has_class("-narrow")
            assert app.query_one("#returns").spark_len == 16
            await pilot.press("q")
            await wait_exit(app)

    asyncio.run(drive())


@pytest.mark.parametrize("args, code, line", [
    (("eval", "eval.max_steps=300"), 2,
     "error: eval.max_steps=300: eval takes flags, not dotted overrides (here: --max-steps 300)"),
    (("record", "plan.beam_width=8"), 2,
     "error: plan.beam_width=8: record takes flags, not dotted overrides (here: --beam-width 8)"),
    (("eval", "no-such-run"), 3, "error: no-such-run: no such run directory"),
    (("eval", "--beam-width", "0"), 2, "error: plan.beam_width: 0 must be in [1, 4096]"),
])
def test_argument_errors_end_on_the_command_line_before_the_app_opens(args, code, line):
    status, out = _in_a_terminal(*args)
    assert status == code
    assert b"\x1b[?1049h" not in out  # the app's screen never opened
    assert line in out.decode(errors="replace")


# ---------------------------------------------------------------- tt-tui show


def _files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_show_replays_a_finished_run_with_its_beam_trees_and_leaves_it_untouched(tmp_path):
    from tt_core.events import TrainStep
    from tt_core.runs.reader import read_metrics
    from tt_core.runs.snapshots import SNAPSHOTS_FILE
    from tt_core.jobs.show import show_job

    cfg = load_config(write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=20,
                                        log_every=5, eval_every=10))
    run = Trainer(cfg, EventBus()).run()
    assert (run / SNAPSHOTS_FILE).exists()  # evaluations keep their last beam trees
    before = _files(run)
    steps = read_metrics(run / "metrics.jsonl").of(TrainStep)
    engine = JobThread(show_job(run))
    app = TTApp(engine, "train", read_only=True, screenshot_dir=tmp_path)

    async def drive():
        async with app.run_test(size=(120, 40)) as pilot:
            loss = app.query_one(LossPanel)
            await wait_for(pilot, lambda: len(loss.series) == len(steps), what="the whole loss history")
            await wait_for(pilot, lambda: len(app.returns.history) == 2, what="both evaluations")
            await wait_for(pilot, lambda: app.beams.current() is not None, what="a beam tree")
            assert logged(app, "training finished at step 20")
            await pilot.press("p")  # read-only: no pause, no save
            await pilot.press("s")
            assert not engine.controls.paused and not engine.controls.take_save_request()
            await pilot.press("q")
            await wait_exit(app)

    asyncio.run(drive())
    assert app.return_code == 0 and not engine.running
    assert _files(run) == before  # nothing written, nothing touched


def test_show_follows_a_run_that_is_still_training(tmp_path):
    import subprocess
    import sys

    from tt_core.jobs.show import show_job

    config = write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=100_000, epochs=1000,
                               log_every=2, checkpoint_every=100_000)
    trainer = subprocess.Popen([sys.executable, "-m", "tt_tui.cli", "train", str(config), "--headless"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "runs").glob("*/metrics.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.2)
        (run,) = [p.parent for p in (tmp_path / "runs").glob("*/metrics.jsonl")]
        app = TTApp(JobThread(show_job(run)), "train", read_only=True)

        async def drive():
            async with app.run_test(size=(100, 30)) as pilot:
                loss = app.query_one(LossPanel)
                await wait_for(pilot, lambda: len(loss.series) >= 1, what="the first points")
                seen = len(loss.series)
                await wait_for(pilot, lambda: len(loss.series) >= seen + 3, what="points logged after opening")
                await pilot.press("q")
                await wait_exit(app)

        asyncio.run(drive())
        assert trainer.poll() is None  # the training run went on, untouched by the view
    finally:
        trainer.kill()
        trainer.wait(60)


def test_show_follows_a_resumed_run_whose_metrics_were_rewritten_shorter(tmp_path):
    from tt_core.runs.metrics import truncate_after_step
    from tt_core.jobs.show import show_job

    cfg = load_config(write_tiny_config(tmp_path / "c.yaml", tmp_path / "runs", max_steps=20,
                                        log_every=2, checkpoint_every=10))
    run = Trainer(cfg, EventBus()).run()
    app = TTApp(JobThread(show_job(run)), "train", read_only=True)

    async def drive():
        async with app.run_test(size=(100, 30)) as pilot:
            loss = app.query_one(LossPanel)
            await wait_for(pilot, lambda: len(loss.series) == 10, what="the first history")
            truncate_after_step(run / "metrics.jsonl", 10)  # what a resume at step 10 does
            with open(run / "metrics.jsonl", "a") as f:  # and then logs again
                f.write('{"event": "Message", "text": "resumed here", "level": "info", "time": 0}\n')
            await wait_for(pilot, lambda: logged(app, "resumed here"), what="the rewritten file's new line")
            await pilot.press("q")
            await wait_exit(app)

    asyncio.run(drive())
    assert app.return_code == 0


def test_the_bindings_the_help_screen_and_the_docs_table_all_come_from_one_key_list():
    """tt_tui/keys.py is the one source: every key there is bound (or Textual's own), and
    the docs/app.md key table names exactly those keys."""
    import re

    from tt_tui.keys import KEYS, shown

    bound = {(b.key, b.action) for b in TTApp.BINDINGS}
    listed = {(key, k.action) for k in KEYS if k.action for key in k.keys}
    assert bound == listed
    doc = (Path(__file__).resolve().parents[1] / "docs" / "app.md").read_text()
    table = doc[doc.index("| key | action |"):].split("\n\n")[0]
    in_docs = {key for row in table.splitlines()[2:] for key in re.findall(r"`([^`]+)`", row.split("|")[1])}
    assert in_docs == {shown(key) for k in KEYS for key in k.keys}
