"""Named public datasets: `load("ml-100k")` finds a local copy or the cache, else downloads.

Where the data is looked for, in order:

1. the `path` argument: a directory holding the files, or the publisher's .zip (checked, then
   unpacked into a temporary folder for this call only);
2. `$RECOTORCH_DATA_DIR/<name>/` (or the archive's own folder name, e.g. ml-10M100K);
3. the cache, `<cache_dir or $RECOTORCH_CACHE or ~/.cache/recotorch>/<name>/`;
4. the publisher's archive, downloaded (15 s network timeout), checked against its checksum
   and unpacked into the cache atomically (unpacked beside it, then renamed into place);
5. ml-100k only, when the publisher cannot be reached: the copy inside the RecBole 1.2.1 wheel,
   fetched (not installed) with pip from the package index, checked, converted and cached.

`Interactions.source` and `meta["origin"]` say which of these the data came from.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from recotorch.data.errors import ChecksumError, DataError, DownloadError, MissingFileError
from recotorch.data.interactions import Interactions
from recotorch.data.movielens import detect_layout, find_root, load_movielens
from recotorch.data.readers import read_interactions
from recotorch.errors import OptionError

log = logging.getLogger("recotorch")

DOWNLOAD_TIMEOUT = 15  # seconds without progress before a download is given up
_MARKER = ".recotorch-origin.json"  # written into each cached dataset: where it came from
_GROUPLENS = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True)
class Dataset:
    """A downloadable dataset: archive URL, folder inside the archive, known checksums."""

    name: str
    url: str
    folder: str
    sha256: str | None = None
    md5: str | None = None  # the publisher's own `<archive>.md5`; used when no sha256 is known


# Checksums: the md5 values are GroupLens's published `.zip.md5` sidecars; the sha256 values
# are those recorded by several independent projects that verified those md5s. No sha256 is
# known for ml-32m. ml-latest and ml-latest-small are re-issued over time, so none is pinned:
# their downloads are logged as unverified.
DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("ml-100k", f"{_GROUPLENS}/ml-100k.zip", "ml-100k",
            "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
            "0e33842e24a9c977be4e0107933c0723"),
    Dataset("ml-1m", f"{_GROUPLENS}/ml-1m.zip", "ml-1m",
            "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
            "c4d9eecfca2ab87c1945afe126590906"),
    Dataset("ml-10m", f"{_GROUPLENS}/ml-10m.zip", "ml-10M100K",
            "813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862",
            "ce571fd55effeba0271552578f2648bd"),
    Dataset("ml-20m", f"{_GROUPLENS}/ml-20m.zip", "ml-20m",
            "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
            "cd245b17a1ae2cc31bb14903e1204af3"),
    Dataset("ml-25m", f"{_GROUPLENS}/ml-25m.zip", "ml-25m",
            "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
            "6b51fb2759a8657d3bfcbfc42b592ada"),
    Dataset("ml-32m", f"{_GROUPLENS}/ml-32m.zip", "ml-32m", None,
            "d472be332d4daa821edc399621853b57"),
    Dataset("ml-latest-small", f"{_GROUPLENS}/ml-latest-small.zip", "ml-latest-small"),
    Dataset("ml-latest", f"{_GROUPLENS}/ml-latest.zip", "ml-latest"),
)}

# The ml-100k fallback: RecBole ships a converted copy of ml-100k inside its wheel.
RECBOLE_VERSION = "1.2.1"
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
RECBOLE_ML100K = "recbole/dataset_example/ml-100k/ml-100k"  # + .inter / .item / .user
ML100K_COUNTS = {"ratings": 100_000, "users": 943, "items": 1_682}


def available() -> list[str]:
    """Names `load` knows."""
    return list(DATASETS)


def default_cache_dir() -> Path:
    """`$RECOTORCH_CACHE`, else ~/.cache/recotorch."""
    return Path(os.environ.get("RECOTORCH_CACHE") or Path.home() / ".cache" / "recotorch").expanduser()


def load(name: str, *, path: str | Path | None = None, cache_dir: str | Path | None = None,
         download: bool = True) -> Interactions:
    """A named dataset as `Interactions` (ratings, timestamps, side features).

    `path` is a local copy (directory or .zip), `cache_dir` overrides the cache, and
    `download=False` raises instead of fetching. See the module docstring for the order.

    >>> data = load("ml-100k")  # doctest: +SKIP
    >>> data.meta["origin"]  # doctest: +SKIP
    'cache ~/.cache/recotorch/ml-100k (downloaded from https://files.grouplens.org/...
     ml-100k.zip (sha256 verified) on 2025-01-01 10:00 UTC)'
    """
    if name not in DATASETS:
        raise OptionError("name", f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    info = DATASETS[name]
    if path is not None:
        return _load_local(info, Path(path).expanduser())
    looked = []
    if env := os.environ.get("RECOTORCH_DATA_DIR"):
        for candidate in dict.fromkeys((Path(env) / name, Path(env) / info.folder)):
            if candidate.is_dir():
                return _labelled(_read_dir(candidate, info), info,
                                 f"local copy {candidate} (from RECOTORCH_DATA_DIR)")
        looked.append(f"{Path(env) / name} (RECOTORCH_DATA_DIR)")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = cache / name
    if target.is_dir():
        return _labelled(_read_dir(target, info), info, f"cache {target} ({_recorded(target)})")
    looked.append(f"{target} (cache)")
    if not download:
        raise DataError(None, f"{name} is not available locally (looked in {', '.join(looked)}); "
                        "pass path=... or download=True")
    try:
        how = _download(info, cache)
    except DownloadError as exc:
        if name != "ml-100k":
            raise
        log.warning("%s; trying the RecBole %s wheel from the package index", exc, RECBOLE_VERSION)
        try:
            how = _fetch_recbole_ml100k(cache)
        except DownloadError as again:
            raise DownloadError(None, f"cannot get ml-100k: {exc}; and {again}") from again
    return _labelled(_read_dir(target, info), info, f"{how}, cached in {target}")


# ---- sources -------------------------------------------------------------------------------
def _load_local(info: Dataset, path: Path) -> Interactions:
    if path.is_dir():
        return _labelled(_read_dir(path, info), info, f"local copy {path}")
    if not path.is_file():
        raise MissingFileError(path, "no such file or directory")
    if not zipfile.is_zipfile(path):
        raise DataError(path, "expected a directory or the publisher's .zip archive")
    verified = _verify(info, *_digests(path), where=path)
    with tempfile.TemporaryDirectory(prefix=f"recotorch-{info.name}-") as tmp:
        with zipfile.ZipFile(path) as archive:
            archive.extractall(tmp)
        data = _read_dir(find_root(tmp), info)
    return _labelled(data, info, f"local copy {path} ({verified})")


def _download(info: Dataset, cache: Path) -> str:
    """Fetch the archive into a temporary file, verify it, unpack it into the cache."""
    cache.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(dir=cache, prefix=f".{info.name}-", suffix=".zip.part")
    try:
        sha, md5 = hashlib.sha256(), hashlib.md5()
        with os.fdopen(fd, "wb") as out:
            try:
                request = urllib.request.Request(info.url, headers={"User-Agent": "recotorch"})
                log.info("downloading %s", info.url)
                with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        out.write(chunk)
                        sha.update(chunk)
                        md5.update(chunk)
            except (OSError, http.client.HTTPException) as exc:  # URL, HTTP, TLS, timeouts
                raise DownloadError(info.url, f"cannot download: {exc}") from exc
        verified = _verify(info, sha.hexdigest(), md5.hexdigest(), where=info.url)
        how = f"downloaded from {info.url} ({verified})"
        _install(info.name, cache, how, lambda work: _unzip(Path(part), work, info.url))
        return how
    finally:
        if os.path.exists(part):
            os.remove(part)


def _unzip(archive: Path, work: Path, where: str) -> Path:
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(work)
    except zipfile.BadZipFile as exc:
        raise DataError(where, f"not a zip archive ({exc})") from None
    root = find_root(work)
    detect_layout(root)  # fail before anything lands in the cache
    return root


def _install(name: str, cache: Path, how: str, build) -> None:
    """Build the dataset in a scratch folder beside the cache entry, then rename it in."""
    work = Path(tempfile.mkdtemp(dir=cache, prefix=f".{name}-"))
    try:
        root = build(work)
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        (root / _MARKER).write_text(json.dumps({"dataset": name, "origin": f"{how} on {stamp}"}))
        try:
            os.replace(root, cache / name)
        except OSError:
            if not (cache / name).is_dir():  # not a concurrent loader that finished first
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _recorded(target: Path) -> str:
    try:
        return json.loads((target / _MARKER).read_text())["origin"]
    except (OSError, ValueError, KeyError):
        return "origin not recorded"


def _read_dir(root: Path, info: Dataset) -> Interactions:
    root = find_root(root)
    if (root / "interactions.parquet").is_file():  # a converted copy (the RecBole fallback)
        data = read_interactions(root / "interactions.parquet", rating_range=(1, 5))
        return data.with_features(user_features=_features(root / "user_features.parquet"),
                                  item_features=_features(root / "item_features.parquet"))
    return load_movielens(root, layout=info.name)


def _features(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path, glob=False)
    except FileNotFoundError:
        raise DataError(path, "missing from the converted dataset") from None
    except Exception as exc:  # Polars and Arrow errors, OSError
        raise DataError(path, f"not a readable Parquet file ({(str(exc).splitlines() or ['?'])[0]})") from None


def _labelled(data: Interactions, info: Dataset, origin: str) -> Interactions:
    log.info("%s: %s", info.name, origin)
    return replace(data, source=origin, meta={**data.meta, "origin": origin, "dataset": info.name})


# ---- checksums -----------------------------------------------------------------------------
def _digests(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def _verify(info: Dataset, sha256: str, md5: str, *, where: str | Path) -> str:
    """Raise `ChecksumError` on a mismatch; say how the archive was verified."""
    for kind, expected, actual in (("sha256", info.sha256, sha256), ("md5", info.md5, md5)):
        if expected:
            if actual != expected:
                raise ChecksumError(where, f"{kind} is {actual}, expected {expected} for "
                                    f"{info.name}; the archive was not used")
            return f"{kind} verified"
    log.warning("%s: no checksum is known for %s; using it unverified (sha256 %s)",
                where, info.name, sha256)
    return f"unverified, no checksum known; sha256 {sha256}"


# ---- the RecBole fallback for ml-100k ------------------------------------------------------
def fetch_recbole_wheel(dest: Path) -> Path:
    """Download (never install) the RecBole wheel with pip into `dest`; return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(dest), f"recbole=={RECBOLE_VERSION}"]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or "").strip().splitlines()[-1:] or ["no message"]
        raise DownloadError(None, f"pip could not download recbole=={RECBOLE_VERSION}: "
                            f"{tail[0]}") from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise DownloadError(None, f"pip could not be run: {exc}") from None
    wheels = sorted(Path(dest).glob(f"recbole-{RECBOLE_VERSION}-*.whl"))
    if not wheels:
        raise DownloadError(None, f"pip left no recbole-{RECBOLE_VERSION} wheel in {dest}")
    return wheels[0]


