"""Tampered model directories are refused on load with `CorruptModelError` naming the file at fault.

Each case damages a copy of a saved model the way a careless or hostile user could. Most are run
twice: as damaged (the SHA-256 recorded at save time catches it) and "re-signed" (checksums
recomputed after the damage, as a tool rewriting the directory consistently would), so every
structural check behind the checksums is exercised on its own. A case passes only when loading
raises `CorruptModelError` (never another type) whose message names the expected file, and the
service refuses to start on it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from recotorch import artifacts
from recotorch.errors import CorruptModelError
from recotorch.models import EASE, MatrixFactorization
from tests.helpers.synthetic import toy_catalogue

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checks")
    MatrixFactorization(dim=4, epochs=2, seed=0).fit(toy_catalogue()).save(root / "mf")
    MatrixFactorization(dim=3, epochs=1, seed=1).fit(toy_catalogue(n_users=40, n_items=70, seed=1)).save(root / "other")
    return {"mf": root / "mf", "other": root / "other"}


def sha(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def resign(d: Path) -> None:
    """Recompute every checksum after a change (model.json's files, CURRENT's model.json)."""
    v = artifacts.resolve_version(d)
    try:
        meta = json.loads((v / "model.json").read_text())
        files = meta["files"]
    except (OSError, ValueError, KeyError, TypeError):
        meta = files = None  # model.json itself is the damage: only CURRENT can follow it
    if isinstance(files, dict):
        meta["files"] = {name: sha(v / name) if (v / name).is_file() else digest for name, digest in files.items()}
        (v / "model.json").write_text(json.dumps(meta))
    pointer = json.loads((d / "CURRENT").read_text())
    if (v / "model.json").is_file():
        (d / "CURRENT").write_text(json.dumps({**pointer, "model.json": sha(v / "model.json")}))


def edit_json(name: str, change: Callable[[dict], object]) -> Callable[[Path, Path], None]:
    def apply(v: Path, other: Path) -> None:
        payload = json.loads((v / name).read_text())
        change(payload)  # in place
        (v / name).write_text(json.dumps(payload))
    return apply


def edit_tensors(change: Callable[[dict[str, torch.Tensor]], None], *, record: bool = False
                 ) -> Callable[[Path, Path], None]:
    """Rewrite weights.safetensors; with `record`, model.json's shapes/dtypes follow (only deeper checks can tell)."""
    def apply(v: Path, other: Path) -> None:
        tensors = load_file(v / "weights.safetensors")
        change(tensors)
        save_file(tensors, v / "weights.safetensors")
        if record:
            meta = json.loads((v / "model.json").read_text())
            meta["shapes"] = {k: list(t.shape) for k, t in tensors.items()}
            meta["dtypes"] = {k: str(t.dtype).removeprefix("torch.") for k, t in tensors.items()}
            (v / "model.json").write_text(json.dumps(meta))
    return apply


def truncate(name: str, keep: float = 0.5) -> Callable[[Path, Path], None]:
    def apply(v: Path, other: Path) -> None:
        data = (v / name).read_bytes()
        (v / name).write_bytes(data[: int(len(data) * keep)])
    return apply


def write(name: str, text: str) -> Callable[[Path, Path], None]:
    return lambda v, other: (v / name).write_text(text)


def delete(name: str) -> Callable[[Path, Path], None]:
    return lambda v, other: (v / name).unlink()


def from_other(name: str) -> Callable[[Path, Path], None]:
    return lambda v, other: shutil.copy(other / name, v / name)


