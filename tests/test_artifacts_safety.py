"""Model directories are replaced crash-safely and nothing recotorch did not write is touched.

The kill -9 tests run real processes: a child saves model B over a directory holding model A and
is killed by SIGKILL (through the RECOTORCH_FAULT hook at every named step, or by the test after a
random delay); then a fresh process loads the directory, reports which model it got, and starts a
real uvicorn server on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from recotorch import artifacts
from recotorch.errors import OutputPathError
from recotorch.models import MatrixFactorization
from tests.helpers.synthetic import toy_catalogue

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]
HANG_GUARD = 300  # seconds; a child needs a few on a busy machine


def tree_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Two different models (dim 4 and dim 3), each saved once as a source to copy from."""
    root = tmp_path_factory.mktemp("models")
    MatrixFactorization(dim=4, epochs=2, seed=0).fit(toy_catalogue()).save(root / "A")
    MatrixFactorization(dim=3, epochs=2, seed=1).fit(toy_catalogue(seed=1)).save(root / "B")
    return {"A": root / "A", "B": root / "B"}


# ---- where save may write ----------------------------------------------------------------------
def test_save_refuses_a_file_a_foreign_folder_and_the_current_folder(models, tmp_path, monkeypatch):
    model = artifacts.load(models["A"])
    (tmp_path / "some.csv").write_text("user,item\n1,2\n")
    (tmp_path / "mydata").mkdir()
    (tmp_path / "mydata" / "notes.txt").write_text("mine")
    before = tree_digest(tmp_path)
    for target in (tmp_path / "some.csv", tmp_path / "mydata"):
        with pytest.raises(OutputPathError, match=target.name):
            artifacts.save(model, target)
    monkeypatch.chdir(tmp_path / "mydata")
    with pytest.raises(OutputPathError, match="current folder"):
        artifacts.save(model, ".")
    with pytest.raises(OutputPathError, match="current folder"):
        artifacts.save(model, tmp_path)
    assert tree_digest(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mydata", "some.csv"]


def test_new_and_empty_folders_get_a_versioned_model(models, tmp_path):
    model = artifacts.load(models["A"])
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "new" / "deep", tmp_path / "empty"):
        artifacts.save(model, target)
        version = artifacts.resolve_version(target)
        assert version.parent == target and artifacts.VERSION_RE.match(version.name)
        assert {p.name for p in target.iterdir()} <= {"CURRENT", version.name, ".recotorch.lock"}
        assert artifacts.load(target).dim == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left beside


