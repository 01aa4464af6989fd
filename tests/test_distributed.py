"""Data parallelism: 2 real processes under torchrun (gloo, CPU) train what 1 process trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import recotorch as rt
from recotorch.data.synthetic import generate
from recotorch.train import distributed

SETTINGS = {
    "adamw": {"dim": 8, "epochs": 3, "batch_size": 256, "lr": 2e-2, "weight_decay": 0.1},
    "rowwise_adagrad": {"dim": 8, "epochs": 3, "batch_size": 256, "lr": 0.1, "weight_decay": 0.1,
                        "optimizer": "rowwise_adagrad"},
}

HANG_GUARD = 1500  # seconds; a hang guard only: the run needs ~30 s, and many times that on a busy machine

WORKER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import torch
    import recotorch as rt
    from recotorch.data.synthetic import generate
    from recotorch.train import distributed

    out, settings = Path(sys.argv[1]), json.loads(sys.argv[2])
    data = generate(300, 200, 5001, dim=4, seed=1).interactions()
    for name, params in settings.items():
        model = rt.MatrixFactorization(**params).fit(data, checkpoint_dir=out / f"ckpt_{name}")
        if distributed.is_main_process():
            model.save(out / f"model_{name}")
    (out / f"rank{distributed.rank()}.json").write_text(json.dumps(
        {"world": distributed.world_size(), "main": distributed.is_main_process(),
         "threads": torch.get_num_threads()}))
""")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """Train every setting once under `torchrun --nproc_per_node=2`."""
    out = tmp_path_factory.mktemp("ddp")
    script = out / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(out), json.dumps(SETTINGS)],
                          capture_output=True, text=True, timeout=HANG_GUARD, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("name", list(SETTINGS))
def test_two_processes_match_one_at_the_same_global_batch(ddp_run, name):
    data = generate(300, 200, 5001, dim=4, seed=1).interactions()  # 5001 rows: the last batch is odd
    single = rt.MatrixFactorization(**SETTINGS[name]).fit(data)
    parallel = rt.load(ddp_run / f"model_{name}")
    torch.testing.assert_close(parallel.item_vectors(), single.item_vectors(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(parallel.user_vectors(), single.user_vectors(), atol=1e-4, rtol=1e-4)
    losses = [e["train_loss"] for e in parallel.history_.to_dict()["epochs"]]
    assert losses == pytest.approx([e.train_loss for e in single.history_.epochs], rel=1e-4)


def test_every_rank_ran_but_only_rank_zero_wrote(ddp_run):
    ranks = [json.loads((ddp_run / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert [r["main"] for r in ranks] == [True, False]
    for name in SETTINGS:
        files = sorted(p.name for p in (ddp_run / f"ckpt_{name}").iterdir())
        assert files == ["checkpoint.pt"]  # one writer, no temporary left behind
    assert sorted(p.name for p in ddp_run.glob("model_*")) == [f"model_{n}" for n in sorted(SETTINGS)]


def test_shard_gives_each_rank_its_slice_and_weight(monkeypatch):
    rows = torch.arange(10, 15)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert distributed.shard(rows)[0].tolist() == [10, 11, 12] and distributed.shard(rows)[1] == 0.6
    monkeypatch.setenv("RANK", "1")
    local, weight = distributed.shard(rows)
    assert local.tolist() == [13, 14] and weight == 0.4
    local, weight = distributed.shard(torch.tensor([7]))  # a final batch smaller than the world
    assert local.tolist() == [7] and weight == 0.0
    assert not distributed.is_main_process()


def test_single_process_is_the_plain_path(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    rows = torch.arange(5)
    assert distributed.shard(rows) == (rows, 1.0)
    assert distributed.is_main_process() and not distributed.is_distributed()
    assert distributed.setup(torch.device("cpu")) == torch.device("cpu")
