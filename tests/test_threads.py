"""The thread policy (recotorch.core.threads): passive OpenMP waiting, `--threads`, one thread for small steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recotorch.core import threads
from recotorch.train.config import TrainConfig
from recotorch.train.trainer import Trainer, step_work


@pytest.fixture(autouse=True)
def no_request():
    threads.set_threads(None)
    yield
    threads.set_threads(None)


def _child(code: str, env: dict[str, str]) -> dict:
    full = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**full, **env})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


PREPARE = ("import json, os, sys\nfrom recotorch.core import threads\nset_ = threads.prepare_process()\n"
           "print(json.dumps({'set': set_, 'policy': os.environ.get('OMP_WAIT_POLICY'), "
           "'torch': 'torch' in sys.modules}))")


def test_the_cli_entry_asks_for_passive_waiting_before_torch_is_imported():
    assert _child(PREPARE, {}) == {"set": True, "policy": "PASSIVE", "torch": False}


@pytest.mark.parametrize("env", [{"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "300000"}])
def test_a_wait_policy_the_user_chose_is_kept(env):
    got = _child(PREPARE, env)
    assert got["set"] is False and got["policy"] == env.get("OMP_WAIT_POLICY")


def test_nothing_is_changed_once_torch_is_imported():
    env: dict[str, str] = {}
    assert threads.prepare_process(env) is False  # this process imported torch above
    assert env == {}


def test_small_steps_get_one_thread_large_ones_every_core():
    cores = threads.available_cores()
    assert threads.training_threads(threads.SMALL_STEP - 1) == 1
    assert threads.training_threads(threads.SMALL_STEP) == cores
    assert threads.training_threads(1.0, threads.LARGE_EPOCH, compiled=True) == cores
    assert threads.training_threads(1e12, threads.LARGE_EPOCH - 1, compiled=True) == 1
    assert threads.preparation_threads(1000) == 1


def test_a_requested_count_overrides_the_policy():
    threads.set_threads(3)
    assert threads.training_threads(1.0) == 3
    assert threads.training_threads(1e12) == 3
    assert threads.preparation_threads(10) == 3
    assert threads.requested_threads() == 3


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_a_bad_count_is_refused(bad):
    with pytest.raises(ValueError, match="threads"):
        threads.set_threads(bad)


def test_the_step_estimate_counts_one_embedding_row_and_every_dense_weight():
    module = torch.nn.ModuleDict({"emb": torch.nn.Embedding(1000, 8), "lin": torch.nn.Linear(8, 4)})
    flat = {"x": torch.zeros(10, dtype=torch.long)}
    windows = {"x": torch.zeros(10, 5, dtype=torch.long)}
    assert step_work(module, flat, 32) == 3 * 32 * (8 + 8 * 4 + 4)
    assert step_work(module, windows, 32) == 5 * step_work(module, flat, 32)


class _Tiny(torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(width))


def _fit_recording(width: int) -> tuple[set[int], int]:
    module, seen = _Tiny(width), set()

    def loss(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        seen.add(torch.get_num_threads())
        return ((module.w.sum() - batch["y"]) ** 2).mean()

    before = torch.get_num_threads()
    Trainer(TrainConfig(epochs=1, batch_size=4, progress=False)).fit(module, loss, {"y": torch.ones(8)})
    assert torch.get_num_threads() == before  # the caller's count is put back
    return seen, before


def test_the_trainer_runs_small_steps_on_one_thread():
    torch.set_num_threads(2)
    try:
        seen, _ = _fit_recording(10)
    finally:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    assert seen == {1}


def test_the_trainer_follows_a_requested_count():
    threads.set_threads(2)
    seen, _ = _fit_recording(10)
    assert seen == {2}


def test_cli_threads_option(tmp_path: Path):
    data = tmp_path / "r.csv"
    data.write_text("user,item,rating\n" + "\n".join(f"{u},{i},{(u + i) % 5 + 1}" for u in range(20)
                                                      for i in range(10)) + "\n")
    ok = subprocess.run([sys.executable, "-m", "recotorch", "--threads", "1", "fit", str(data), "--epochs", "1",
                         "--out", str(tmp_path / "m")], capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-2000:]
    bad = subprocess.run([sys.executable, "-m", "recotorch", "--threads", "0", "fit", str(data),
                          "--out", str(tmp_path / "m2")], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--threads" in bad.stderr
    assert not (tmp_path / "m2").exists()


@pytest.mark.parametrize(("value", "expected"), [("3", 3), (" 2 ", 2), ("0", None), ("x", None), ("", None)])
def test_an_omp_num_threads_the_user_set_counts_as_a_request(value, expected):
    assert threads.threads_from_environment({"OMP_NUM_THREADS": value}) == expected
    assert threads.threads_from_environment({}) is None


def test_set_threads_is_part_of_the_python_api():
    import recotorch

    recotorch.set_threads(2)
    assert threads.requested_threads() == 2


def test_the_lr_finder_follows_the_trainers_policy():
    from recotorch.train.lr_finder import lr_find

    module = torch.nn.Module()
    module.w = torch.nn.Parameter(torch.zeros(10))
    seen: set[int] = set()

    def loss(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        seen.add(torch.get_num_threads())
        return ((module.w.sum() - batch["y"]) ** 2).mean()

    torch.set_num_threads(2)
    try:
        lr_find(module, loss, {"y": torch.ones(8)}, TrainConfig(batch_size=4, progress=False), steps=5)
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    assert seen == {1} and after == 2  # a small step runs on one thread; the caller's count is put back
