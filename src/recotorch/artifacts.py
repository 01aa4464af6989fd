"""Model directories: safetensors weights, JSON config and vocabularies, written atomically.

Layout of a model directory (format 1)::

    model.json          {"format": 1, "model": "mf", "params": {...}, "extra": {...}, ...}
    weights.safetensors  every fitted tensor (module weights, baselines, seen-item CSR)
    users.json, items.json   vocabularies: raw ids in index order
    item_features.parquet, user_features.parquet   side features, when the data had them

Loading reads only these files: no pickle, no training code state. A directory is written
under a temporary name beside the target and renamed into place, so a crash never leaves a
half-written model where a complete one was expected.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
import torch
from safetensors.torch import load_file, save_file

from recotorch.data.interactions import CSR
from recotorch.data.vocab import Vocab
from recotorch.models import MODELS
from recotorch.models.base import Estimator

FORMAT = 1


def save(model: Estimator, path: str | Path) -> Path:
    """Write `model` to directory `path`, replacing any model already there atomically."""
    if not hasattr(model, "users_"):
        raise ValueError("fit the model before saving it")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tensors, extra = model._state()
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        tensors |= {"seen.indptr": model.seen_.indptr, "seen.indices": model.seen_.indices}
        save_file(tensors, tmp / "weights.safetensors", metadata={"format": str(FORMAT)})
        _write_json(tmp / "users.json", model.users_.to_json())
        _write_json(tmp / "items.json", model.items_.to_json())
        for kind in ("item", "user"):
            features = getattr(model, f"{kind}_features_", None)
            if features is not None:
                features.write_parquet(tmp / f"{kind}_features.parquet")
        from recotorch import __version__

        _write_json(tmp / "model.json", {
            "format": FORMAT, "model": model.name, "task": model.task, "params": _jsonable(model.get_params()),
            "extra": _jsonable(extra), "recotorch": __version__,
            "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        })
        _fsync_dir(tmp)
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load(path: str | Path) -> Estimator:
    """Read a model directory written by `save`."""
    path = Path(path)
    meta_path = path / "model.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{path} is not a recotorch model directory (no model.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: model format {meta.get('format')} is not supported (expected {FORMAT})")
    cls = MODELS.get(meta["model"])
    if cls is None:
        raise ValueError(f"{meta_path}: unknown model {meta['model']!r}; known: {sorted(MODELS)}")
    model = cls(**_from_jsonable(meta["params"]))
    tensors = load_file(path / "weights.safetensors")
    model.users_ = Vocab.from_json(json.loads((path / "users.json").read_text()))
    model.items_ = Vocab.from_json(json.loads((path / "items.json").read_text()))
    model.seen_ = CSR(tensors.pop("seen.indptr"), tensors.pop("seen.indices"))
    for kind in ("item", "user"):
        file = path / f"{kind}_features.parquet"
        setattr(model, f"{kind}_features_", pl.read_parquet(file) if file.exists() else None)
    model._restore(tensors, _from_jsonable(meta["extra"]))
    model.artifact_path_ = path
    return model


def read_meta(path: str | Path) -> dict[str, Any]:
    """The model.json of a model directory."""
    return json.loads((Path(path) / "model.json").read_text())


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move `tmp` to `target`; an existing target is swapped out first and removed after."""
    if target.exists():
        old = target.with_name(f".{target.name}.old{os.getpid()}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def _write_json(path: Path, payload: Any) -> None:
    with open(path, "w") as f:
        json.dump(payload, f)
        f.flush()
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
