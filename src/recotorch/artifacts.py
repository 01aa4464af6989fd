"""Model directories: versioned sub-folders behind an atomic pointer, checked on every load.

Layout of a model directory `D` (format 2)::

    D/CURRENT                      {"version": "v-20261201T231700123456Z-1a2b3c4d", "model.json": "<sha256>"}
    D/v-20261201T231700123456Z-1a2b3c4d/
        model.json                 format, model name, params, extra, n_users, n_items,
                                   shapes and dtypes of every tensor, SHA-256 of every other file
        weights.safetensors        every fitted tensor (module weights, baselines, seen-item CSR)
        users.json, items.json     vocabularies: raw ids in index order
        item_features.parquet, user_features.parquet   side features, when the data had them
        schema.json, ...           files stored with the model by its callers (`save(..., files=)`,
                                   read back with `read_file`): how its data was read, a catalogue
        ann.faiss, ann.json        the FAISS index, when a server stored one (`recotorch.serve.index`)
    D/.recotorch.lock              held (flock) while a save runs, so two saves never interleave

How a save replaces a model (the one overwrite recotorch does), crash-safe at every instant:

1. `outputs.check_model_dir_target` refuses a path that is a file, the current folder, or a
   non-empty folder that is not a model directory.
2. The new version is written into a fresh `v-<utc time>-<random>` sub-folder and fsynced.
3. `CURRENT` is written to a temporary file, fsynced, and `os.replace`d over the old pointer; the
   folder is fsynced. Until that rename the old version is the model, after it the new one.
4. The old version, leftovers of interrupted saves (sub-folders matching the version pattern that
   `CURRENT` does not name, temporary pointer files) and the files of the flat layout are removed.
   Nothing else in `D` is ever touched.

A new (or empty) `D` is built complete beside itself (`.D.recotorch-new-<random>`, holding a lock
while it is written) and renamed into place; such folders left by a killed save (lock free) are
removed by the next save to `D`. Directories of the flat layout of earlier releases (format 1,
`model.json` at the top) still load; saving over one writes the first version and the pointer
before the flat files go.

`RECOTORCH_FAULT=save:<step>` (steps in `FAULT_STEPS`) kills the process with SIGKILL at that step
of a save: the hook behind the kill -9 tests.

Loading reads only these files: no pickle. Every check failing raises `CorruptModelError` naming
the file at fault: the pointer, JSON validity and keys, format, model name, params, SHA-256 of
each file, vocabularies (unique ids, sizes as recorded), tensor names/shapes/dtypes as recorded,
finite and sane floats, seen-item CSR within the vocabularies, feature rows, `_restore` itself,
and a probe score of the first and last user.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
import torch
from safetensors.torch import load_file, save_file

from recotorch.data.interactions import CSR
from recotorch.data.vocab import Vocab
from recotorch.errors import CorruptModelError, InputFileError
from recotorch.models import MODELS
from recotorch.models.base import Estimator, register_storage
from recotorch.outputs import check_model_dir_target

FORMAT = 2
SUPPORTED_FORMATS = (1, 2)
POINTER, LOCK, META, WEIGHTS = "CURRENT", ".recotorch.lock", "model.json", "weights.safetensors"
FEATURE_FILES = ("item_features.parquet", "user_features.parquet")
DATA_FILES = (WEIGHTS, "users.json", "items.json", *FEATURE_FILES)
FLAT_FILES = (*DATA_FILES, "ann.faiss", "ann.json", META)  # what the flat layout held; META last
# files callers store with a model (`save(files=...)`): checksummed like the others, carried over
# when a loaded model is saved again (online updates), read back with `read_file`
STORED_FILE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}\.(json|parquet|csv|txt)$")
VERSION_RE = re.compile(r"^v-\d{8}T\d{12}Z-[0-9a-f]{8}$")
NEW_SUFFIX = ".recotorch-new-"  # `.D.recotorch-new-<hex>`: a first save being built beside D
POINTER_TMP_RE = re.compile(r"^\.CURRENT\.[0-9a-f]{8}\.tmp$")
FAULT_ENV = "RECOTORCH_FAULT"
FAULT_STEPS = ("weights", "users", "items", "item_features", "user_features", "model", "before-swap",
               "pointer-written", "after-swap", "cleanup")
MAX_ABS = 1e15  # no fitted float is this large; beyond it scores overflow float32
log = logging.getLogger("recotorch.artifacts")


class NotAModelError(InputFileError, FileNotFoundError):
    """The path holds no recotorch model directory (no CURRENT, no model.json)."""


# ---- public API ----------------------------------------------------------------------------
def save(model: Estimator, path: str | Path, *, files: Mapping[str, bytes | None] | None = None) -> Path:
    """Write `model` to model directory `path` (new, empty, or a model directory: replaced crash-safely).

    `files` are stored with the model (name -> content; None drops one): small files such as
    how the training data was read (`schema.json`) or a catalogue, named like `STORED_FILE_RE`.
    A model loaded from a directory keeps the files stored with it unless `files` replaces them.
    """
    if not model.is_fitted:
        raise ValueError("fit the model before saving it")
    path = Path(path)
    check_model_dir_target(path)
    stored = _stored_files(model, files)
    _clean_new_leftovers(path)
    fresh = not path.exists() or (path.is_dir() and not any(path.iterdir()))
    if fresh and _save_new(model, path, stored):
        return path
    with _locked(path):
        check_model_dir_target(path)  # re-checked under the lock: the folder may have changed
        name = _version_name()
        vdir = path / name
        vdir.mkdir()
        try:
            meta_sha = _write_version(model, vdir, stored)
            _fsync_dir(path)
            _fault("before-swap")
            _write_pointer(path, name, meta_sha)
            _fault("after-swap")
        except BaseException:
            if _current_name(path) != name:
                _remove_tree(vdir)
            raise
        _cleanup(path, keep=name)
    return path


def load(path: str | Path) -> Estimator:
    """Read and check the current model of directory `path`; `CorruptModelError` names a bad file."""
    path = Path(path)
    for _ in range(3):  # a concurrent save may retire the version between resolving and reading it
        vdir, meta_sha = _resolve(path)
        try:
            model = _load_version(vdir, meta_sha)
        except (CorruptModelError, OSError):
            if vdir != path and _resolve(path)[0] != vdir:
                continue
            raise
        model.artifact_path_ = path
        model.artifact_version_ = vdir
        model.artifact_tag_ = _tag(path, vdir)
        return model
    raise CorruptModelError(path / POINTER, "changed three times while the model was being read; retry")


def read_file(path: str | Path, name: str) -> bytes | None:
    """A file stored with the current model of `path` (see `save(files=)`), checksum verified; None if absent.

    `path` may also be the version folder a loaded model came from (`model.artifact_version_`).
    """
    vdir, meta_sha = _resolve(Path(path))
    meta = _read_meta(vdir / META, meta_sha)
    digest = meta.get("files", {}).get(name) if meta["format"] >= 2 else None
    if digest is None or not STORED_FILE_RE.match(name):
        return None
    return _read_checked(vdir / name, digest)


def read_meta(path: str | Path) -> dict[str, Any]:
    """The model.json of the current version of a model directory."""
    vdir, meta_sha = _resolve(Path(path))
    return _read_meta(vdir / META, meta_sha)


def resolve_version(path: str | Path) -> Path:
    """The folder that holds the current files of model directory `path` (itself for the flat layout)."""
    return _resolve(Path(path))[0]


def version_tag(path: str | Path) -> str:
    """A short name of the current version, different for every save: `<dir name>@<saved>-<tag>`."""
    path = Path(path)
    return _tag(path, resolve_version(path))


# ---- saving --------------------------------------------------------------------------------
def _stored_files(model: Estimator, files: Mapping[str, bytes | None] | None) -> dict[str, bytes]:
    """The files to store with `model`: those of the version it was loaded from, updated by `files`."""
    stored: dict[str, bytes] = {}
    source = model.artifact_version_
    if source is not None and Path(source).is_dir() and (Path(source) / META).is_file():
        meta = _read_meta(Path(source) / META, None)
        for name, digest in (meta.get("files") or {}).items():
            # the model's own files (weights, vocabularies, features) are written from the model, not carried
            if STORED_FILE_RE.match(name) and name not in (files or {}) and name not in FLAT_FILES:
                stored[name] = _read_checked(Path(source) / name, digest)
    for name, content in (files or {}).items():
        if not STORED_FILE_RE.match(name) or name in DATA_FILES or name in FLAT_FILES:
            raise ValueError(f"cannot store a file named {name!r} with a model (names like schema.json)")
        if content is None:
            stored.pop(name, None)
        elif not isinstance(content, bytes):
            raise TypeError(f"the content of {name!r} must be bytes, not {type(content).__name__}")
        else:
            stored[name] = content
    return stored


def _read_checked(file: Path, digest: str) -> bytes:
    """The bytes of `file`, refused (CorruptModelError) unless they match `digest`."""
    try:
        content = file.read_bytes()
    except OSError as exc:
        raise CorruptModelError(file, f"cannot be read ({exc.strerror or exc})") from None
    if hashlib.sha256(content).hexdigest() != digest:
        raise CorruptModelError(file, "does not match the SHA-256 recorded in model.json "
                                      "(truncated, edited or replaced)")
    return content


def _save_new(model: Estimator, path: Path, stored: dict[str, bytes]) -> bool:
    """Build the whole directory beside `path` and rename it into place; False if `path` filled meanwhile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{NEW_SUFFIX}{secrets.token_hex(4)}")
    tmp.mkdir()
    lock = _try_lock(tmp / LOCK)  # held until the process ends: marks `tmp` as alive for other savers
    try:
        name = _version_name()
        (tmp / name).mkdir()
        meta_sha = _write_version(model, tmp / name, stored)
        _write_pointer(tmp, name, meta_sha, fault=False)
        _fault("before-swap")
        try:
            os.replace(tmp, path)  # atomic; fails when `path` is a non-empty folder
        except OSError:
            if path.is_dir() and any(path.iterdir()):
                _remove_tree(tmp)
                return False
            raise
        _fault("after-swap")
        _fsync_dir(path.parent)
    except BaseException:
        if tmp.exists():
            _remove_tree(tmp)
        raise
    finally:
        if lock is not None:
            os.close(lock)
    return True


