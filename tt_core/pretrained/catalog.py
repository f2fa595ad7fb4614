"""Published pretrained models: pinned manifests and verified downloads.

A model folder `pretrained/<name>/` in the repository holds `manifest.json` (which
upstream files, at which commit, with which git blob ids) and `MODEL.md`. The files of
one era of weights are fetched into `pretrained/<name>/<name>-<era>/`, which is then an
FTT-format directory (pretrained/ftt/); `pretrained/<name>` itself stands for the
manifest's default era.

A download goes to a hidden `.<file>.part` beside its place, resumes from there with an
HTTP Range request, is fsynced, and is renamed into place only once its git blob id
(sha1 of `blob <size>\\0` + content) is the pinned one. A file that does not match is
deleted: nothing that looks complete is ever left unverified.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import json
import math
import os
import re
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from tt_core.durable import FileLock, LockHeld, fsync_dir
from tt_core.errors import CheckpointError, ConfigError, DownloadError
from tt_core.events import Downloaded, DownloadProgress

MANIFEST_FILE = "manifest.json"
BASE_URL_ENV = "TT_PRETRAINED_URL"  # replaces the manifest's base URL: a mirror
TIMEOUT_S = 10.0  # per connection attempt and per read: offline ends well within 30 s
CHUNK_BYTES = 1 << 16
MAX_UNSIZED_BYTES = 1 << 30  # a file pinned without a size may not grow past this
REPO_CATALOG = Path(__file__).resolve().parents[2] / "pretrained"  # this clone's manifests

_HEX40 = re.compile(r"[0-9a-f]{40}")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_REL_PATH = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")

Progress = Callable[[Any], None]  # receives DownloadProgress and Downloaded events


def git_blob_id(path: Path) -> str:
    """The id git gives the file's content: sha1 of b"blob <size>\\0" + content."""
    path = Path(path)
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------ manifests


@dataclass(frozen=True)
class PinnedFile:
    name: str
    blob: str  # git blob id
    size: Optional[int]  # bytes, where upstream's history gives it


@dataclass(frozen=True)
class Era:
    """One published set of files: upstream's commit and the block it was trained with."""

    name: str
    commit: str
    block: str  # ftt.weights.NORM_RESIDUAL or PRE_NORM
    note: str
    files: tuple[PinnedFile, ...]


@dataclass(frozen=True)
class Score:
    mean: float
    error: Optional[float]
    what: str  # who published it, and where


@dataclass(frozen=True)
class Manifest:
    folder: Path
    name: str
    title: str
    dataset: str  # the D4RL dataset it was trained on
    env_id: str  # the gymnasium env it is evaluated in
    base_url: str  # + /<commit>/<path>/<file>
    repository: str
    path: str  # the files' folder in the repository
    license: str
    scores: tuple[Score, ...]
    default_era: str
    eras: dict[str, Era]

    def era(self, name: Optional[str] = None) -> Era:
        return self.eras[name or self.default_era]

    def era_dir(self, era: Era) -> Path:
        return self.folder / f"{self.name}-{era.name}"

    def url(self, era: Era, file: PinnedFile, base: Optional[str] = None) -> str:
        """Where `file` is fetched from: `base` (a mirror) replaces the manifest's base."""
        return f"{(base or self.base_url).rstrip('/')}/{era.commit}/{self.path}/{file.name}"

    def source_url(self, era: Era) -> str:
        """The folder on the web where a user can fetch the files by hand."""
        return f"{self.repository}/tree/{era.commit}/{self.path}"