def _fetch_recbole_ml100k(cache: Path) -> str:
    cache.mkdir(parents=True, exist_ok=True)
    how = f"RecBole {RECBOLE_VERSION} wheel from the package index (sha256 verified), converted"

    def build(work: Path) -> Path:
        wheel = fetch_recbole_wheel(work)
        digest = _digests(wheel)[0]
        if digest != RECBOLE_WHEEL_SHA256:
            raise ChecksumError(wheel, f"sha256 is {digest}, expected {RECBOLE_WHEEL_SHA256}")
        frames = read_recbole_ml100k(wheel)
        root = work / "ml-100k"
        root.mkdir()
        for file_name, frame in frames.items():
            frame.write_parquet(root / f"{file_name}.parquet")
        return root

    _install("ml-100k", cache, how, build)
    return how


def read_recbole_ml100k(wheel: str | Path) -> dict[str, pl.DataFrame]:
    """ml-100k from inside a RecBole wheel, checked against the known counts.

    Returns frames "interactions" (user, item, rating, timestamp), "item_features"
    (id, title, year, genres) and "user_features" (id, age, gender, occupation, zip).
    """
    def member(ext: str) -> pl.DataFrame:
        try:
            raw = archive.read(f"{RECBOLE_ML100K}.{ext}")
        except KeyError:
            raise DataError(wheel, f"has no {RECBOLE_ML100K}.{ext}") from None
        frame = pl.read_csv(raw, separator="\t", quote_char=None, infer_schema=False)
        frame.columns = [c.split(":")[0] for c in frame.columns]  # "user_id:token" -> "user_id"
        return frame

    with zipfile.ZipFile(wheel) as archive:
        inter, item, user = member("inter"), member("item"), member("user")
    try:
        frames = {
            "interactions": inter.select(
                pl.col("user_id").cast(pl.Int64).alias("user"),
                pl.col("item_id").cast(pl.Int64).alias("item"),
                pl.col("rating").cast(pl.Float64),
                pl.col("timestamp").cast(pl.Float64).cast(pl.Int64)),
            "item_features": item.select(
                pl.col("item_id").cast(pl.Int64).alias("id"),
                pl.col("movie_title").replace("unkonwn", "unknown").alias("title"),  # RecBole typo
                pl.col("release_year").cast(pl.Int64, strict=False).alias("year"),
                pl.col("class").str.split(" ")
                .list.eval(pl.element().filter(pl.element() != "unknown")).alias("genres")),
            "user_features": user.select(
                pl.col("user_id").cast(pl.Int64).alias("id"), pl.col("age").cast(pl.Int64),
                "gender", "occupation", pl.col("zip_code").alias("zip")),
        }
    except pl.exceptions.PolarsError as exc:
        raise DataError(wheel, f"unexpected ml-100k files: {str(exc).splitlines()[0]}") from None
    ratings = frames["interactions"]
    counts = {"ratings": ratings.height, "users": ratings["user"].n_unique(),
              "items": ratings["item"].n_unique()}
    if counts != ML100K_COUNTS or (item.height, user.height) != (counts["items"], counts["users"]):
        raise DataError(wheel, f"ml-100k inside has {counts} ({item.height} item rows, "
                        f"{user.height} user rows); expected {ML100K_COUNTS}")
    return frames
