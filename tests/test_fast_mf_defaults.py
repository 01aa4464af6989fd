"""MF's defaults are the fast path: which step a fit takes, and how the CLI's --fast / --no-fast pick settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch

import recotorch as rt
from recotorch.core.device import seeded
from recotorch.models.mf import COMPILE_MIN_SAMPLES, COURSE_SETTINGS, FAST_SETTINGS
from recotorch.train import mf_kernel
from tests.conftest import planted_ratings

pytestmark = pytest.mark.usefixtures("one_thread")


def _step_of(model: rt.MatrixFactorization, train: rt.Interactions):
    """The fused step `fit` would hand the Trainer (None: the generic autograd path)."""
    model._prepare(train)
    with seeded(0):
        model.module_ = model._build_module(train.n_users, train.n_items)
    return model._fused_step()


def test_the_defaults_are_the_fast_settings_and_course_is_the_old_recipe():
    params = rt.MatrixFactorization().get_params()
    assert {k: params[k] for k in FAST_SETTINGS} == FAST_SETTINGS
    assert rt.MatrixFactorization().uses_kernel() and rt.MatrixFactorization.fast().uses_kernel()
    course = rt.MatrixFactorization.course(dim=8)
    assert {k: course.get_params()[k] for k in COURSE_SETTINGS} == COURSE_SETTINGS and course.dim == 8
    assert not course.uses_kernel()
    assert not rt.MatrixFactorization(optimizer="sparse_adam").uses_kernel()


def test_small_logs_take_the_tensor_step_and_large_ones_the_compiled_kernel():
    train = planted_ratings()  # 2,000-odd rows
    small = _step_of(rt.MatrixFactorization(dim=4), train)
    assert small is not None and not small.compiled  # loading Numba would cost more than it saves
    epochs = COMPILE_MIN_SAMPLES // len(train) + 1
    large = _step_of(rt.MatrixFactorization(dim=4, epochs=epochs), train)
    assert large is not None and large.compiled
    assert _step_of(rt.MatrixFactorization.course(dim=4), train) is None


def test_both_fused_steps_fit_the_same_model():
    """The tensor step and the compiled kernel are the same arithmetic, so the fits agree."""
    if not mf_kernel.available():
        pytest.skip("Numba is not installed")
    train = planted_ratings()
    tensor = rt.MatrixFactorization(dim=4, epochs=3).fit(train)
    compiled = rt.MatrixFactorization(dim=4, epochs=3)
    step_of = compiled._fused_step

    def forced():
        step = step_of()
        step.compiled = True
        return step

    compiled._fused_step = forced  # type: ignore[method-assign]
    compiled.fit(train)
    torch.testing.assert_close(compiled.module_.user_factors.weight, tensor.module_.user_factors.weight,
                               rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(compiled.module_.item_bias.weight, tensor.module_.item_bias.weight,
                               rtol=1e-3, atol=1e-5)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recotorch", *args], capture_output=True, text=True, timeout=600)


def test_fit_picks_the_settings_from_fast_and_no_fast(tmp_path: Path):
    frame = planted_ratings().to_frame()
    path = tmp_path / "ratings.csv"
    frame.write_csv(path)
    for flag, expected in ((None, FAST_SETTINGS), ("--no-fast", COURSE_SETTINGS), ("--fast", FAST_SETTINGS)):
        out = tmp_path / f"mf{flag}"
        proc = _cli("fit", str(path), "--model", "mf", "--epochs", "2", *([flag] if flag else []), "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        params = rt.load(out).get_params()
        assert {k: params[k] for k in expected if k != "epochs"} == {k: v for k, v in expected.items()
                                                                     if k != "epochs"}
        assert params["epochs"] == 2  # an option given overrides either set
    proc = _cli("fit", str(path), "--model", "ease", "--no-fast", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and "--no-fast" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()
    assert pl.read_csv(path).height == len(frame)  # the input is untouched
