"""Pinned pretrained models: manifests, verified downloads over real HTTP, the CLI.

A loopback HTTP server (127.0.0.1, started by each test) serves an FTT-format directory
made in the test, laid out like upstream (`/<commit>/pretrained/hopper/<file>`), with a
test manifest naming its git blob ids. No test needs the internet.
"""

import fcntl
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ftt_seed import git_blob, write_seed_dir
from tt_core.pretrained import catalog as pt
from tt_core.errors import CheckpointError, DownloadError
from tt_core.events import Downloaded, DownloadProgress
from tt_core.pretrained.ftt.weights import BLOCK_KINDS, PUBLISHED_MODELS
from tt_core.runs.ftt_layout import is_ftt_checkpoint

COMMIT = "0123456789abcdef0123456789abcdef01234567"
FILES = ("config.yaml", "discretizer.pt", "model_last.pt")


class FileServer:
    """A real HTTP server on 127.0.0.1 serving `files` (URL path -> bytes), with Range
    support (206) and knobs for the failures a download meets."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.cut_after: dict[str, int] = {}  # send a full Content-Length, then close after N bytes
        self.corrupt: set[str] = set()  # flip one byte in the middle
        self.ignore_range = False  # answer every request with 200 and the whole file
        self.no_length = False  # no Content-Length: the end of the body is the closed connection
        self.redirect_loop: set[str] = set()  # answer these with a redirect to themselves
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = urllib.parse.urlsplit(self.path).path
                server.requests.append((path, self.headers.get("Range")))
                if path in server.redirect_loop:
                    self.send_response(302)
                    self.send_header("Location", self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = server.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                if path in server.corrupt:
                    middle = len(data) // 2
                    data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
                start = 0
                ranged = self.headers.get("Range")
                if ranged and not server.ignore_range:
                    start = int(ranged.removeprefix("bytes=").rstrip("-"))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                if not server.no_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.cut_after.get(path)
                self.wfile.write(body if cut is None else body[: max(0, cut - start)])
                if cut is not None:
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def write_manifest(folder: Path, base_url: str, blobs: dict[str, str], sizes: dict[str, int | None]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": "hopper", "title": "test hopper", "dataset": "hopper-medium-v2", "env_id": "Hopper-v5",
        "repository": "https://example.org/seed", "base_url": base_url, "path": "pretrained/hopper",
        "license": "MIT", "scores": [{"mean": 61.1, "error": 3.6, "what": "the TT paper"}],
        "default_era": "post-fix",
        "eras": {"post-fix": {"commit": COMMIT, "block": "pre-norm", "note": "test",
                              "files": {n: {"blob": blobs[n], "size": sizes.get(n)} for n in FILES}}},
    }
    (folder / pt.MANIFEST_FILE).write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def upstream(tmp_path, seed_module):
    """(server, catalog folder, served bytes): a seed checkpoint served over HTTP and a
    test catalog pinning it (model_last.pt without a size, as upstream's history has)."""
    source = tmp_path / "upstream"
    write_seed_dir(source)
    data = {n: (source / n).read_bytes() for n in FILES}
    server = FileServer({f"/{COMMIT}/pretrained/hopper/{n}": b for n, b in data.items()})
    catalog = tmp_path / "catalog"
    sizes = {n: len(b) for n, b in data.items() if n != "model_last.pt"}
    write_manifest(catalog / "hopper", server.url, {n: git_blob(b) for n, b in data.items()}, sizes)
    yield server, catalog, data
    server.close()


def era_of(catalog: Path):
    manifest = pt.read_manifest(catalog / "hopper")
    return manifest, manifest.era()


def cli(*args, env=None, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "tt_tui.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd)


# ------------------------------------------------------------------ downloads


def test_git_blob_id_is_the_id_git_itself_gives_the_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(3000) + b"\0tail")
    assert pt.git_blob_id(path) == git_blob(path.read_bytes())
    git = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True)
    if git.returncode == 0:  # git is on every machine that runs the suite, but do not depend on it
        assert git.stdout.strip() == git_blob(path.read_bytes())