def _clean_new_leftovers(path: Path) -> None:
    """Remove `.D.recotorch-new-*` folders beside `path` left by killed first saves (their lock is free)."""
    if not path.parent.is_dir():
        return
    pattern = re.compile(rf"^\.{re.escape(path.name)}{re.escape(NEW_SUFFIX)}[0-9a-f]{{8}}$")
    for entry in path.parent.iterdir():
        if not pattern.match(entry.name) or entry.is_symlink() or not entry.is_dir():
            continue
        if not (entry / LOCK).is_file():
            continue  # just created by a live save, or not ours to judge
        fd = _try_lock(entry / LOCK, wait=False)
        if fd is None:
            continue  # its save is still running
        try:
            _remove_tree(entry)
        finally:
            os.close(fd)


def _write_version(model: Estimator, vdir: Path, stored: Mapping[str, bytes]) -> str:
    """Write every file of one version into `vdir`, fsync each and the folder; returns model.json's SHA-256."""
    tensors, extra = model.state()
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    tensors |= {"seen.indptr": model.seen_.indptr.cpu().contiguous(),
                "seen.indices": model.seen_.indices.cpu().contiguous()}
    save_file(tensors, vdir / WEIGHTS, metadata={"format": str(FORMAT)})
    _fsync_file(vdir / WEIGHTS)
    _fault("weights")
    _write_json(vdir / "users.json", model.users_.to_json())
    _fault("users")
    _write_json(vdir / "items.json", model.items_.to_json())
    _fault("items")
    for kind in ("item", "user"):
        features = model.user_features_ if kind == "user" else model.item_features_
        if features is not None:
            features.write_parquet(vdir / f"{kind}_features.parquet")
            _fsync_file(vdir / f"{kind}_features.parquet")
            _fault(f"{kind}_features")
    for name, content in stored.items():
        with open(vdir / name, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
    from recotorch import __version__

    files = {name: _sha256(vdir / name) for name in (*DATA_FILES, *stored) if (vdir / name).is_file()}
    meta = {
        "format": FORMAT, "model": model.name, "task": model.task, "params": _jsonable(model.get_params()),
        "extra": _jsonable(extra), "recotorch": __version__,
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n_users": model.n_users, "n_items": model.n_items,
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
        "dtypes": {k: str(v.dtype).removeprefix("torch.") for k, v in tensors.items()},
        "files": files,
    }
    _write_json(vdir / META, meta)
    _fault("model")
    _fsync_dir(vdir)
    return _sha256(vdir / META)


def _write_pointer(directory: Path, name: str, meta_sha: str, *, fault: bool = True) -> None:
    """Swap `CURRENT` atomically: temporary file, fsync, os.replace, fsync of the folder."""
    tmp = directory / f".CURRENT.{secrets.token_hex(4)}.tmp"
    try:
        _write_json(tmp, {"version": name, META: meta_sha})
        if fault:
            _fault("pointer-written")
        os.replace(tmp, directory / POINTER)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)


