"""The dataset registry: local copy, RECOTORCH_DATA_DIR, cache, download, RecBole fallback. No network."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import zipfile
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from recotorch.data import datasets
from recotorch.data.errors import ChecksumError, DataError, DownloadError
from recotorch.data.movielens import load_movielens

ML100K_FILES = ("u.data", "u.item", "u.user", "u.genre")
REAL_FETCH = datasets.fetch_recbole_wheel


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No data dir and a private cache, so nothing outside tmp_path is read or written."""
    monkeypatch.delenv("RECOTORCH_DATA_DIR", raising=False)
    monkeypatch.setenv("RECOTORCH_CACHE", str(tmp_path / "cache"))

    def no_pip(dest):
        raise AssertionError("the RecBole fallback must not run here")
    monkeypatch.setattr(datasets, "fetch_recbole_wheel", no_pip)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def zip_dir(src: Path, archive: Path, folder: str, names=None) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(src.iterdir()):
            if names is None or p.name in names:
                zf.write(p, f"{folder}/{p.name}")
    return archive


@pytest.fixture()
def ml100k_zip(tmp_path, ml100k_dir) -> Path:
    return zip_dir(ml100k_dir, tmp_path / "ml-100k.zip", "ml-100k", ML100K_FILES)


def serve(monkeypatch, name: str, archive: Path, *, sha: str | None = "auto", md5: str | None = None):
    """Point the registry entry at a local file:// URL with the given checksums."""
    digest = (sha256(archive) if archive.exists() else None) if sha == "auto" else sha
    entry = replace(datasets.DATASETS[name], url=archive.resolve().as_uri(), sha256=digest, md5=md5)
    monkeypatch.setitem(datasets.DATASETS, name, entry)
    return entry


def cache_entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_available_names():
    assert datasets.available() == ["ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m",
                                    "ml-latest-small", "ml-latest"]
    assert all(d.url == f"https://files.grouplens.org/datasets/movielens/{d.name}.zip"
               for d in datasets.DATASETS.values())
    assert datasets.DATASETS["ml-10m"].folder == "ml-10M100K"
    with pytest.raises(ValueError, match="unknown dataset 'ml-5m'; available: ml-100k"):
        datasets.load("ml-5m")


# ---- (1) a local copy ------------------------------------------------------------------------------
def test_path_to_a_directory(ml100k_dir, tmp_path):
    data = datasets.load("ml-100k", path=ml100k_dir)
    assert (len(data), data.n_users, data.n_items) == (100_000, 943, 1_682)
    assert data.source == data.meta["origin"] == f"local copy {ml100k_dir}"
    assert data.item_features is not None and data.user_features is not None
    assert cache_entries(tmp_path / "cache") == []


def test_path_to_the_zip_is_verified(ml100k_zip, monkeypatch, tmp_path):
    serve(monkeypatch, "ml-100k", ml100k_zip)
    data = datasets.load("ml-100k", path=ml100k_zip)
    assert len(data) == 100_000 and data.meta["origin"] == f"local copy {ml100k_zip} (sha256 verified)"
    serve(monkeypatch, "ml-100k", ml100k_zip, sha="0" * 64)
    with pytest.raises(ChecksumError, match=r"sha256 is .*, expected 0000"):
        datasets.load("ml-100k", path=ml100k_zip)
    with pytest.raises(DataError, match="nowhere: no such file or directory") as info:
        datasets.load("ml-100k", path=tmp_path / "nowhere")
    assert isinstance(info.value, FileNotFoundError)


# ---- (2) RECOTORCH_DATA_DIR -------------------------------------------------------------------------
def test_data_dir_env(ml100k_dir, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "ml-100k").symlink_to(ml100k_dir)
    monkeypatch.setenv("RECOTORCH_DATA_DIR", str(shared))
    data = datasets.load("ml-100k")
    assert data.meta["origin"] == f"local copy {shared / 'ml-100k'} (from RECOTORCH_DATA_DIR)"
    assert data.meta["dataset"] == "ml-100k"