def test_fetch_downloads_verifies_and_moves_every_file_into_place(upstream):
    server, catalog, data = upstream
    manifest, era = era_of(catalog)
    events = []
    folder = pt.fetch(manifest, era, on_progress=events.append)
    assert folder == catalog / "hopper" / "hopper-post-fix" and is_ftt_checkpoint(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == data  # no .part left behind
    assert [e.name for e in events if isinstance(e, Downloaded)] == [str(folder / n) for n in FILES]
    last = [e for e in events if isinstance(e, DownloadProgress)][-1]
    assert last.done == last.total == len(data["model_last.pt"])  # the size came from the server
    # present and verified: a second fetch asks the server for nothing
    server.requests.clear()
    assert pt.fetch(manifest, era) == folder and server.requests == []


def test_an_interrupted_transfer_leaves_only_a_part_file_and_the_next_run_resumes_it(upstream):
    server, catalog, data = upstream
    manifest, era = era_of(catalog)
    model_url = f"/{COMMIT}/pretrained/hopper/model_last.pt"
    half = len(data["model_last.pt"]) // 2
    server.cut_after[model_url] = half
    with pytest.raises(DownloadError, match="transfer stopped after .* run the command again to resume"):
        pt.fetch(manifest, era)
    folder = manifest.era_dir(era)
    assert not (folder / "model_last.pt").exists() and not is_ftt_checkpoint(folder)
    assert (folder / ".model_last.pt.part").stat().st_size == half
    del server.cut_after[model_url]
    server.requests.clear()
    pt.fetch(manifest, era)
    assert server.requests == [(model_url, f"bytes={half}-")]  # only the rest was asked for
    assert (folder / "model_last.pt").read_bytes() == data["model_last.pt"]
    assert not (folder / ".model_last.pt.part").exists()


def test_a_server_that_ignores_the_range_gives_a_clean_restart(upstream):
    server, catalog, data = upstream
    manifest, era = era_of(catalog)
    folder = manifest.era_dir(era)
    folder.mkdir(parents=True)
    (folder / ".model_last.pt.part").write_bytes(b"junk from another try")
    server.ignore_range = True
    pt.fetch(manifest, era)
    assert (folder / "model_last.pt").read_bytes() == data["model_last.pt"]


def test_a_part_longer_than_the_file_is_dropped_and_fetched_again(upstream):
    server, catalog, data = upstream
    manifest, era = era_of(catalog)
    folder = manifest.era_dir(era)
    folder.mkdir(parents=True)
    (folder / ".model_last.pt.part").write_bytes(b"x" * (len(data["model_last.pt"]) + 10))
    pt.fetch(manifest, era)  # the server answers 416 to the range; the part is dropped
    assert (folder / "model_last.pt").read_bytes() == data["model_last.pt"]


def test_a_corrupted_byte_is_refused_naming_the_file_and_both_ids_and_nothing_is_kept(upstream):
    server, catalog, data = upstream
    manifest, era = era_of(catalog)
    server.corrupt.add(f"/{COMMIT}/pretrained/hopper/discretizer.pt")
    with pytest.raises(DownloadError) as caught:
        pt.fetch(manifest, era)
    message = str(caught.value)
    folder = manifest.era_dir(era)
    pinned = git_blob(data["discretizer.pt"])
    assert str(folder / "discretizer.pt") in message and pinned in message and "nothing was kept" in message
    bad = data["discretizer.pt"]
    middle = len(bad) // 2
    assert git_blob(bad[:middle] + bytes([bad[middle] ^ 0xFF]) + bad[middle + 1:]) in message
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml"]  # verified before it


def test_a_changed_file_on_disk_is_refused_before_anything_is_fetched(upstream):
    server, catalog, _ = upstream
    manifest, era = era_of(catalog)
    folder = manifest.era_dir(era)
    folder.mkdir(parents=True)
    (folder / "model_last.pt").write_text("edited: by hand\n")
    with pytest.raises(DownloadError, match="model_last.pt: git blob id .* is not the pinned"):
        pt.fetch(manifest, era)
    assert (folder / "model_last.pt").read_text() == "edited: by hand\n"
    assert server.requests == [] and sorted(p.name for p in folder.iterdir()) == ["model_last.pt"]


def test_a_missing_file_on_the_server_is_one_line_with_the_status(upstream):
    server, catalog, _ = upstream
    del server.files[f"/{COMMIT}/pretrained/hopper/discretizer.pt"]
    manifest, era = era_of(catalog)
    with pytest.raises(DownloadError, match=r"discretizer.pt: HTTP 404 .*by hand"):
        pt.fetch(manifest, era)


def test_a_transfer_cut_without_any_size_is_refused_as_truncated_or_corrupt(upstream):
    server, catalog, data = upstream
    manifest, era = era_of(catalog)
    server.no_length = True  # and the manifest pins no size for model_last.pt
    server.cut_after[f"/{COMMIT}/pretrained/hopper/model_last.pt"] = len(data["model_last.pt"]) // 3
    with pytest.raises(DownloadError, match="truncated or corrupt.*nothing was kept"):
        pt.fetch(manifest, era)
    assert not (manifest.era_dir(era) / ".model_last.pt.part").exists()


def test_a_complete_part_left_by_a_crash_is_verified_and_moved_without_a_request(upstream):
    server, catalog, data = upstream
    manifest, era = era_of(catalog)
    folder = manifest.era_dir(era)
    folder.mkdir(parents=True)
    (folder / ".model_last.pt.part").write_bytes(data["model_last.pt"])
    pt.fetch(manifest, era)
    assert (folder / "model_last.pt").read_bytes() == data["model_last.pt"]
    assert [p for p, _ in server.requests if p.endswith("model_last.pt")] == []


def test_a_part_longer_than_a_sized_file_is_dropped_without_asking_for_a_range(upstream):
    server, catalog, data = upstream
    manifest, era = era_of(catalog)
    folder = manifest.era_dir(era)
    folder.mkdir(parents=True)
    (folder / ".config.yaml.part").write_bytes(b"x" * (len(data["config.yaml"]) + 1))
    pt.fetch(manifest, era)
    assert (folder / "config.yaml").read_bytes() == data["config.yaml"]
    assert (f"/{COMMIT}/pretrained/hopper/config.yaml", None) in server.requests


def test_two_fetches_of_one_file_at_once_do_not_share_its_part(upstream):
    _, catalog, _ = upstream
    manifest, era = era_of(catalog)
    folder = manifest.era_dir(era)
    folder.mkdir(parents=True)
    with open(folder / ".config.yaml.lock", "w") as held:  # another process is downloading it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DownloadError, match="another tt-tui is downloading it"):
            pt.fetch(manifest, era)
    assert not (folder / "config.yaml").exists()
    assert is_ftt_checkpoint(pt.fetch(manifest, era))


def test_a_mirror_url_without_a_scheme_is_a_usage_error(upstream):
    _, catalog, _ = upstream
    result = cli("pretrained", "fetch", "hopper", "--dir", str(catalog), env={pt.BASE_URL_ENV: "mirror.lan/ftt"})
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {pt.BASE_URL_ENV}='mirror.lan/ftt': should start with "
                                     "https://, http:// or file://")