def _cleanup(path: Path, keep: str) -> None:
    """Remove old versions, leftovers of interrupted saves, and the flat layout's files; nothing else."""
    first = True
    for entry in sorted(path.iterdir()):
        if entry.is_symlink():
            continue  # never followed, never removed: recotorch writes no links
        leftover = (entry.is_dir() and VERSION_RE.match(entry.name) and entry.name != keep) or \
                   (entry.is_file() and POINTER_TMP_RE.match(entry.name))
        if leftover:
            _remove_quietly(entry, fault=first)
            first = False
    for name in FLAT_FILES:  # a converted flat-layout directory: its files are recotorch's own
        if (path / name).is_file() and not (path / name).is_symlink():
            _remove_quietly(path / name, fault=first)
            first = False
    _fsync_dir(path)


def _remove_quietly(entry: Path, fault: bool) -> None:
    """Remove a leftover; failing (permissions, a server writing its index there) only warns: the next save retries."""
    try:
        _remove_tree(entry, fault=fault)
    except OSError as exc:
        log.warning("could not remove %s (%s); the next save will try again", entry, exc.strerror or exc)


def _remove_tree(entry: Path, fault: bool = False) -> None:
    if entry.is_file():
        entry.unlink(missing_ok=True)
        if fault:
            _fault("cleanup")
        return
    for child in sorted(entry.iterdir()):  # file by file, so the fault hook can stop half-way
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
        if fault:
            _fault("cleanup")
            fault = False
    shutil.rmtree(entry)  # whatever appeared meanwhile (an index a server stored) goes with its version


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on `path/.recotorch.lock` (released by the kernel if the process dies)."""
    fd = _try_lock(path / LOCK)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _try_lock(file: Path, wait: bool = True) -> int | None:
    """An exclusive flock on `file` (created if needed): its descriptor, or None if `wait` is False and it is held.

    Without fcntl (Windows) no lock is taken: a descriptor is still returned, so callers proceed.
    """
    fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl
    except ImportError:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _current_name(path: Path) -> str | None:
    """The version `CURRENT` names, or None when it is missing or unreadable."""
    try:
        return str(json.loads((path / POINTER).read_bytes())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _version_name() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return f"v-{stamp}Z-{secrets.token_hex(4)}"


def _fault(step: str) -> None:
    """Die by SIGKILL at `step` when RECOTORCH_FAULT=save:<step> (fault-injection tests)."""
    if os.environ.get(FAULT_ENV) == f"save:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


# ---- resolving -------------------------------------------------------------------------------
def _resolve(path: Path) -> tuple[Path, str | None]:
    """(folder holding the current files, expected SHA-256 of its model.json or None for the flat layout)."""
    pointer = path / POINTER
    if pointer.is_file():
        payload = _read_json(pointer)
        if not isinstance(payload, dict) or not isinstance(payload.get("version"), str) \
                or not isinstance(payload.get(META), str):
            raise CorruptModelError(pointer, 'expected {"version": ..., "model.json": ...}')
        name = payload["version"]
        if not VERSION_RE.match(name):
            raise CorruptModelError(pointer, f"names {name!r}, which is not a version folder of this directory")
        vdir = path / name
        if vdir.is_symlink() or not vdir.is_dir():
            raise CorruptModelError(pointer, f"names the version {name}, which is missing")
        return vdir, payload[META]
    if (path / META).is_file():
        return path, None
    try:
        holds_versions = path.is_dir() and any(VERSION_RE.match(p.name) for p in path.iterdir())
    except OSError:  # unreadable folder: say what it is not, below
        holds_versions = False
    if holds_versions:
        raise CorruptModelError(pointer, "is missing: the directory holds versions but no pointer to one")
    if not path.exists():
        raise NotAModelError(f"{path}: no such model directory")
    raise NotAModelError(f"{path} is not a recotorch model directory (no CURRENT or model.json)")


def _tag(path: Path, vdir: Path) -> str:
    if vdir != path:
        saved = vdir.name[2:17]  # the UTC time in the version name
        return f"{path.name}@{saved}-{vdir.name[-8:]}"
    meta = _read_json(path / META)  # flat layout: content and weights' size and mtime, as earlier releases
    weights = (path / WEIGHTS).stat() if (path / WEIGHTS).is_file() else None
    stamp = f"{meta}|{weights and weights.st_size}|{weights and weights.st_mtime_ns}"
    saved = meta.get("saved", "unknown") if isinstance(meta, dict) else "unknown"
    return f"{path.name}@{saved}-{hashlib.sha256(stamp.encode()).hexdigest()[:8]}"


# ---- loading and checks ------------------------------------------------------------------------
_META_KEYS = {"format": int, "model": str, "params": dict, "extra": dict}
_META2_KEYS = {"n_users": int, "n_items": int, "shapes": dict, "dtypes": dict, "files": dict}


def _read_meta(file: Path, expected_sha: str | None) -> dict[str, Any]:
    if not file.is_file():
        raise CorruptModelError(file, "is missing")
    if expected_sha is not None and _sha256(file) != expected_sha:
        raise CorruptModelError(file, "does not match the checksum in CURRENT (edited or replaced)")
    meta = _read_json(file)
    if not isinstance(meta, dict):
        raise CorruptModelError(file, "expected a JSON object")
    fmt = meta.get("format")
    if fmt not in SUPPORTED_FORMATS or isinstance(fmt, bool):
        raise CorruptModelError(file, f"model format {fmt!r} is not supported (this release reads "
                                      f"{', '.join(map(str, SUPPORTED_FORMATS))})")
    required = _META_KEYS | (_META2_KEYS if fmt >= 2 else {})
    for key, kind in required.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise CorruptModelError(file, f"key {key!r} is missing or not a {kind.__name__}")
    if expected_sha is not None and fmt < 2:
        raise CorruptModelError(file, "format 1 exists only in the flat layout, not in a version folder")
    return meta


def _load_version(vdir: Path, meta_sha: str | None) -> Estimator:
    meta_file = vdir / META
    meta = _read_meta(meta_file, meta_sha)
    fmt = meta["format"]
    if fmt >= 2:
        files = meta["files"]
        for name in files:
            known = name in DATA_FILES or (STORED_FILE_RE.match(name) and name not in FLAT_FILES)
            if not known or not isinstance(files[name], str):
                raise CorruptModelError(meta_file, f"lists an unexpected file {name!r}")
        for name in (WEIGHTS, "users.json", "items.json"):
            if name not in files:
                raise CorruptModelError(meta_file, f"does not list {name}")
        for name, digest in files.items():
            if not (vdir / name).is_file():
                raise CorruptModelError(vdir / name, "is missing")
            if _sha256(vdir / name) != digest:
                raise CorruptModelError(vdir / name, "does not match the SHA-256 recorded in model.json "
                                                     "(truncated, edited or replaced)")
        present = set(files)
    else:
        present = {name for name in DATA_FILES if (vdir / name).is_file()}
    cls = MODELS.get(meta["model"])
    if cls is None:
        raise CorruptModelError(meta_file, f"unknown model {meta['model']!r}; known: {sorted(MODELS)}")
    try:
        model = cls(**_from_jsonable(meta["params"]))
    except Exception as exc:  # (any refusal of the constructor is a bad file)
        raise CorruptModelError(meta_file, f"params not accepted by {cls.__name__}: {_one_line(exc)}") from None
    users = _read_vocab(vdir / "users.json", meta.get("n_users"))
    items = _read_vocab(vdir / "items.json", meta.get("n_items"))
    tensors = _read_tensors(vdir / WEIGHTS, meta if fmt >= 2 else None)
    weights_file = vdir / WEIGHTS
    for key, vocab, name in (("n_users", users, "users.json"), ("n_items", items, "items.json")):
        recorded = meta["extra"].get(key)
        if isinstance(recorded, int) and recorded != len(vocab):
            raise CorruptModelError(vdir / name, f"holds {len(vocab)} ids but model.json's extra.{key} is {recorded}")
    if "seen.indptr" not in tensors or "seen.indices" not in tensors:
        raise CorruptModelError(weights_file, "has no seen-item CSR (seen.indptr, seen.indices)")
    for prefix in sorted({k[: -len(".indptr")] for k in tensors if k.endswith(".indptr")}):
        n_rows = len(users) if prefix == "seen" or prefix.endswith("profile") else None
        n_cols = len(items) if prefix == "seen" or prefix.endswith("profile") else None
        _check_csr(weights_file, prefix, tensors, n_rows, n_cols)
    model.users_, model.items_ = users, items
    model.seen_ = CSR(tensors.pop("seen.indptr"), tensors.pop("seen.indices"))
    for kind, vocab in (("item", items), ("user", users)):
        name = f"{kind}_features.parquet"
        setattr(model, f"{kind}_features_", _read_features(vdir / name, vocab) if name in present else None)
    try:
        model._restore(tensors, _from_jsonable(meta["extra"]))
    except Exception as exc:  # (missing tensor, wrong shape, bad extra: all corruption)
        raise CorruptModelError(weights_file, f"does not fit the {meta['model']} model described in "
                                              f"model.json: {_one_line(exc)}") from None
    _probe(model, weights_file)
    return model


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_bytes())
    except FileNotFoundError:
        raise CorruptModelError(file, "is missing") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptModelError(file, f"is not valid JSON ({exc})") from None
    except OSError as exc:
        raise CorruptModelError(file, f"cannot be read ({exc.strerror or exc})") from None


def _read_vocab(file: Path, expected: Any) -> Vocab:
    payload = _read_json(file)
    if not isinstance(payload, dict) or payload.get("kind") not in ("int", "str") \
            or not isinstance(payload.get("ids"), list):
        raise CorruptModelError(file, 'expected {"kind": "int" | "str", "ids": [...]}')
    ids = payload["ids"]
    want = int if payload["kind"] == "int" else str
    if not all(type(v) is want for v in ids):
        bad = next(v for v in ids if type(v) is not want)
        raise CorruptModelError(file, f"id {bad!r} is not of kind {payload['kind']!r}")
    try:
        vocab = Vocab.from_json(payload)
    except Exception as exc:  # (e.g. an int beyond 64 bits)
        raise CorruptModelError(file, f"cannot be read as a vocabulary: {_one_line(exc)}") from None
    if vocab.ids.n_unique() != len(vocab):
        dup = vocab.ids.filter(vocab.ids.is_duplicated()).head(1).to_list()
        raise CorruptModelError(file, f"id {dup[0]!r} appears more than once")
    if expected is not None and len(vocab) != expected:
        raise CorruptModelError(file, f"holds {len(vocab)} ids but the model was saved with {expected}")
    return vocab


def _read_tensors(file: Path, meta: dict[str, Any] | None) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise CorruptModelError(file, "is missing")
    try:
        tensors = load_file(file)
    except Exception as exc:  # (safetensors raises its own error types)
        raise CorruptModelError(file, f"cannot be read as safetensors: {_one_line(exc)}") from None
    if meta is not None:
        shapes, dtypes = meta["shapes"], meta["dtypes"]
        if set(tensors) != set(shapes):
            missing, extra = sorted(set(shapes) - set(tensors)), sorted(set(tensors) - set(shapes))
            raise CorruptModelError(file, f"tensors differ from model.json: missing {missing}, unexpected {extra}")
        for name, t in tensors.items():
            if list(t.shape) != shapes[name]:
                raise CorruptModelError(file, f"tensor {name!r} has shape {list(t.shape)}, saved as {shapes[name]}")
            if str(t.dtype).removeprefix("torch.") != dtypes.get(name):
                raise CorruptModelError(file, f"tensor {name!r} is {t.dtype}, saved as {dtypes.get(name)}")
    for name, t in tensors.items():
        if t.is_floating_point() and t.numel():
            if not bool(torch.isfinite(t).all()):
                raise CorruptModelError(file, f"tensor {name!r} holds NaN or infinite values")
            if float(t.abs().max()) > MAX_ABS:
                raise CorruptModelError(file, f"tensor {name!r} holds absurd values (|x| up to "
                                              f"{float(t.abs().max()):.3g})")
    return tensors


def _check_csr(file: Path, prefix: str, tensors: dict[str, torch.Tensor], n_rows: int | None,
               n_cols: int | None) -> None:
    indptr, indices = tensors[f"{prefix}.indptr"], tensors.get(f"{prefix}.indices")
    if indices is None:
        raise CorruptModelError(file, f"has {prefix}.indptr without {prefix}.indices")
    for name, t in ((f"{prefix}.indptr", indptr), (f"{prefix}.indices", indices)):
        if t.dtype != torch.int64 or t.dim() != 1:
            raise CorruptModelError(file, f"{name} must be a 1-D int64 tensor, not {t.dtype} {list(t.shape)}")
    if indptr.numel() == 0 or int(indptr[0]) != 0 or int(indptr[-1]) != indices.numel() \
            or bool((indptr[1:] < indptr[:-1]).any()):
        raise CorruptModelError(file, f"{prefix}.indptr is not a valid row pointer (0 ... nnz, non-decreasing)")
    if n_rows is not None and indptr.numel() != n_rows + 1:
        raise CorruptModelError(file, f"{prefix}.indptr has {indptr.numel() - 1} rows but users.json "
                                      f"holds {n_rows} ids")
    if indices.numel() and int(indices.min()) < 0:
        raise CorruptModelError(file, f"{prefix}.indices holds negative indices")
    if n_cols is not None and indices.numel() and int(indices.max()) >= n_cols:
        raise CorruptModelError(file, f"{prefix}.indices holds item index {int(indices.max())}, "
                                      f"beyond the {n_cols} ids of items.json")
    values = tensors.get(f"{prefix}.values")
    if values is not None and values.shape != indices.shape:
        raise CorruptModelError(file, f"{prefix}.values and {prefix}.indices differ in length")


def _read_features(file: Path, vocab: Vocab) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(file)
    except FileNotFoundError:
        raise CorruptModelError(file, "is missing") from None
    except Exception as exc:  # (polars raises several types for a bad Parquet file)
        raise CorruptModelError(file, f"cannot be read as Parquet: {_one_line(exc)}") from None
    if frame.height != len(vocab):
        raise CorruptModelError(file, f"has {frame.height} rows, expected one per id ({len(vocab)})")
    if "id" not in frame.columns or frame["id"].dtype != vocab.ids.dtype or not frame["id"].equals(
            vocab.ids.alias("id"), check_names=False):
        raise CorruptModelError(file, "its id column does not list the vocabulary's ids in order")
    return frame


def _probe(model: Estimator, file: Path) -> None:
    """Score the first and last user over the whole catalogue: a wrong size or NaN is caught now, not in a request."""
    if model.n_users == 0 or model.n_items == 0:
        return
    users = torch.tensor(sorted({0, model.n_users - 1}))
    try:
        with torch.no_grad():
            scores = model.score(users)
    except Exception as exc:  # (an index error here means the tensors do not fit the vocabularies)
        raise CorruptModelError(file, f"scoring fails with this model's files: {_one_line(exc)}") from None
    if tuple(scores.shape) != (users.numel(), model.n_items):
        raise CorruptModelError(file, f"scores have shape {list(scores.shape)}, expected "
                                      f"[{users.numel()}, {model.n_items}] (tensors do not fit items.json)")
    if bool(torch.isnan(scores).any()) or bool(torch.isposinf(scores).any()):
        raise CorruptModelError(file, "scores are NaN or infinite")


# ---- small helpers -------------------------------------------------------------------------------
def _one_line(exc: BaseException, limit: int = 300) -> str:
    """`Type: message` on one line (load_state_dict lists its mismatches over several)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as exc:
        raise CorruptModelError(file, f"cannot be read ({exc.strerror or exc})") from None
    return h.hexdigest()


def _write_json(path: Path, payload: Any) -> None:
    with open(path, "w") as f:
        json.dump(payload, f)
        f.flush()
        os.fsync(f.fileno())


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return {"__tuple__": [_jsonable(v) for v in value]}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value


def _from_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_from_jsonable(v) for v in value["__tuple__"])
        return {k: _from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_jsonable(v) for v in value]
    return value


register_storage(save, load)  # Estimator.save / Estimator.load come here, without models importing this layer
