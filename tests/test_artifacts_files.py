"""Files stored with a model (`artifacts.save(files=)`): checksummed, checked on load, carried over, refused by name."""

from __future__ import annotations

import pytest

from recotorch.artifacts import load, read_file, resolve_version, save
from recotorch.errors import CorruptModelError
from recotorch.models import make_model
from tests.conftest import planted_ratings

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return make_model("bias").fit(planted_ratings(n_users=20, n_items=10))


def test_stored_files_come_back_byte_for_byte(model, tmp_path):
    save(model, tmp_path / "m", files={"schema.json": b'{"a": 1}', "catalogue.parquet": b"PAR1..."})
    assert read_file(tmp_path / "m", "schema.json") == b'{"a": 1}'
    assert read_file(tmp_path / "m", "catalogue.parquet") == b"PAR1..."
    assert read_file(tmp_path / "m", "other.json") is None
    loaded = load(tmp_path / "m")
    assert read_file(loaded.artifact_version_, "schema.json") == b'{"a": 1}'


def test_an_edited_stored_file_makes_the_model_corrupt(model, tmp_path):
    save(model, tmp_path / "m", files={"schema.json": b'{"a": 1}'})
    (resolve_version(tmp_path / "m") / "schema.json").write_bytes(b'{"a": 2}')
    with pytest.raises(CorruptModelError, match=r"schema\.json"):
        load(tmp_path / "m")
    with pytest.raises(CorruptModelError, match="SHA-256"):
        read_file(tmp_path / "m", "schema.json")


def test_a_loaded_model_saved_again_keeps_its_files_unless_replaced_or_dropped(model, tmp_path):
    save(model, tmp_path / "m", files={"schema.json": b"1", "notes.txt": b"n"})
    loaded = load(tmp_path / "m")
    save(loaded, tmp_path / "m")  # over itself: the files survive the version swap
    assert read_file(tmp_path / "m", "schema.json") == b"1" and read_file(tmp_path / "m", "notes.txt") == b"n"
    save(load(tmp_path / "m"), tmp_path / "copy", files={"schema.json": b"2", "notes.txt": None})
    assert read_file(tmp_path / "copy", "schema.json") == b"2" and read_file(tmp_path / "copy", "notes.txt") is None
    assert read_file(tmp_path / "m", "schema.json") == b"1"


@pytest.mark.parametrize("name", ["model.json", "weights.safetensors", "CURRENT", "../x.json", "a/b.json",
                                  "Schema.JSON", "x.pkl", ".hidden.json"])
def test_names_that_are_recotorchs_own_or_odd_are_refused(model, tmp_path, name):
    with pytest.raises(ValueError, match="cannot store"):
        save(model, tmp_path / "m", files={name: b"x"})
    assert not (tmp_path / "m").exists()


def test_a_model_without_stored_files_reads_none(model, tmp_path):
    save(model, tmp_path / "m")
    assert read_file(tmp_path / "m", "schema.json") is None