def test_a_file_growing_past_its_pinned_size_is_refused(upstream):
    server, catalog, data = upstream
    manifest, era = era_of(catalog)
    path = f"/{COMMIT}/pretrained/hopper/config.yaml"
    server.files[path] = data["config.yaml"] + b"# more\n" * 100
    with pytest.raises(DownloadError, match="more than the pinned"):
        pt.fetch(manifest, era)
    assert not any(manifest.era_dir(era).iterdir())


def test_the_mirror_variable_replaces_the_base_url_with_the_same_verification(upstream, monkeypatch, tmp_path):
    server, catalog, data = upstream
    with socket.socket() as s:  # a port nobody listens on: the manifest's own base is dead
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    blobs = {n: git_blob(b) for n, b in data.items()}
    write_manifest(catalog / "hopper", dead, blobs, {})
    manifest, era = era_of(catalog)
    with pytest.raises(DownloadError, match=f"cannot fetch {dead}/{COMMIT}/pretrained/hopper/config.yaml"):
        pt.fetch(manifest, era)
    monkeypatch.setenv(pt.BASE_URL_ENV, server.url)
    assert is_ftt_checkpoint(pt.fetch(manifest, era))
    assert {p for p, _ in server.requests} == {f"/{COMMIT}/pretrained/hopper/{n}" for n in FILES}