def _set(t: dict, key: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    t[key] = fn(t[key].clone())


def _nan(x: torch.Tensor) -> torch.Tensor:
    x.view(-1)[3] = float("nan")
    return x


def _inf(x: torch.Tensor) -> torch.Tensor:
    x.view(-1)[0] = float("inf")
    return x


def _huge(x: torch.Tensor) -> torch.Tensor:
    x.view(-1)[1] = 1e30
    return x


def _first_id(payload: dict, new: object) -> None:
    payload["ids"][0] = new


def _swap_rows(frame_file: Path) -> None:
    import polars as pl

    frame = pl.read_parquet(frame_file)
    frame.reverse().write_parquet(frame_file)


UF, W = "module.user_factors.weight", "weights.safetensors"
# (case, damage to the current version folder, file the message must name, re-sign afterwards)
CASES: list[tuple[str, Callable[[Path, Path], None], str, bool]] = [
    # model.json
    ("model.json deleted", delete("model.json"), "model.json", False),
    ("model.json truncated", truncate("model.json"), "model.json", True),
    ("model.json not an object", write("model.json", "[1, 2]"), "model.json", True),
    ("model.json not UTF-8", lambda v, o: (v / "model.json").write_bytes(b"\xff\xfe{"), "model.json", True),
    ("model.json without params", edit_json("model.json", lambda m: m.pop("params")), "model.json", True),
    ("format 99", edit_json("model.json", lambda m: m.update(format=99)), "model.json", True),
    ("format as a string", edit_json("model.json", lambda m: m.update(format="2")), "model.json", True),
    ("format 1 in a version folder", edit_json("model.json", lambda m: m.update(format=1)), "model.json", True),
    ("unknown model name", edit_json("model.json", lambda m: m.update(model="nosuch")), "model.json", True),
    ("params with an unknown argument", edit_json("model.json", lambda m: m["params"].update(bogus=1)),
     "model.json", True),
    ("params dim changed", edit_json("model.json", lambda m: m["params"].update(dim=9)), "model.json", True),
    ("rating range edited (checksum only)", edit_json("model.json", lambda m: m["extra"].update(
        rating_range=[0, 50])), "model.json", False),
    ("one number edited in model.json", edit_json("model.json", lambda m: m["extra"].update(baseline_mean=9.0)),
     "model.json", False),
    ("n_users recorded differently", edit_json("model.json", lambda m: m.update(n_users=61)), "users.json", True),
    ("shape recorded differently", edit_json("model.json", lambda m: m["shapes"].update({UF: [60, 5]})), W, True),
    ("files list escapes the folder", edit_json("model.json", lambda m: m["files"].update({"../x": "0"})),
     "model.json", True),
    ("files list drops users.json", edit_json("model.json", lambda m: m["files"].pop("users.json")),
     "model.json", True),
    ("extra.n_users edited", edit_json("model.json", lambda m: m["extra"].update(n_users=3)), "model.json", True),
    # users.json / items.json
    ("users.json deleted", delete("users.json"), "users.json", False),
    ("users.json truncated", truncate("users.json"), "users.json", False),
    ("users.json truncated, re-signed", truncate("users.json"), "users.json", True),
    ("users.json of another model", from_other("users.json"), "users.json", True),
    ("users.json with 3 ids", edit_json("users.json", lambda p: p.update(ids=p["ids"][:3])), "users.json", True),
    ("users.json duplicate id", edit_json("users.json", lambda p: _first_id(p, p["ids"][1])), "users.json", True),
    ("users.json str id in int vocab", edit_json("users.json", lambda p: _first_id(p, "x")), "users.json", True),
    ("users.json null id", edit_json("users.json", lambda p: _first_id(p, None)), "users.json", True),
    ("users.json bad kind", edit_json("users.json", lambda p: p.update(kind="float")), "users.json", True),
    ("users.json one id edited", edit_json("users.json", lambda p: _first_id(p, 999_999)), "users.json", False),
    ("users.json ids swapped (checksum)", edit_json("users.json", lambda p: p["ids"].reverse()), "users.json",
     False),
    ("items.json with 3 ids", edit_json("items.json", lambda p: p.update(ids=p["ids"][:3])), "items.json", True),
    ("items.json of another model", from_other("items.json"), "items.json", True),
    # weights.safetensors
    ("weights deleted", delete(W), W, False),
    ("weights truncated", truncate(W), W, False),
    ("weights truncated, re-signed", truncate(W), W, True),
    ("weights garbage", write(W, "not safetensors at all"), W, True),
    ("weights of another model", from_other(W), W, True),
    ("NaN weight", edit_tensors(lambda t: _set(t, UF, _nan)), W, True),
    ("infinite weight", edit_tensors(lambda t: _set(t, "module.item_bias.weight", _inf)), W, True),
    ("huge weight", edit_tensors(lambda t: _set(t, UF, _huge)), W, True),
    ("NaN baseline", edit_tensors(lambda t: _set(t, "baseline.item_bias", _nan)), W, True),
    ("weights as float64", edit_tensors(lambda t: _set(t, UF, lambda x: x.double())), W, True),
    ("tensor missing", edit_tensors(lambda t: t.pop("module.item_bias.weight")), W, True),
    ("tensor missing, recorded", edit_tensors(lambda t: t.pop("module.item_bias.weight"), record=True), W, True),
    ("extra tensor", edit_tensors(lambda t: t.update(extra=torch.zeros(2))), W, True),
    ("embedding reshaped, recorded", edit_tensors(lambda t: _set(t, UF, lambda x: x[:, :3].contiguous()),
                                                   record=True), W, True),
    ("embedding rows dropped, recorded", edit_tensors(lambda t: _set(t, UF, lambda x: x[:50].contiguous()),
                                                       record=True), W, True),
    ("seen index out of range", edit_tensors(lambda t: _set(t, "seen.indices", lambda x: x.index_fill_(
        0, torch.tensor([5]), 80))), W, True),
    ("seen index negative", edit_tensors(lambda t: _set(t, "seen.indices", lambda x: x.index_fill_(
        0, torch.tensor([5]), -1))), W, True),
    ("seen indptr decreasing", edit_tensors(lambda t: _set(t, "seen.indptr", lambda x: x.index_fill_(
        0, torch.tensor([3]), 0))), W, True),
    ("seen indptr one row short, recorded", edit_tensors(lambda t: _set(t, "seen.indptr", lambda x: torch.cat(
        [x[:-2], x[-1:]])), record=True), W, True),
    ("seen indices as float, recorded", edit_tensors(lambda t: _set(t, "seen.indices", lambda x: x.float()),
                                                      record=True), W, True),
    ("seen CSR missing, recorded", edit_tensors(lambda t: (t.pop("seen.indptr"), t.pop("seen.indices")),
                                                record=True), W, True),
    # side features
    ("item features deleted", delete("item_features.parquet"), "item_features.parquet", False),
    ("item features truncated", truncate("item_features.parquet"), "item_features.parquet", True),
    ("item features of another model", from_other("item_features.parquet"), "item_features.parquet", True),
    ("item features reordered", lambda v, o: _swap_rows(v / "item_features.parquet"), "item_features.parquet",
     True),
]


def _pointer_cases() -> list[tuple[str, Callable[[Path], None]]]:
    def names(version: str) -> Callable[[Path], None]:
        def apply(d: Path) -> None:
            pointer = json.loads((d / "CURRENT").read_text())
            (d / "CURRENT").write_text(json.dumps({**pointer, "version": version}))
        return apply

    return [
        ("CURRENT deleted", lambda d: (d / "CURRENT").unlink()),
        ("CURRENT garbage", lambda d: (d / "CURRENT").write_text("v-oops")),
        ("CURRENT empty", lambda d: (d / "CURRENT").write_text("")),
        ("CURRENT not an object", lambda d: (d / "CURRENT").write_text("[]")),
        ("CURRENT names a missing version", names("v-20000101T000000000000Z-00000000")),
        ("CURRENT names a path outside", names("../other")),
        ("CURRENT names a file", lambda d: (names("v-20000101T000000000000Z-00000001")(d),
                                            (d / "v-20000101T000000000000Z-00000001").write_text("x"))),
    ]


def assert_refused(d: Path, file: str) -> None:
    with pytest.raises(CorruptModelError) as info:
        artifacts.load(d)
    assert file in str(info.value), str(info.value)
    assert info.value.path.name == file or file in info.value.message, str(info.value)
    from recotorch.serve.app import create_app  # the service refuses to start on it

    with pytest.raises(CorruptModelError):
        create_app(d, handle_sighup=False)


@pytest.mark.parametrize(("damage", "file", "re_sign"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_tampered_directory_is_refused(saved, tmp_path, damage, file, re_sign):
    d = tmp_path / "m"
    shutil.copytree(saved["mf"], d)
    damage(artifacts.resolve_version(d), artifacts.resolve_version(saved["other"]))
    if re_sign:
        resign(d)
    assert_refused(d, file)


@pytest.mark.parametrize("damage", [c[1] for c in _pointer_cases()], ids=[c[0] for c in _pointer_cases()])
def test_tampered_pointer_is_refused(saved, tmp_path, damage):
    d = tmp_path / "m"
    shutil.copytree(saved["mf"], d)
    damage(d)
    assert_refused(d, "CURRENT")


def test_the_untouched_copy_loads(saved, tmp_path):
    """The control: a plain copy passes every check, so the refusals above are the damage's doing."""
    shutil.copytree(saved["mf"], tmp_path / "m")
    resign(tmp_path / "m")
    model = artifacts.load(tmp_path / "m")
    assert np.isfinite(model.predict([1], [1]).values).all()


# ---- the flat layout of earlier releases (format 1): no checksums, the structural checks still hold ----
def make_flat(src: Path, dst: Path) -> Path:
    """The directory an earlier release wrote: files at the top, format 1, no shapes or checksums."""
    shutil.copytree(artifacts.resolve_version(src), dst)
    meta = json.loads((dst / "model.json").read_text())
    for key in ("n_users", "n_items", "shapes", "dtypes", "files"):
        meta.pop(key)
    (dst / "model.json").write_text(json.dumps({**meta, "format": 1}))
    return dst


FLAT_CASES = [
    ("users.json with 3 ids", edit_json("users.json", lambda p: p.update(ids=p["ids"][:3])), "users.json"),
    ("items.json with 3 ids", edit_json("items.json", lambda p: p.update(ids=p["ids"][:3])), "items.json"),
    ("NaN weight", edit_tensors(lambda t: _set(t, UF, _nan)), W),
    ("seen index out of range", edit_tensors(lambda t: _set(t, "seen.indices", lambda x: x.index_fill_(
        0, torch.tensor([5]), 500))), W),
    ("weights of another model", from_other(W), W),
    ("embedding rows dropped", edit_tensors(lambda t: _set(t, UF, lambda x: x[:50].contiguous())), W),
    ("model.json garbage", write("model.json", "{not json"), "model.json"),
    ("features with too few rows", lambda v, o: __import__("polars").read_parquet(
        v / "item_features.parquet").head(5).write_parquet(v / "item_features.parquet"), "item_features.parquet"),
]


@pytest.mark.parametrize(("damage", "file"), [c[1:] for c in FLAT_CASES], ids=[c[0] for c in FLAT_CASES])
def test_tampered_flat_directory_is_refused(saved, tmp_path, damage, file):
    d = make_flat(saved["mf"], tmp_path / "flat")
    damage(d, artifacts.resolve_version(saved["other"]))
    assert_refused(d, file)


def test_flat_directory_loads_and_answers_as_saved(saved, tmp_path):
    d = make_flat(saved["mf"], tmp_path / "flat")
    old, new = artifacts.load(saved["mf"]), artifacts.load(d)
    assert artifacts.resolve_version(d) == d
    np.testing.assert_array_equal(old.predict([1, 2], [3, 4]).values, new.predict([1, 2], [3, 4]).values)
    assert artifacts.read_meta(d)["format"] == 1 and artifacts.version_tag(d).startswith("flat@")


def test_item_item_model_with_wrong_vocabulary_is_refused(tmp_path):
    """EASE holds an (n_items, n_items) matrix, no embedding: the sizes and the probe catch a short items.json."""
    from recotorch.data.implicit import to_implicit

    EASE(reg=10).fit(to_implicit(toy_catalogue(), threshold=4)).save(tmp_path / "ease")
    v = artifacts.resolve_version(tmp_path / "ease")
    edit_json("items.json", lambda p: p.update(ids=p["ids"][:-1]))(v, v)
    edit_json("model.json", lambda m: m.update(n_items=m["n_items"] - 1))(v, v)
    edit_tensors(lambda t: None)(v, v)
    resign(tmp_path / "ease")
    with pytest.raises(CorruptModelError, match=r"items\.json|weights\.safetensors"):
        artifacts.load(tmp_path / "ease")


def test_a_path_that_is_no_model_directory_is_one_clear_error(tmp_path):
    from recotorch.errors import InputFileError

    (tmp_path / "ratings.csv").write_text("user,item\n1,2\n")
    (tmp_path / "folder").mkdir()
    for path in (tmp_path / "missing", tmp_path / "ratings.csv", tmp_path / "folder"):
        with pytest.raises(InputFileError, match="model directory") as info:
            artifacts.load(path)
        assert isinstance(info.value, FileNotFoundError) and str(path) in str(info.value)
