"""A stored FAISS index is served only for the vectors it was built from; foreign or tampered ones are rebuilt.

`ann.json` records a checksum of the item vectors and the SHA-256 of `ann.faiss`; on load the index's
own stored vectors and cell assignments are compared with the model's, so a consistent-looking
but foreign or edited index is refused too (with a warning naming the file) and never served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("faiss")

from recotorch import artifacts
from recotorch.serve.index import INDEX_FILE, INDEX_META, AnnIndex, dot_form, exact_top_k, recall_at_k
from recotorch.serve.recommender import Recommender
from tests.helpers.synthetic import synthetic_mf

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Two 3,000-item models, each with its index stored in its current version folder."""
    root = tmp_path_factory.mktemp("ann")
    for name, seed in (("m", 5), ("other", 6)):
        synthetic_mf(50, 3_000, 8, seen_per_user=5, seed=seed).save(root / name)
        Recommender.load(root / name, ann_threshold=1000, save_index=True)
    return root


def items_of(d) -> np.ndarray:
    return dot_form(artifacts.load(d)).items.numpy()


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def set_meta(v, **changes) -> None:
    meta = json.loads((v / INDEX_META).read_text())
    (v / INDEX_META).write_text(json.dumps({**meta, **changes}))


def copy_model(stored, tmp_path, name="m"):
    shutil.copytree(stored / name, tmp_path / name)
    return tmp_path / name, artifacts.resolve_version(tmp_path / name)


def test_the_stored_index_is_read_back(stored):
    v = artifacts.resolve_version(stored / "m")
    assert (v / INDEX_FILE).is_file() and "file_sha256" in json.loads((v / INDEX_META).read_text())
    index = AnnIndex.load_if_matching(v, items_of(stored / "m"))
    assert index is not None and index.info.n_items == 3_000


def foreign_pair(v, other):
    for name in (INDEX_FILE, INDEX_META):
        shutil.copy(other / name, v / name)


def foreign_file_meta_rewritten(v, other):
    """Another model's ann.faiss with an ann.json claiming this model's vectors and the file's true SHA-256."""
    mine = json.loads((v / INDEX_META).read_text())
    shutil.copy(other / INDEX_FILE, v / INDEX_FILE)
    set_meta(v, checksum=mine["checksum"], file_sha256=sha(v / INDEX_FILE))


def flipped_byte(v, other):
    data = bytearray((v / INDEX_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (v / INDEX_FILE).write_bytes(bytes(data))


def flipped_byte_resigned(v, other):
    flipped_byte(v, other)
    set_meta(v, file_sha256=sha(v / INDEX_FILE))


def truncated_resigned(v, other):
    (v / INDEX_FILE).write_bytes((v / INDEX_FILE).read_bytes()[:1000])
    set_meta(v, file_sha256=sha(v / INDEX_FILE))


def moved_centroids(v, other):
    """Centroids edited and re-signed: the vectors are still this model's, in the wrong cells."""
    import faiss

    index = faiss.read_index(str(v / INDEX_FILE))
    ivf = faiss.extract_index_ivf(index)
    centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
    ivf.quantizer.reset()
    ivf.quantizer.add(np.ascontiguousarray(np.roll(centroids, 1, axis=0)))
    faiss.write_index(index, str(v / INDEX_FILE))
    set_meta(v, file_sha256=sha(v / INDEX_FILE))


def meta_garbage(v, other):
    (v / INDEX_META).write_text("{nope")


def meta_without_sha(v, other):
    meta = json.loads((v / INDEX_META).read_text())
    meta.pop("file_sha256")
    (v / INDEX_META).write_text(json.dumps(meta))


def meta_deleted(v, other):
    (v / INDEX_META).unlink()


def nprobe_zero(v, other):
    set_meta(v, nprobe=0)


CASES = [foreign_pair, foreign_file_meta_rewritten, flipped_byte, flipped_byte_resigned, truncated_resigned,
         moved_centroids, meta_garbage, meta_without_sha, meta_deleted, nprobe_zero]


@pytest.mark.parametrize("damage", CASES, ids=[c.__name__ for c in CASES])
def test_foreign_or_tampered_index_is_refused_with_a_warning(stored, tmp_path, caplog, damage):
    d, v = copy_model(stored, tmp_path)
    damage(v, artifacts.resolve_version(stored / "other"))
    with caplog.at_level(logging.WARNING, logger="recotorch.serve"):
        assert AnnIndex.load_if_matching(v, items_of(d)) is None
    assert any("ann." in r.getMessage() for r in caplog.records), caplog.text


def test_a_server_rebuilds_instead_of_serving_a_foreign_index(stored, tmp_path, caplog):
    """The issue's case: another model's index copied in dropped recall@10 from 0.99 to 0.06 without a word."""
    d, v = copy_model(stored, tmp_path)
    foreign_file_meta_rewritten(v, artifacts.resolve_version(stored / "other"))
    with caplog.at_level(logging.WARNING, logger="recotorch.serve"):
        rec = Recommender.load(d, ann_threshold=1000)
    assert "not using the stored ANN index" in caplog.text
    form = rec.form
    queries = form.users[:50].numpy()
    truth = exact_top_k(queries, form.items.numpy(), 10)
    assert recall_at_k(rec.index.search(queries, 10)[0], truth) >= 0.9


def test_an_index_moves_with_its_version(stored, tmp_path):
    """A new save retires the old version and its index together; the new version starts without one."""
    d, v = copy_model(stored, tmp_path)
    model = artifacts.load(d)
    with torch.no_grad():
        model.module_.item_factors.weight[0] += 1.0
    model.save(d)
    assert not v.exists()
    assert not (artifacts.resolve_version(d) / INDEX_FILE).exists()