def test_unreachable_hosts_end_in_one_line_saying_what_failed_and_how_to_place_files_by_hand(upstream, tmp_path):
    _, catalog, _ = upstream
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        result = cli("eval", str(catalog / "hopper"), "--headless", env={pt.BASE_URL_ENV: url})
        elapsed = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    assert elapsed < 30
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"error: cannot fetch {url}/{COMMIT}/pretrained/hopper/config.yaml")
    assert "by hand" in line and "https://example.org/seed/tree/" in line
    assert f"or check the mirror {pt.BASE_URL_ENV}={url}" in line
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------ the commands


def test_pretrained_lists_models_with_state_size_source_and_scores(upstream):
    _, catalog, data = upstream
    before = cli("pretrained", "--dir", str(catalog))
    assert before.returncode == 0, before.stderr
    row = next(line for line in before.stdout.splitlines() if line.startswith("hopper"))
    assert row.split() == ["hopper", "hopper-medium-v2", "Hopper-v5", "post-fix*", "0/3", "files", "61.1", "±", "3.6"]
    assert "source: https://example.org/seed at 0123456 (post-fix), licence MIT" in before.stdout
    assert "score: the TT paper" in before.stdout
    fetched = cli("pretrained", "fetch", "hopper", "--dir", str(catalog))
    assert fetched.returncode == 0, fetched.stderr
    assert "hopper post-fix: ready in" in fetched.stdout
    assert "downloading " in fetched.stderr and "verified " in fetched.stderr  # plain lines in a pipe
    after = cli("pretrained", "--dir", str(catalog))
    size = sum(len(b) for b in data.values()) / 1e6
    assert f"downloaded, {size:.1f} MB" in after.stdout


@pytest.mark.parametrize("args, message", [
    ((), "give model NAMEs or --all (not both); `tt-tui pretrained` lists them"),
    (("hopper", "--all"), "give model NAMEs or --all (not both); `tt-tui pretrained` lists them"),
    (("walker",), "no pretrained model 'walker' (available: hopper)"),
    (("hopper", "--era", "old"), "--era: hopper has no era 'old' (available: post-fix, all)"),
])
def test_pretrained_fetch_refuses_bad_arguments_in_one_line(upstream, args, message):
    _, catalog, _ = upstream
    result = cli("pretrained", "fetch", *args, "--dir", str(catalog))
    assert result.returncode == 2 and result.stderr.strip() == f"error: {message}"


def test_a_malformed_manifest_is_one_line_naming_what_is_wrong(upstream):
    _, catalog, _ = upstream
    manifest = catalog / "hopper" / pt.MANIFEST_FILE
    data = json.loads(manifest.read_text())
    data["eras"]["post-fix"]["files"]["model_last.pt"]["blob"] = "not-a-sha"
    manifest.write_text(json.dumps(data))
    result = cli("pretrained", "--dir", str(catalog))
    assert result.returncode == 3
    assert result.stderr.strip() == f"error: {manifest}: era post-fix: git blob id 'not-a-sha' is malformed"


