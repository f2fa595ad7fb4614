"""How a command runs a job: in the foreground with a headless reporter (pipes, CI,
torchrun ranks), or under the Textual app with the job on its own thread."""

from __future__ import annotations

import signal
import sys

import typer


TERMINATED = 143  # a job stopped by SIGTERM (128 + 15, what a shell shows for a process it killed)


def stop_on_signals(controls, announce: bool = True, signals: tuple[int, ...] = (signal.SIGINT,)) -> list[int]:
    """The first of `signals` (Ctrl+C; SIGTERM too for a job) asks the job to stop cleanly
    (and save); a second one aborts. Returns the list the signals received are added to.
    `announce`: say so (rank 0 of a distributed job only)."""
    received: list[int] = []

    def handler(signum, frame):
        received.append(signum)
        if controls.stop_requested:
            raise KeyboardInterrupt
        if announce:
            typer.echo("\nstopping after this step (Ctrl+C again to abort)..." if signum == signal.SIGINT  # after "^C"
                       else f"{signal.Signals(signum).name}: stopping after this step (a second one aborts)...",
                       err=True)
        controls.request_stop()

    for signum in signals:
        signal.signal(signum, handler)
    return received


def run_job(job, reporter, announce: bool = True) -> None:
    """Run an engine job in the foreground with a headless reporter. The first Ctrl+C or
    SIGTERM stops it cleanly (a training saves first); a stop by SIGTERM then exits 143,
    so whoever sent it (a scheduler, the --seeds launcher) is told a stop from an end."""
    from tt_core.controls import Controls
    from tt_core.errors import Interrupted, TTError, as_user_error, caused_by_interrupt
    from tt_core.events import EventBus, Failed
    from tt_tui.cli.exits import fail

    bus, controls = EventBus(), Controls()
    bus.subscribe(reporter)
    stops = (signal.SIGINT, signal.SIGTERM)
    received = stop_on_signals(controls, announce, stops)
    with reporter:
        try:
            job(bus, controls)
        except Exception as exc:  # on record (metrics.jsonl: `tt-tui runs` says why); printed once, by main
            if caused_by_interrupt(exc):  # the aborting Ctrl+C, reported by a library as its own error
                raise KeyboardInterrupt from exc
            user = exc if isinstance(exc, TTError) else as_user_error(exc)
            bus.listeners.remove(reporter)
            bus.emit(Failed(str(user or exc), user.exit_code if user else 1))
            if isinstance(exc, Interrupted) and received[:1] == [signal.SIGTERM]:
                fail(str(exc), TERMINATED)  # stopped by SIGTERM before anything could be saved
            raise
        finally:  # the job is over (a clean stop included): a further signal changes nothing
            for signum in stops:
                signal.signal(signum, signal.SIG_IGN)
    if received[:1] == [signal.SIGTERM]:
        raise typer.Exit(TERMINATED)


def run_eval(job):
    """An eval job in the foreground; returns its reporter (its `report` for --json)."""
    from tt_tui.headless import EvalReporter

    reporter = EvalReporter()
    run_job(job, reporter)
    return reporter


def use_app(headless: bool) -> bool:
    """The Textual app needs a terminal on both ends; pipes and CI logs get plain output."""
    return not headless and sys.stdout.isatty() and sys.stdin.isatty()


def run_app(job, mode: str):
    """Run `job` under the Textual app (engine on its own thread). After the app closes,
    print the headless reporter's final lines (run directory, results table, the error)
    and exit with the job's code; returns the reporter (eval: its `report` for --json)."""
    from tt_core.events import EvalFinished, EvalStarted, Failed, TrainFinished
    from tt_core.jobs.thread import JobThread
    from tt_tui.app import TTApp
    from tt_tui.headless import EvalReporter, HeadlessReporter

    engine = JobThread(job)
    final: list = []
    keep = (EvalStarted, EvalFinished, TrainFinished, Failed)
    engine.subscribe(lambda event: final.append(event) if isinstance(event, keep) else None)
    app = TTApp(engine, mode)
    app.run()
    code = app.return_code or 0
    if engine.running and code != 130:  # the app closed early (a UI error): stop and save
        engine.stop(timeout=300)
    reporter = HeadlessReporter() if mode == "train" else EvalReporter()
    for event in final:
        reporter(event)
    code = code or engine.exit_code or 0
    if code:
        raise typer.Exit(code)
    return reporter