def test_data_dir_env_with_the_archive_folder_name(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    (shared / "ml-10M100K").mkdir(parents=True)
    (shared / "ml-10M100K" / "ratings.dat").write_bytes(b"1::122::5::838985046\n")
    (shared / "ml-10M100K" / "movies.dat").write_bytes(b"122::Boomerang (1992)::Comedy|Romance\n")
    monkeypatch.setenv("RECOTORCH_DATA_DIR", str(shared))
    data = datasets.load("ml-10m", download=False)
    assert "ml-10M100K" in data.source and data.item_features["title"].to_list() == ["Boomerang"]


# ---- (3) the cache -----------------------------------------------------------------------------------
def test_cache_hit_without_download(ml100k_dir, tmp_path):
    cached = tmp_path / "mycache" / "ml-100k"
    cached.mkdir(parents=True)
    for name in ML100K_FILES:
        (cached / name).symlink_to(ml100k_dir / name)
    data = datasets.load("ml-100k", cache_dir=tmp_path / "mycache", download=False)
    assert data.meta["origin"] == f"cache {cached} (origin not recorded)"


def test_nothing_local_and_no_download(tmp_path, monkeypatch):
    monkeypatch.setenv("RECOTORCH_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"ml-1m is not available locally \(looked in .*empty/ml-1m "
                                        r"\(RECOTORCH_DATA_DIR\), .*cache/ml-1m \(cache\)\)"):
        datasets.load("ml-1m", download=False)


# ---- (4) download ------------------------------------------------------------------------------------
def test_download_verifies_unpacks_and_caches(ml100k_zip, monkeypatch, tmp_path, ml100k_dir):
    entry = serve(monkeypatch, "ml-100k", ml100k_zip)
    data = datasets.load("ml-100k")
    cache = tmp_path / "cache"
    assert data.meta["origin"] == f"downloaded from {entry.url} (sha256 verified), cached in {cache / 'ml-100k'}"
    assert cache_entries(cache) == ["ml-100k"]  # no partial archive or scratch folder left behind
    assert sorted(p.name for p in (cache / "ml-100k").iterdir()) == sorted(
        [*ML100K_FILES, ".recotorch-origin.json"])
    assert data.to_frame().equals(load_movielens(ml100k_dir).to_frame())
    ml100k_zip.unlink()  # the second time comes from the cache
    again = datasets.load("ml-100k")
    assert again.meta["origin"].startswith(f"cache {cache / 'ml-100k'} (downloaded from {entry.url} "
                                           "(sha256 verified) on ")


def test_checksum_mismatch_leaves_no_trace(ml100k_zip, monkeypatch, tmp_path):
    serve(monkeypatch, "ml-100k", ml100k_zip, sha="ab" * 32)
    with pytest.raises(ChecksumError) as info:
        datasets.load("ml-100k")
    assert "sha256 is " in str(info.value) and "expected abab" in str(info.value)
    assert info.value.path.startswith("file://")
    assert cache_entries(tmp_path / "cache") == []


def test_md5_is_used_when_no_sha256_is_known(ml100k_zip, monkeypatch):
    md5 = hashlib.md5(ml100k_zip.read_bytes()).hexdigest()
    serve(monkeypatch, "ml-100k", ml100k_zip, sha=None, md5=md5)
    assert "(md5 verified)" in datasets.load("ml-100k").meta["origin"]


def test_md5_mismatch(ml100k_zip, monkeypatch):
    serve(monkeypatch, "ml-100k", ml100k_zip, sha=None, md5="0" * 32)
    with pytest.raises(ChecksumError, match="md5 is"):
        datasets.load("ml-100k")


def test_unverified_download_is_logged(ml100k_zip, monkeypatch, caplog):
    serve(monkeypatch, "ml-100k", ml100k_zip, sha=None)
    with caplog.at_level(logging.WARNING, logger="recotorch"):
        data = datasets.load("ml-100k")
    assert "unverified, no checksum known" in data.meta["origin"]
    assert "no checksum is known for ml-100k" in caplog.text


def test_ml10m_archive_folder_is_cached_under_the_dataset_name(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "ratings.dat").write_bytes(b"1::122::5::838985046\n2::122::3.5::838985047\n")
    (src / "movies.dat").write_bytes(b"122::Boomerang (1992)::Comedy|Romance\n")
    serve(monkeypatch, "ml-10m", zip_dir(src, tmp_path / "ml-10m.zip", "ml-10M100K"))
    data = datasets.load("ml-10m")
    assert len(data) == 2 and (tmp_path / "cache" / "ml-10m" / "ratings.dat").is_file()


def test_archive_that_is_not_movielens(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello.txt").write_text("hi")
    serve(monkeypatch, "ml-1m", zip_dir(src, tmp_path / "ml-1m.zip", "ml-1m"))
    with pytest.raises(DataError, match="not a MovieLens directory"):
        datasets.load("ml-1m")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"this is not a zip")
    serve(monkeypatch, "ml-1m", bad)
    with pytest.raises(DataError, match="not a zip archive"):
        datasets.load("ml-1m")
    assert cache_entries(tmp_path / "cache") == []


def test_unreachable_publisher_without_fallback(tmp_path, monkeypatch):
    serve(monkeypatch, "ml-1m", tmp_path / "missing.zip")
    with pytest.raises(DownloadError, match=r"missing\.zip: cannot download"):
        datasets.load("ml-1m")


# ---- (5) the RecBole wheel for ml-100k ---------------------------------------------------------------
def fake_recbole_wheel(path: Path, ml100k_dir: Path, n_ratings: int | None = None) -> Path:
    """A zip with RecBole's internal layout and file formats, made from the GroupLens files."""
    data = load_movielens(ml100k_dir)
    ratings = data.to_frame().head(n_ratings) if n_ratings else data.to_frame()
    items = data.item_features.sort("id").select(
        pl.col("id").alias("item_id:token"), pl.col("title").alias("movie_title:token_seq"),
        pl.col("year").cast(pl.String).fill_null("unkonwn").alias("release_year:token"),
        pl.col("genres").list.join(" ").replace("", "unknown").alias("class:token_seq"))
    users = data.user_features.sort("id").rename(
        {"id": "user_id:token", "age": "age:token", "gender": "gender:token",
         "occupation": "occupation:token", "zip": "zip_code:token"})
    inter = ratings.rename({"user": "user_id:token", "item": "item_id:token",
                            "rating": "rating:float", "timestamp": "timestamp:float"})
    stem = datasets.RECBOLE_ML100K
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("recbole/__init__.py", "")
        for ext, frame in (("inter", inter), ("item", items), ("user", users)):
            zf.writestr(f"{stem}.{ext}", frame.write_csv(separator="\t", quote_style="never"))
    return path


def test_recbole_fallback_when_the_publisher_is_unreachable(tmp_path, monkeypatch, ml100k_dir, caplog):
    serve(monkeypatch, "ml-100k", tmp_path / "unreachable.zip")
    wheel = fake_recbole_wheel(tmp_path / "recbole-1.2.1-py3-none-any.whl", ml100k_dir)
    calls = []

    def fetch(dest: Path) -> Path:
        calls.append(dest)
        return Path(wheel)
    monkeypatch.setattr(datasets, "fetch_recbole_wheel", fetch)
    monkeypatch.setattr(datasets, "RECBOLE_WHEEL_SHA256", sha256(wheel))
    with caplog.at_level(logging.WARNING, logger="recotorch"):
        data = datasets.load("ml-100k")
    assert "trying the RecBole 1.2.1 wheel" in caplog.text and len(calls) == 1
    assert data.meta["origin"].startswith("RecBole 1.2.1 wheel from the package index (sha256 verified)")
    original = load_movielens(ml100k_dir)
    assert data.to_frame().equals(original.to_frame())
    assert data.item_features.drop("title").equals(original.item_features.drop("title"))
    assert data.user_features.equals(original.user_features)
    cache = tmp_path / "cache"
    assert cache_entries(cache) == ["ml-100k"]
    origin = json.loads((cache / "ml-100k" / ".recotorch-origin.json").read_text())["origin"]
    again = datasets.load("ml-100k")  # from the cache; the fallback does not run again
    assert len(calls) == 1 and again.meta["origin"] == f"cache {cache / 'ml-100k'} ({origin})"
    assert again.to_frame().equals(original.to_frame())


def test_recbole_wheel_with_the_wrong_checksum(tmp_path, monkeypatch, ml100k_dir):
    serve(monkeypatch, "ml-100k", tmp_path / "unreachable.zip")
    wheel = fake_recbole_wheel(tmp_path / "recbole-1.2.1-py3-none-any.whl", ml100k_dir)
    monkeypatch.setattr(datasets, "fetch_recbole_wheel", lambda dest: wheel)
    with pytest.raises(ChecksumError, match=f"expected {datasets.RECBOLE_WHEEL_SHA256}"):
        datasets.load("ml-100k")
    assert cache_entries(tmp_path / "cache") == []


def test_recbole_counts_are_checked(tmp_path, ml100k_dir):
    wheel = fake_recbole_wheel(tmp_path / "w.whl", ml100k_dir, n_ratings=500)
    with pytest.raises(DataError, match=r"'ratings': 500.*expected"):
        datasets.read_recbole_ml100k(wheel)
    with zipfile.ZipFile(tmp_path / "empty.whl", "w") as zf:
        zf.writestr("recbole/__init__.py", "")
    with pytest.raises(DataError, match=r"has no recbole/dataset_example/ml-100k/ml-100k\.inter"):
        datasets.read_recbole_ml100k(tmp_path / "empty.whl")


def test_both_sources_failing(tmp_path, monkeypatch):
    serve(monkeypatch, "ml-100k", tmp_path / "unreachable.zip")

    def offline(dest):
        raise DownloadError(None, "pip could not download recbole==1.2.1: no index")
    monkeypatch.setattr(datasets, "fetch_recbole_wheel", offline)
    with pytest.raises(DownloadError, match=r"cannot get ml-100k: .*cannot download.*; and pip could not"):
        datasets.load("ml-100k")


def test_fetch_recbole_wheel_reports_pip_failures(tmp_path, monkeypatch):
    def failing_run(cmd, **kwargs):
        assert cmd[1:4] == ["-m", "pip", "download"]
        assert {"--no-deps", "--only-binary=:all:", "recbole==1.2.1"} <= set(cmd)
        raise subprocess.CalledProcessError(1, cmd, stderr="ERROR: No matching distribution\n")
    monkeypatch.setattr(datasets.subprocess, "run", failing_run)
    with pytest.raises(DownloadError, match="No matching distribution"):
        REAL_FETCH(tmp_path)