@pytest.mark.parametrize("damage, message", [
    (lambda d: d.update(scores=5), "'scores' should be a list, got 5"),
    (lambda d: d["scores"][0].update(error="abc"), "'error' should be a int or float, got 'abc'"),
    (lambda d: d["scores"][0].update(mean=10**400), "'mean' should be a finite number"),
    ("[" * 100_000, "nested too deeply to be a manifest"),
])
def test_manifest_values_of_the_wrong_kind_or_size_are_one_line_exit_3(upstream, damage, message):
    _, catalog, _ = upstream
    manifest = catalog / "hopper" / pt.MANIFEST_FILE
    if isinstance(damage, str):
        manifest.write_text(damage)
    else:
        data = json.loads(manifest.read_text())
        damage(data)
        manifest.write_text(json.dumps(data))
    result = cli("pretrained", "--dir", str(catalog))
    assert result.returncode == 3
    assert result.stderr.strip() == f"error: {manifest}: {message}"


def test_a_redirect_loop_and_a_newline_in_the_mirror_variable_are_each_one_line(upstream):
    server, catalog, _ = upstream
    server.redirect_loop.add(f"/{COMMIT}/pretrained/hopper/config.yaml")
    result = cli("pretrained", "fetch", "hopper", "--dir", str(catalog))
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "redirect" in result.stderr and "by hand" in result.stderr
    result = cli("pretrained", "fetch", "hopper", "--dir", str(catalog), env={pt.BASE_URL_ENV: "http://a\nb"})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr


def test_eval_fetches_on_first_use_then_plans_with_the_seeds_settings_and_d4rl_scores(upstream, tmp_path):
    server, catalog, _ = upstream
    out = tmp_path / "eval.json"
    result = cli("eval", str(catalog / "hopper"), "--episodes", "1", "--max-steps", "3",
                 "--headless", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "verified " in result.stderr and len(server.requests) == 3
    report = json.loads(out.read_text())
    assert report["env_id"] == "Hopper-v5" and report["source"].endswith("hopper-post-fix")
    plan = report["plan"]  # the seed config's trainer.eval_* (the test config: 32 x 5, context 4)
    assert (plan["beam_width"], plan["beam_steps"], plan["beam_context"], plan["sample_expand"]) == (32, 5, 4, 2)
    (episode,) = report["episodes"]
    assert episode["score"] == pytest.approx(100 * (episode["episode_return"] + 20.272305) / (3234.3 + 20.272305))
    # flags override the seed's settings; the files are not fetched again
    server.requests.clear()
    again = cli("eval", str(catalog / "hopper"), "--episodes", "1", "--max-steps", "2",
                "--beam-width", "3", "--beam-steps", "2", "--headless", "--json", str(out))
    assert again.returncode == 0, again.stderr
    assert server.requests == [] and json.loads(out.read_text())["plan"]["beam_width"] == 3


# ------------------------------------------------------------------ the real manifests

UPSTREAM = "https://github.com/Howuhh/faster-trajectory-transformer"
PRE_FIX, POST_FIX = "664900ff7676f483513bf9cc9216c567ebc3a487", "213e58deb4fdcbdced4af833572c3e80c1714be1"


def test_the_repository_pins_halfcheetah_hopper_and_walker2d_in_both_eras(monkeypatch):
    monkeypatch.delenv(pt.BASE_URL_ENV, raising=False)
    models = {m.name: m for m in pt.catalog()}
    assert sorted(models) == ["halfcheetah", "hopper", "walker2d"]
    for name, m in models.items():
        assert (m.dataset, m.env_id) == (f"{name}-medium-v2", {"halfcheetah": "HalfCheetah-v5",
                                         "hopper": "Hopper-v5", "walker2d": "Walker2d-v5"}[name])
        assert m.default_era == "post-fix" and sorted(m.eras) == ["post-fix", "pre-fix"]
        assert (m.eras["pre-fix"].commit, m.eras["post-fix"].commit) == (PRE_FIX, POST_FIX)
        assert (m.eras["pre-fix"].block, m.eras["post-fix"].block) == ("norm-residual", "pre-norm")
        assert m.license.startswith("MIT") and m.scores and (m.folder / "MODEL.md").is_file()
        for era in m.eras.values():
            assert era.block in BLOCK_KINDS and [f.name for f in era.files] == list(FILES)
            for f in era.files:
                url = urllib.parse.urlsplit(m.url(era, f))
                assert (url.scheme, url.netloc) == ("https", "github.com")
                assert url.path == f"/Howuhh/faster-trajectory-transformer/raw/{era.commit}/pretrained/{name}/{f.name}"
                assert len(f.blob) == 40 and int(f.blob, 16) >= 0
                assert (f.size is None) == (f.name == "model_last.pt")  # upstream's history gives no model size
            assert m.source_url(era) == f"{UPSTREAM}/tree/{era.commit}/pretrained/{name}"


def test_the_manifests_hold_upstreams_blob_ids_and_sizes():
    m = {m.name: m for m in pt.catalog()}
    files = lambda name, era: {f.name: (f.blob, f.size) for f in m[name].eras[era].files}
    assert files("walker2d", "post-fix") == {
        "config.yaml": ("1da844741ebd03102613fb6fb5a4870861929eeb", 921),
        "discretizer.pt": ("bd1b82ae830b52f36e0e32d52d99c2cb019f7b10", 41143),
        "model_last.pt": ("05186222bfec9d32f0520b726ed62eb9f349d02b", None),
    }
    assert files("hopper", "pre-fix")["discretizer.pt"] == ("ef5a51240320a346863a7a0ae74df09650a90fa4", 26603)
    assert files("halfcheetah", "post-fix")["config.yaml"] == ("2cfdf743a7236cb670b515a0fd04b7a6dd4f2437", 928)
    # the block of a published model file is told from these pins: upstream's six files
    assert PUBLISHED_MODELS == {
        "59aef561641e90f1bdac70084ca845958e639c66": ("halfcheetah", "norm-residual"),
        "c2984891ed1238fe58ea11d92c7a8f39217cc650": ("hopper", "norm-residual"),
        "f0705b82cd81b6f038e21cbc49cd16665ce17880": ("walker2d", "norm-residual"),
        "f3549ec50e06a1472ba3699e82722d74af64353d": ("halfcheetah", "pre-norm"),
        "7ff9bd6d6ff286162cbff93f1b872a414121c984": ("hopper", "pre-norm"),
        "05186222bfec9d32f0520b726ed62eb9f349d02b": ("walker2d", "pre-norm"),
    }


def test_pretrained_slash_name_means_this_clones_catalog_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manifest, era = pt.locate(Path("pretrained/walker2d"))
    assert manifest.folder == pt.REPO_CATALOG / "walker2d" and era.name == "post-fix"
    manifest, era = pt.locate(Path("pretrained/walker2d/walker2d-pre-fix"))
    assert era.name == "pre-fix" and manifest.era_dir(era) == pt.REPO_CATALOG / "walker2d" / "walker2d-pre-fix"
    assert pt.locate(tmp_path) is None


def test_the_real_pretrained_listing_shows_the_three_models_offline():
    result = cli("pretrained")
    assert result.returncode == 0, result.stderr
    for name in ("halfcheetah", "hopper", "walker2d"):
        assert any(line.startswith(name) for line in result.stdout.splitlines())
    assert f"source: {UPSTREAM} at 213e58d (post-fix)" in result.stdout


def test_catalog_of_a_missing_folder_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such pretrained folder"):
        pt.catalog(tmp_path / "nowhere")