def _get(data: Any, key: str, kind: type | tuple[type, ...], where: str, default: Any = None) -> Any:
    value = data.get(key, default) if isinstance(data, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        what = " or ".join(k.__name__ for k in kinds)
        raise CheckpointError(f"{where}: '{key}' should be a {what}, got {value!r}")
    return value


def _number(data: Any, key: str, where: str) -> float:
    """A finite float from an int or float entry (a 400-digit integer is not one)."""
    value = _get(data, key, (int, float), where)
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise CheckpointError(f"{where}: '{key}' should be a finite number")
    return number


def _score(data: Any, where: str) -> Score:
    error = None if isinstance(data, dict) and data.get("error") is None else _number(data, "error", where)
    return Score(_number(data, "mean", where), error, _get(data, "what", str, where))


def _checked(pattern: re.Pattern, value: str, what: str, where: str) -> str:
    if not pattern.fullmatch(value):
        raise CheckpointError(f"{where}: {what} {value!r} is malformed")
    return value


def _pinned_file(name: str, data: Any, where: str) -> PinnedFile:
    _checked(_FILE_NAME, name, "file name", where)
    blob = _checked(_HEX40, _get(data, "blob", str, f"{where}: {name}"), "git blob id", where)
    size = data.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise CheckpointError(f"{where}: {name}: 'size' should be a byte count or null, got {size!r}")
    return PinnedFile(name, blob, size)


def read_manifest(folder: Path) -> Manifest:
    """The manifest of model folder `folder`; a malformed one is one line, exit 3."""
    folder = Path(folder)
    where = str(folder / MANIFEST_FILE)
    try:
        data = json.loads((folder / MANIFEST_FILE).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{where}: missing (not a pretrained model folder)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{where}: not valid JSON ({exc})") from None
    except RecursionError:
        raise CheckpointError(f"{where}: nested too deeply to be a manifest") from None
    name = _checked(_NAME, _get(data, "name", str, where), "name", where)
    eras = {}
    for era_name, era in _get(data, "eras", dict, where).items():
        here = f"{where}: era {era_name}"
        _checked(_NAME, era_name, "era name", where)
        files = _get(era, "files", dict, here)
        if not files:
            raise CheckpointError(f"{here}: pins no files")
        eras[era_name] = Era(
            name=era_name,
            commit=_checked(_HEX40, _get(era, "commit", str, here), "commit", here),
            block=_get(era, "block", str, here),
            note=str(era.get("note", "")),
            files=tuple(_pinned_file(n, f, here) for n, f in files.items()),
        )
    default = _get(data, "default_era", str, where)
    if default not in eras:
        raise CheckpointError(f"{where}: default_era {default!r} is not one of its eras {sorted(eras)}")
    base = _get(data, "base_url", str, where)
    if not base.startswith(("https://", "http://")):
        raise CheckpointError(f"{where}: base_url {base!r} should be an http(s) URL")
    scores = tuple(_score(s, where) for s in _get(data, "scores", list, where, default=[]))
    return Manifest(
        folder=folder, name=name, title=_get(data, "title", str, where),
        dataset=_get(data, "dataset", str, where), env_id=_get(data, "env_id", str, where),
        base_url=base, repository=_get(data, "repository", str, where),
        path=_checked(_REL_PATH, _get(data, "path", str, where), "path", where),
        license=_get(data, "license", str, where), scores=scores,
        default_era=default, eras=eras,
    )


def catalog(root: Path = REPO_CATALOG) -> list[Manifest]:
    """Every model folder under `root`, by name."""
    root = Path(root)
    if not root.is_dir():
        raise CheckpointError(f"{root}: no such pretrained folder")
    return [read_manifest(p.parent) for p in sorted(root.glob(f"*/{MANIFEST_FILE}"))]


@functools.lru_cache(maxsize=None)
def published_models(root: Path = REPO_CATALOG) -> dict[str, tuple[str, str]]:
    """git blob id -> (model name, block kind) of every model file the manifests pin."""
    if not Path(root).is_dir():
        return {}
    return {
        f.blob: (m.name, era.block)
        for m in catalog(root) for era in m.eras.values() for f in era.files
        if f.name.startswith("model")
    }


def locate(path: Path) -> Optional[tuple[Manifest, Era]]:
    """(manifest, era) when `path` is a model folder (its default era) or one of its era
    folders, fetched or not; None for any other path (a run or an FTT directory).

    A relative `pretrained/...` that does not exist here names this clone's catalog, so
    `tt-tui eval pretrained/walker2d` works from any directory."""
    path = Path(path)
    if not path.exists() and not path.is_absolute() and path.parts[:1] == ("pretrained",):
        path = REPO_CATALOG.parent / path
    if (path / MANIFEST_FILE).is_file():
        manifest = read_manifest(path)
        return manifest, manifest.era()
    if (path.parent / MANIFEST_FILE).is_file():
        manifest = read_manifest(path.parent)
        for era in manifest.eras.values():
            if manifest.era_dir(era).name == path.name:
                return manifest, era
    return None


# ------------------------------------------------------------------ downloads


def file_state(manifest: Manifest, era: Era, file: PinnedFile) -> str:
    """'verified', 'missing' or 'changed' (on disk with another blob id)."""
    path = manifest.era_dir(era) / file.name
    if not path.is_file():
        return "missing"
    return "verified" if git_blob_id(path) == file.blob else "changed"


def base_url_override() -> Optional[str]:
    """TT_PRETRAINED_URL, checked: a mirror must be an http(s) or file URL."""
    base = os.environ.get(BASE_URL_ENV)
    if base and not base.startswith(("https://", "http://", "file://")):
        raise ConfigError(f"{BASE_URL_ENV}={base!r}: should start with https://, http:// or file://")
    if base and not base.isprintable():  # a newline pasted with it: no URL holds one
        raise ConfigError(f"{BASE_URL_ENV}={base!r}: holds a control character (a pasted newline?)")
    return base or None


def _by_hand(manifest: Manifest, era: Era) -> str:
    names = ", ".join(f.name for f in era.files)
    mirror = base_url_override()
    other = f"or check the mirror {BASE_URL_ENV}={mirror}" if mirror else f"or set {BASE_URL_ENV} to a mirror"
    return (
        f"place {names} from {manifest.source_url(era)} in {manifest.era_dir(era)}/ by hand "
        f"(they are verified the same way), {other}"
    )


def _open(url: str, offset: int, timeout: float) -> Any:
    """urlopen with a Range from `offset`, within `timeout` seconds in all: the socket
    timeout does not cover name lookup or trying each address of a host in turn."""
    headers = {"User-Agent": "tt-tui"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    box: dict[str, Any] = {}

    def attempt() -> None:
        try:
            box["response"] = urllib.request.urlopen(request, timeout=timeout)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=attempt, name="tt-fetch", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["response"]


def _content_range(response: Any) -> tuple[Optional[int], Optional[int]]:
    """(first byte, full size) of a 206 answer's Content-Range, None where absent."""
    m = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", "").strip())
    if not m:
        return None, None
    return int(m.group(1)), None if m.group(2) == "*" else int(m.group(2))


def _receive(response: Any, part: Path, offset: int, file: PinnedFile, url: str,
             label: str, on_progress: Progress) -> tuple[int, Optional[int]]:
    """Append the response body to `part` (from the start unless the server resumed at
    `offset`); returns the part's size and the file's full size where known. Network
    errors come out as _NetworkError; file errors (a full disk) as they are."""
    first, total = _content_range(response) if getattr(response, "status", None) == 206 else (None, None)
    if first != offset:
        offset = 0  # a 200 (or a range we did not ask for): a clean restart
    length = response.headers.get("Content-Length")
    if total is None and length and length.isdigit():
        total = offset + int(length)
    total = total if total is not None else file.size
    limit = file.size if file.size is not None else MAX_UNSIZED_BYTES
    read = getattr(response, "read1", response.read)  # what has arrived, not a full chunk
    done = offset
    part.parent.mkdir(parents=True, exist_ok=True)
    with open(part, "ab" if offset else "wb") as f:
        on_progress(DownloadProgress(label, url, done, total))
        while True:
            try:
                chunk = read(CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as exc:
                raise _NetworkError(exc) from None
            if not chunk:
                break
            done += len(chunk)
            if done > limit:
                raise DownloadError(f"{url}: more than the pinned {limit} bytes; refused")
            f.write(chunk)
            on_progress(DownloadProgress(label, url, done, total))
        f.flush()
        os.fsync(f.fileno())
    return done, total


class _NetworkError(Exception):
    """A failure of the connection, not of this machine's disk."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return f"{reason}" if str(reason) else type(exc).__name__


@contextlib.contextmanager
def _lock(folder: Path, file: PinnedFile) -> Iterator[None]:
    """An exclusive lock on one file's download: two fetches must not share its .part."""
    path = folder / f".{file.name}.lock"
    try:
        lock = FileLock(path).acquire(f"pid {os.getpid()}")
    except LockHeld:
        raise DownloadError(f"{folder / file.name}: another tt-tui is downloading it; wait for it to finish") from None
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        lock.release()


def _connect(url: str, offset: int, timeout: float) -> Any:
    """`_open`, its failures (but an HTTP status) as _NetworkError."""
    try:
        return _open(url, offset, timeout)
    except urllib.error.HTTPError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise _NetworkError(exc) from None


def _verified_into_place(part: Path, dest: Path, file: PinnedFile, on_progress: Progress) -> bool:
    """Rename `part` to `dest` when its blob id is the pinned one."""
    got = git_blob_id(part)
    if got != file.blob:
        return False
    os.replace(part, dest)
    fsync_dir(dest.parent)
    on_progress(Downloaded(str(dest), got))
    return True


def download(manifest: Manifest, era: Era, file: PinnedFile, on_progress: Progress,
             timeout: float = TIMEOUT_S) -> Path:
    """Fetch one pinned file into the era folder, verified; resumes a `.part` left behind."""
    folder = manifest.era_dir(era)
    dest, url = folder / file.name, manifest.url(era, file, base_url_override())
    part = dest.with_name(f".{dest.name}.part")
    with _lock(folder, file):
        if dest.is_file():  # another fetch finished it while this one waited
            return dest
        offset = part.stat().st_size if part.exists() else 0
        if offset and _verified_into_place(part, dest, file, on_progress):  # complete already
            return dest
        if file.size is not None and offset >= file.size:  # no prefix of this file
            part.unlink()
            offset = 0
        try:
            try:
                response = _connect(url, offset, timeout)
            except urllib.error.HTTPError as exc:
                if exc.code != 416 or not offset:
                    raise
                part.unlink()  # the part is no prefix the server knows: start again
                offset = 0
                response = _connect(url, 0, timeout)
            with response:
                size, total = _receive(response, part, offset, file, url, str(dest), on_progress)
        except urllib.error.HTTPError as exc:
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; {_by_hand(manifest, era)}") from None
        except _NetworkError as exc:  # file errors (a full disk) pass on as themselves
            cause = exc.cause
            kept = part.stat().st_size if part.exists() else 0
            again = f"; run it again to resume from byte {kept}" if kept else ""
            raise DownloadError(f"cannot fetch {url} ({_describe(cause)}){again}; {_by_hand(manifest, era)}") from None
        except DownloadError:
            part.unlink(missing_ok=True)
            raise
        if total is not None and size < total:  # the server closed early: keep the part
            raise DownloadError(
                f"{url}: the transfer stopped after {size} of {total} bytes; run the command again to resume"
            )
        if not _verified_into_place(part, dest, file, on_progress):
            got = git_blob_id(part)
            part.unlink()
            how = "" if total is not None else " (the server gave no size: truncated or corrupt)"
            raise DownloadError(
                f"{dest}: downloaded content has git blob id {got}, the manifest pins {file.blob}"
                f"{how}; nothing was kept"
            )
    return dest


def fetch(manifest: Manifest, era: Era, on_progress: Progress = lambda event: None,
          timeout: float = TIMEOUT_S) -> Path:
    """The era folder with every pinned file present and verified (downloading what is
    missing); a file on disk with another id is refused before anything is fetched."""
    states = {file: file_state(manifest, era, file) for file in era.files}
    for file, state in states.items():
        if state == "changed":
            path = manifest.era_dir(era) / file.name
            raise DownloadError(
                f"{path}: git blob id {git_blob_id(path)} is not the pinned {file.blob}; "
                "move it away to download the published file"
            )
    for file, state in states.items():
        if state == "missing":
            download(manifest, era, file, on_progress, timeout)
    return manifest.era_dir(era)
