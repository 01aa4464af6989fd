"""The one training loop: schedule, accumulation, early stopping, checkpoints, the LR finder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recotorch.train.config import TrainConfig
from recotorch.train.lr_finder import lr_find
from recotorch.train.trainer import Trainer, seeded


def _problem(n: int = 2000, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    w = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0])
    return {"x": x, "y": x @ w + 0.01 * torch.randn(n, generator=g)}, w


def _fit(cfg: TrainConfig, **kwargs) -> tuple[nn.Linear, object]:
    data, _ = _problem()
    with seeded(cfg.seed):
        module = nn.Linear(5, 1, bias=False)
    loss = lambda b: ((module(b["x"]).squeeze(1) - b["y"]) ** 2).mean()  # noqa: E731
    history = Trainer(cfg, **kwargs).fit(module, loss, data, kwargs.pop("validate", None))
    return module, history


def test_learns_a_linear_map():
    module, history = _fit(TrainConfig(epochs=20, batch_size=64, lr=5e-2, weight_decay=0.0))
    _, w = _problem()
    torch.testing.assert_close(module.weight.detach().squeeze(0), w, atol=0.05, rtol=0)
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss / 10


def test_one_cycle_warms_up_then_anneals():
    _, history = _fit(TrainConfig(epochs=8, batch_size=100, lr=1e-2, weight_decay=0.0, pct_start=0.25))
    lrs = [e.lr for e in history.epochs]  # the rate after each epoch's last step
    peak = lrs.index(max(lrs))
    assert 0 < peak < len(lrs) - 1
    assert lrs[-1] < lrs[peak] / 100


def test_gradient_accumulation_matches_a_larger_batch():
    a, _ = _fit(TrainConfig(epochs=3, batch_size=200, lr=1e-2, weight_decay=0.1))
    b, _ = _fit(TrainConfig(epochs=3, batch_size=100, grad_accum=2, lr=1e-2, weight_decay=0.1))
    torch.testing.assert_close(a.weight, b.weight, atol=1e-5, rtol=1e-5)


def test_early_stopping_restores_the_best_epoch():
    data, _ = _problem()
    with seeded(0):
        module = nn.Linear(5, 1, bias=False)
    loss = lambda b: ((module(b["x"]).squeeze(1) - b["y"]) ** 2).mean()  # noqa: E731
    # a validation score that is best at epoch 2 and worse afterwards
    scores = iter([5.0, 4.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    weights = []

    def validate() -> float:
        weights.append(module.weight.detach().clone())
        return next(scores)

    history = Trainer(TrainConfig(epochs=8, batch_size=100, patience=2)).fit(module, loss, data, validate)
    assert history.best_epoch == 2 and history.stopped_early
    assert len(history.epochs) == 5  # epochs 3 and 4 did not improve: stop
    torch.testing.assert_close(module.weight.detach(), weights[2])


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    cfg = TrainConfig(epochs=6, batch_size=128, lr=1e-2, weight_decay=0.1, seed=5)
    full, _ = _fit(cfg)
    # a run stopped after 3 epochs (as if killed), then resumed with the same settings
    _fit(TrainConfig(**{**cfg.to_dict(), "epochs": 6}), checkpoint_dir=tmp_path, resume=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["fingerprint"]
    partial_cfg = cfg
    data, _ = _problem()
    with seeded(cfg.seed):
        module = nn.Linear(5, 1, bias=False)
    loss = lambda b: ((module(b["x"]).squeeze(1) - b["y"]) ** 2).mean()  # noqa: E731

    class Stop(Exception):
        pass

    calls = {"n": 0}

    def validate() -> float:
        calls["n"] += 1
        if calls["n"] == 4:
            raise Stop  # dies during epoch 4's bookkeeping, before its checkpoint
        return 1.0

    with pytest.raises(Stop):
        Trainer(partial_cfg, checkpoint_dir=tmp_path / "b").fit(module, loss, data, validate)
    with seeded(cfg.seed):
        module = nn.Linear(5, 1, bias=False)
    history = Trainer(partial_cfg, checkpoint_dir=tmp_path / "b", resume=True).fit(
        module, lambda b: ((module(b["x"]).squeeze(1) - b["y"]) ** 2).mean(), data, lambda: 1.0)
    assert history.resumed_from == 3
    torch.testing.assert_close(module.weight, full.weight, atol=0, rtol=0)


def test_resume_refuses_a_checkpoint_from_other_settings(tmp_path):
    _fit(TrainConfig(epochs=2, lr=1e-2), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="other settings"):
        _fit(TrainConfig(epochs=2, lr=2e-2), checkpoint_dir=tmp_path, resume=True)


def test_config_validation():
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="cosine")  # type: ignore[arg-type]


def test_lr_finder_suggests_a_rate_and_leaves_the_module_unchanged(tmp_path):
    data, _ = _problem()
    with seeded(0):
        module = nn.Linear(5, 1, bias=False)
    before = module.weight.detach().clone()
    loss = lambda b: ((module(b["x"]).squeeze(1) - b["y"]) ** 2).mean()  # noqa: E731
    result = lr_find(module, loss, data, TrainConfig(batch_size=64, weight_decay=0.0), end=1e4, steps=200)
    assert torch.equal(module.weight.detach(), before)
    assert 1e-4 < result.suggestion < 10.0
    assert min(result.losses) < result.losses[0] / 5
    assert len(result.lrs) < 200  # the loss diverged at huge rates and the search stopped
    png = result.plot(tmp_path / "lr.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