def test_saving_over_a_model_keeps_other_files_and_removes_only_recotorch_leftovers(models, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(models["A"], d)
    old = artifacts.resolve_version(d)
    (d / "notes.txt").write_text("the user's own file")
    (d / "v-mine").mkdir()  # looks like a version but is not recotorch's pattern
    stale = d / "v-20000101T000000000000Z-0badc0de"  # a killed save's half-written version
    stale.mkdir()
    (stale / "weights.safetensors").write_bytes(b"half")
    (d / ".CURRENT.0123abcd.tmp").write_text("{")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (d / "v-20000101T000000000000Z-00000001").symlink_to(outside, target_is_directory=True)
    tag = artifacts.version_tag(d)
    artifacts.save(artifacts.load(models["B"]), d)
    names = {p.name for p in d.iterdir()}
    new = artifacts.resolve_version(d)
    assert names == {"CURRENT", ".recotorch.lock", new.name, "notes.txt", "v-mine",
                     "v-20000101T000000000000Z-00000001"}
    assert not old.exists() and not stale.exists()
    assert (d / "notes.txt").read_text() == "the user's own file" and (outside / "keep.txt").is_file()
    assert artifacts.load(d).dim == 3 and artifacts.version_tag(d) != tag


def test_killed_first_save_leaves_a_sibling_that_the_next_save_removes(models, tmp_path):
    dead = tmp_path / ".m.recotorch-new-deadbeef"
    dead.mkdir()
    (dead / ".recotorch.lock").write_text("")
    (dead / "CURRENT").write_text("{}")
    alive = tmp_path / ".m.recotorch-new-0a11ce00"  # a save still running holds its lock
    alive.mkdir()
    fd = artifacts._try_lock(alive / ".recotorch.lock")
    try:
        other = tmp_path / ".n.recotorch-new-deadbeef"  # another target's: not ours to judge
        other.mkdir()
        (other / ".recotorch.lock").write_text("")
        artifacts.save(artifacts.load(models["A"]), tmp_path / "m")
        assert not dead.exists() and alive.is_dir() and other.is_dir()
    finally:
        os.close(fd)


def test_flat_directory_of_an_earlier_release_loads_and_is_converted(models, tmp_path):
    d = make_flat(models["A"], tmp_path / "flat")
    (d / "notes.txt").write_text("mine")
    assert artifacts.load(d).dim == 4 and artifacts.resolve_version(d) == d
    artifacts.save(artifacts.load(models["B"]), d)
    v = artifacts.resolve_version(d)
    assert {p.name for p in d.iterdir()} == {"CURRENT", ".recotorch.lock", v.name, "notes.txt"}
    assert artifacts.load(d).dim == 3 and artifacts.read_meta(d)["format"] == artifacts.FORMAT


def make_flat(src: Path, dst: Path) -> Path:
    """The directory an earlier release wrote: files at the top, format 1, no shapes or checksums."""
    shutil.copytree(artifacts.resolve_version(src), dst)
    meta = json.loads((dst / "model.json").read_text())
    for key in ("n_users", "n_items", "shapes", "dtypes", "files"):
        meta.pop(key)
    (dst / "model.json").write_text(json.dumps({**meta, "format": 1}))
    return dst


# ---- kill -9 ----------------------------------------------------------------------------------
SAVE = """
import sys
from recotorch import artifacts
artifacts.save(artifacts.load(sys.argv[1]), sys.argv[2])
"""
SAVE_LOOP = """
import sys
from recotorch import artifacts
models = [artifacts.load(p) for p in sys.argv[1:3]]
print("ready", flush=True)
n = 0
while True:
    artifacts.save(models[n % 2], sys.argv[3])
    n += 1
"""
SERVE = """
import json, sys
import torch
torch.set_num_threads(1)
from recotorch import artifacts
model = artifacts.load(sys.argv[1])
print(json.dumps({"dim": model.dim}), flush=True)
import uvicorn
from recotorch.serve.app import create_app
uvicorn.run(create_app(sys.argv[1], handle_sighup=False), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="warning")
"""


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"), **extra}


def first_line(proc: subprocess.Popen) -> str:
    """The child's first line of output, waiting at most HANG_GUARD seconds."""
    ready, _, _ = select.select([proc.stdout], [], [], HANG_GUARD)
    assert ready, "the child printed nothing (hang guard)"
    return proc.stdout.readline()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loaded_and_served(d: Path) -> int:
    """In a fresh process: load `d`, report its dim, start a server on it; the dim once /health answers 200."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(d), str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=child_env(), text=True)
    try:
        line = first_line(proc)
        assert line.startswith("{"), line + proc.stdout.read()
        dim = json.loads(line)["dim"]
        deadline = time.monotonic() + HANG_GUARD
        while True:
            assert proc.poll() is None, f"server exited: {proc.stdout.read()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    if response.status == 200:
                        return dim
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "server did not answer /health (hang guard)"
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait(HANG_GUARD)


STEPS = [s for s in artifacts.FAULT_STEPS if s != "user_features"]  # the toy data has no user features
AFTER_SWAP = {"after-swap", "cleanup"}
DIMS = {"A": 4, "B": 3}


@pytest.mark.slow
def test_kill_at_every_step_of_a_save_leaves_the_old_or_the_new_model(models, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(models["A"], d)
    held = "A"
    for step in STEPS:
        other = "B" if held == "A" else "A"
        done = subprocess.run([sys.executable, "-c", SAVE, str(models[other]), str(d)], env=child_env(
            RECOTORCH_FAULT=f"save:{step}"), capture_output=True, text=True, timeout=HANG_GUARD)
        assert done.returncode == -signal.SIGKILL, (step, done.returncode, done.stderr[-2000:])
        expected = other if step in AFTER_SWAP else held
        assert loaded_and_served(d) == DIMS[expected], step
        held = expected
    artifacts.save(artifacts.load(models["A"]), d)  # the next save clears every leftover
    assert {p.name for p in d.iterdir()} == {"CURRENT", ".recotorch.lock", artifacts.resolve_version(d).name}


@pytest.mark.slow
def test_kill_at_every_step_of_converting_a_flat_directory(models, tmp_path):
    for step in STEPS:
        d = make_flat(models["A"], tmp_path / step)
        done = subprocess.run([sys.executable, "-c", SAVE, str(models["B"]), str(d)], env=child_env(
            RECOTORCH_FAULT=f"save:{step}"), capture_output=True, text=True, timeout=HANG_GUARD)
        assert done.returncode == -signal.SIGKILL, (step, done.returncode, done.stderr[-2000:])
        assert artifacts.load(d).dim == DIMS["B" if step in AFTER_SWAP else "A"], step
    assert loaded_and_served(tmp_path / "cleanup") == DIMS["B"]


@pytest.mark.slow
def test_kill_of_a_first_save_leaves_nothing_or_the_model(models, tmp_path):
    for step in STEPS:
        d = tmp_path / step / "m"
        done = subprocess.run([sys.executable, "-c", SAVE, str(models["B"]), str(d)], env=child_env(
            RECOTORCH_FAULT=f"save:{step}"), capture_output=True, text=True, timeout=HANG_GUARD)
        if step in ("pointer-written", "cleanup"):  # a first save has no pointer swap inside and nothing to clean
            assert done.returncode == 0, done.stderr[-2000:]
        else:
            assert done.returncode == -signal.SIGKILL, (step, done.returncode, done.stderr[-2000:])
        if step == "after-swap" or done.returncode == 0:
            assert artifacts.load(d).dim == DIMS["B"]
        else:
            assert not d.exists()
            artifacts.save(artifacts.load(models["A"]), d)  # the retry works and removes the dead sibling
            assert [p.name for p in d.parent.iterdir()] == ["m"]


@pytest.mark.slow
def test_twenty_kills_at_random_moments_of_a_save_loop(models, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(models["A"], d)
    rng = random.Random(20261201)
    for attempt in range(20):
        proc = subprocess.Popen([sys.executable, "-c", SAVE_LOOP, str(models["A"]), str(models["B"]), str(d)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(), text=True)
        assert first_line(proc).strip() == "ready", proc.stderr.read()
        time.sleep(rng.uniform(0.0, 0.5))  # lands anywhere in one of the next few saves
        proc.send_signal(signal.SIGKILL)
        proc.wait(HANG_GUARD)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
        assert loaded_and_served(d) in (DIMS["A"], DIMS["B"]), attempt
