"""The one reader of a run directory's files, for every command that reads a run
(`runs`, `runs --group`, `report`, `show`, `show A B`; `--resume` and `eval` load
checkpoints through tt_core/runs/checkpoint.py, which reads its small files here too).

Reads are bounded and regular-file-only (tt_core/files.py); metrics.jsonl records
are checked against their typed events (tt_core/runs/records.py). A record that does not
check is skipped and counted, and the first one is named with its line number, so a
listing can say `damaged (metrics.jsonl line 7: TrainStep.loss must be a finite number
...)` instead of failing. A listing reads metrics.jsonl and config.yaml through the digest
the writer keeps in listing.json (tt_core/runs/digest.py) while it matches them, so its
cost does not grow with a run's history. No torch here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tt_core.runs.digest import DIGEST_FILE, ConfigFacts, MetricsDigest, cached_config, cached_metrics, stamp_of
from tt_core.files import METRICS_CAP, RunFileError, read_bytes, read_json_object, read_yaml_mapping
from tt_core.runs.records import BadRecord, Recorded, check_line

METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class Metrics:
    """The checked records of a metrics.jsonl, and what was skipped."""

    records: list[Recorded]
    skipped: int = 0  # complete lines that did not check
    first_skipped: Optional[str] = None  # "metrics.jsonl line N: why"
    lines: int = 0  # complete lines

    def of(self, *kinds: type) -> list[Any]:
        """The events of the given types, in order."""
        return [r.event for r in self.records if isinstance(r.event, kinds)]


def parse_metrics(data: bytes, name: str = METRICS_FILE) -> Metrics:
    """The records of metrics.jsonl content `data`. A torn last line (a kill mid-write)
    is left out silently: it is never complete and a resume cuts it."""
    lines = data.split(b"\n")[:-1]  # the complete ones: what follows the last newline is torn or empty
    records: list[Recorded] = []
    skipped, first = 0, None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            records.append(check_line(raw.decode("utf-8", errors="replace")))
        except BadRecord as exc:
            skipped += 1
            first = first or f"{name} line {number}: {exc}"
    return Metrics(records, skipped, first, len(lines))


def digest_of(metrics: Metrics) -> MetricsDigest:
    """The listing's digest of checked metrics (what the writer keeps in listing.json)."""
    return MetricsDigest.of(metrics.records, metrics.lines, metrics.skipped, metrics.first_skipped)


def read_metrics(path: Path) -> Metrics:
    """A run's metrics.jsonl, checked (a missing file has no records); RunFileError when
    it is not a regular file or larger than METRICS_CAP."""
    try:
        data = read_bytes(path, METRICS_CAP)
    except FileNotFoundError:
        return Metrics([])
    return parse_metrics(data, Path(path).name)


def small_json(path: Path) -> tuple[dict, Optional[str]]:
    """(the JSON object in `path`, None), ({}, None) when it is missing, or ({}, why) when
    it cannot be read: the listing goes on with what else it knows."""
    try:
        return read_json_object(path), None
    except FileNotFoundError:
        return {}, None
    except RunFileError as exc:
        return {}, str(exc)


def saved_config(root: Path) -> tuple[dict, Optional[str]]:
    """(the run's config.yaml as plain data, None), or ({}, why it is unreadable)."""
    path = Path(root) / "config.yaml"
    try:
        return read_yaml_mapping(path), None
    except FileNotFoundError:
        return {}, f"{path}: missing"
    except RunFileError as exc:
        return {}, str(exc)


@dataclass(frozen=True)
class RunFilesRead:
    """What a run directory's small files and metrics say, read once."""

    root: Path
    digest: MetricsDigest  # of metrics.jsonl
    config: ConfigFacts  # of config.yaml
    dataset: dict  # dataset.json
    latest: dict  # latest.json
    heartbeat: dict  # read only while the metrics do not say how the training ended
    problems: list[str] = field(default_factory=list)  # files that could not be read, one line each


def read_run_files(root: Path) -> RunFilesRead:
    """Every small file of run `root` and its checked metrics, through listing.json where it
    matches them; never raises for a file's content: an unreadable file is a problem line
    and an empty value."""
    root = Path(root)
    if not os.access(root, os.R_OK | os.X_OK):  # say so, rather than that each of its files is unreadable
        return RunFilesRead(root, MetricsDigest(), ConfigFacts(), {}, {}, {},
                            problems=[f"{root}: cannot look inside (permission denied)"])
    problems: list[str] = []
    cache, _ = small_json(root / DIGEST_FILE)  # a cache: unreadable or stale, it is not used
    digest = cached_metrics(cache, stamp_of(root / METRICS_FILE))
    if digest is not None and not os.access(root / METRICS_FILE, os.R_OK):  # `show` and a resume could not read it
        problems.append(f"{root / METRICS_FILE}: unreadable (permission denied)")
    elif digest is None:
        try:
            digest = digest_of(read_metrics(root / METRICS_FILE))
        except RunFileError as exc:
            digest = MetricsDigest()
            problems.append(str(exc))
    config = cached_config(cache, stamp_of(root / "config.yaml"))
    if config is not None and not os.access(root / "config.yaml", os.R_OK):  # a resume or eval could not read it
        problems.append(f"{root / 'config.yaml'}: unreadable (permission denied)")
    elif config is None:
        data, why = saved_config(root)
        problems += [why] if why else []
        config = ConfigFacts.of(data)
    values = []
    for name in ("dataset.json", "latest.json"):
        data, why = small_json(root / name)
        values.append(data)
        problems += [why] if why else []
    # a heartbeat is rewritten every 10 s: an unreadable one is no problem of the run
    heartbeat = small_json(root / "heartbeat.json")[0] if digest.outcome is None else {}
    return RunFilesRead(root, digest, config, *values, heartbeat, problems=problems)


def saved_checkpoints(root: Path) -> list[Path]:
    """The checkpoint directories of run `root` (checkpoints/step_N), oldest first."""
    try:
        return sorted(p for p in (Path(root) / "checkpoints").glob("step_*") if p.is_dir())
    except OSError:
        return []
