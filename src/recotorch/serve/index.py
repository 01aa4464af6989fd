"""Retrieval for large catalogues: a FAISS inner-product index over models with a dot-product form.

A model has a dot-product form when, for a fixed user, its item ranking is the ranking of an inner
product: MF scores squash(<p_u, q_i> + b_u + b_i) and the squash is monotonic, so the user vector
[p_u, 1] and the item vector [q_i, b_i] rank items exactly as the model does (b_u is the same for
every item). ALS is a plain dot product. The index is IVF-Flat (inner product): k-means cells, a
query scans the `nprobe` best cells. `nprobe` is tuned when the index is built: the smallest of
1, 2, 3, 4, 6, 8, 12, ... whose recall@10 against exact scoring reaches `target_recall` on real users.

An index can be written into the model's current version folder (`ann.faiss` + `ann.json`: build
info, a checksum of the item vectors it was built from and the SHA-256 of `ann.faiss`) so a server
start does not rebuild it. On load a foreign or tampered index is refused with a warning and
rebuilt: never served (see `AnnIndex.load_if_matching`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recotorch.core.retrieval import RetrievalVectors
from recotorch.core.topk import largest
from recotorch.models.base import Estimator

INDEX_FILE, INDEX_META = "ann.faiss", "ann.json"
log = logging.getLogger("recotorch.serve")


DotForm = RetrievalVectors  # the name this module used before the model owned its dot form


def dot_form(model: Estimator) -> RetrievalVectors | None:
    """The model's dot-product form (`Estimator.retrieval_vectors`), or None when it has none."""
    return model.retrieval_vectors() if model.supports("retrieval_vectors") else None


def exact_top_k(queries: np.ndarray, items: np.ndarray, k: int, chunk: int = 64) -> np.ndarray:
    """Exact top-k item indices (b, k) by inner product, in chunks of queries to bound memory."""
    items_t = torch.from_numpy(items)
    out = []
    with torch.no_grad():
        for start in range(0, len(queries), chunk):
            scores = torch.from_numpy(queries[start : start + chunk]) @ items_t.T
            out.append(largest(scores, min(k, items.shape[0]), dim=1)[1].numpy())
    return np.concatenate(out) if out else np.empty((0, k), dtype=np.int64)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean |found ∩ truth| / |truth| over rows (-1 slots in `found` never match)."""
    hits = [len(set(f[f >= 0].tolist()) & set(t.tolist())) / max(len(t), 1) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) if hits else float("nan")


def fingerprint(items: np.ndarray) -> str:
    """Checksum of the item matrix: an index on disk is used only for the vectors it was built from."""
    return hashlib.sha256(np.ascontiguousarray(items).view(np.uint8)).hexdigest()[:32]


@dataclass
class IndexInfo:
    """How an index was built and how good it is."""

    kind: str
    n_items: int
    dim: int
    nlist: int
    nprobe: int
    recall_at_10: float
    target_recall: float
    build_seconds: float
    checksum: str


class AnnIndex:
    """IVF-Flat inner-product index over item vectors; `search` returns item indices (-1 = empty)."""

    def __init__(self, index: Any, info: IndexInfo) -> None:
        self.index = index
        self.info = info

    @classmethod
    def build(cls, items: np.ndarray, queries: np.ndarray | None = None, *, target_recall: float = 0.97,
              nlist: int | None = None, seed: int = 0) -> AnnIndex:
        """Train and fill an index; tune `nprobe` on `queries` (a sample of user vectors) when given."""
        import faiss

        tic = time.perf_counter()
        items = np.ascontiguousarray(items, dtype=np.float32)
        n, dim = items.shape
        nlist = nlist or max(1, min(65536, 2 ** round(math.log2(max(math.sqrt(n), 1)))))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        train = items if n <= 64 * nlist else items[rng.choice(n, 64 * nlist, replace=False)]
        index.cp.seed = seed
        index.train(train)
        index.add(items)
        info = IndexInfo("faiss-ivf-flat-ip", n, dim, nlist, nlist, float("nan"), target_recall, 0.0,
                         fingerprint(items))
        built = cls(index, info)
        built.tune(items, queries, target_recall)
        built.info.build_seconds = round(time.perf_counter() - tic, 3)
        return built

    def tune(self, items: np.ndarray, queries: np.ndarray | None, target_recall: float, k: int = 10) -> float:
        """Pick the smallest nprobe (steps of ~1.5x) whose recall@k on `queries` reaches the target."""
        if queries is None or len(queries) == 0:
            self.info.nprobe = self.info.nlist
            self.info.recall_at_10 = 1.0
            return 1.0
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        truth = exact_top_k(queries, items, k)
        recall = 0.0
        for nprobe in _nprobe_steps(self.info.nlist):
            self.info.nprobe = nprobe
            recall = recall_at_k(self.search(queries, k)[0], truth)
            if recall >= target_recall:
                break
        self.info.recall_at_10 = round(recall, 4)
        return recall

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (indices (b, k), inner products (b, k)); `allowed` (n_items,) bool filters inside the search."""
        import faiss

        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.info.dim)
        k = max(1, min(k, self.info.n_items))
        params = faiss.SearchParametersIVF(nprobe=self.info.nprobe)
        if allowed is None:
            scores, idx = self.index.search(queries, k, params=params)
            return idx, scores
        bitmap = np.packbits(allowed.astype(bool), bitorder="little")
        selector = faiss.IDSelectorBitmap(self.info.n_items, faiss.swig_ptr(bitmap))
        params.sel = selector
        scores, idx = self.index.search(queries, k, params=params)
        del selector, bitmap  # kept alive until the search returned
        return idx, scores

    # ---- files --------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write `ann.faiss`, then `ann.json` (build info, the vectors' checksum, the file's SHA-256), atomically."""
        import faiss

        directory = Path(directory)
        fd, tmp = tempfile.mkstemp(prefix=f".{INDEX_FILE}.", dir=directory)
        os.close(fd)
        try:
            faiss.write_index(self.index, tmp)
            digest = _file_sha256(Path(tmp))
            os.replace(tmp, directory / INDEX_FILE)
        finally:
            Path(tmp).unlink(missing_ok=True)
        meta = directory / INDEX_META
        tmp_meta = meta.with_name(f".{INDEX_META}.tmp{os.getpid()}")
        tmp_meta.write_text(json.dumps({**asdict(self.info), "file_sha256": digest}, indent=1))
        os.replace(tmp_meta, meta)

    @classmethod
    def load_if_matching(cls, directory: str | Path, items: np.ndarray) -> AnnIndex | None:
        """The index saved in `directory` if it was built from exactly these item vectors, else None.

        Refused (None, with a warning naming the file, so the caller rebuilds): a missing or unreadable
        `ann.json`, an `ann.faiss` whose SHA-256 differs from the one recorded, an index built from other
        vectors (by the recorded checksum, and by the vectors the index itself stores), and an index
        whose items do not sit in the cell their quantizer assigns them (edited centroids).
        """
        directory = Path(directory)
        if not (directory / INDEX_FILE).is_file() and not (directory / INDEX_META).is_file():
            return None
        try:
            return cls._load_checked(directory, np.ascontiguousarray(items, dtype=np.float32))
        except IndexMismatch as exc:
            log.warning("not using the stored ANN index: %s; rebuilding it", exc)
            return None

    @classmethod
    def _load_checked(cls, directory: Path, items: np.ndarray) -> AnnIndex:
        import faiss

        index_file, meta_file = directory / INDEX_FILE, directory / INDEX_META
        if not index_file.is_file() or not meta_file.is_file():
            missing = index_file if not index_file.is_file() else meta_file
            raise IndexMismatch(f"{missing} is missing")
        try:
            payload = json.loads(meta_file.read_text())
            digest = payload.pop("file_sha256")
            info = IndexInfo(**payload)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise IndexMismatch(f"{meta_file} cannot be read ({type(exc).__name__}: {exc})") from None
        if info.checksum != fingerprint(items) or (info.n_items, info.dim) != items.shape:
            raise IndexMismatch(f"{meta_file}: the index was built from other item vectors than this model's")
        if _file_sha256(index_file) != digest:
            raise IndexMismatch(f"{index_file} does not match the SHA-256 in {INDEX_META} (edited or replaced)")
        try:
            index = faiss.read_index(str(index_file))
            ivf = faiss.extract_index_ivf(index)
        except RuntimeError as exc:
            raise IndexMismatch(f"{index_file} cannot be read by FAISS: {str(exc).splitlines()[0]}") from None
        if (index.ntotal, index.d, ivf.nlist) != (info.n_items, info.dim, info.nlist) \
                or not 1 <= info.nprobe <= info.nlist:
            raise IndexMismatch(f"{index_file}: {index.ntotal} vectors of dimension {index.d} in {ivf.nlist} cells, "
                                f"{INDEX_META} says {info.n_items} x {info.dim} in {info.nlist} (nprobe {info.nprobe})")
        stored, cell = _stored_vectors(ivf)
        if not np.array_equal(stored, items):
            raise IndexMismatch(f"{index_file} holds other vectors than this model's items")
        _, assigned = ivf.quantizer.search(items, 1)
        if not np.array_equal(assigned[:, 0], cell):
            raise IndexMismatch(f"{index_file}: items are not in the cells of their nearest centroids")
        return cls(index, info)


class IndexMismatch(Exception):
    """A stored index that must not be served (the message names the file)."""


def _stored_vectors(ivf: Any) -> tuple[np.ndarray, np.ndarray]:
    """(vectors by id (n, d), cell of each id (n,)) read from an IVF-Flat index's inverted lists."""
    import faiss

    n, d = ivf.ntotal, ivf.d
    vectors, cell = np.full((n, d), np.nan, dtype=np.float32), np.full(n, -1, dtype=np.int64)
    lists = ivf.invlists
    for c in range(ivf.nlist):
        size = lists.list_size(c)
        if size == 0:
            continue
        ids = faiss.rev_swig_ptr(lists.get_ids(c), size).copy()
        codes = faiss.rev_swig_ptr(lists.get_codes(c), size * lists.code_size).copy()
        if ids.min() < 0 or ids.max() >= n:
            raise IndexMismatch(f"cell {c} holds item ids outside 0..{n - 1}")
        vectors[ids] = codes.view(np.float32).reshape(size, d)
        cell[ids] = c
    return vectors, cell


def _file_sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _nprobe_steps(nlist: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, ... up to nlist: each step scans ~1.5x the cells of the one before."""
    steps, p = [], 1
    while p < nlist:
        steps += [p] if p < 2 else [p, p + p // 2]
        p *= 2
    return sorted({s for s in steps if s < nlist} | {nlist})


def sample_queries(users: torch.Tensor, n: int = 256, seed: int = 0) -> np.ndarray:
    """A seeded sample of user vectors for tuning and measuring recall."""
    rng = np.random.default_rng(seed)
    take = rng.choice(users.shape[0], min(n, users.shape[0]), replace=False)
    return users[torch.from_numpy(np.sort(take))].numpy()


def build_index(model_dir: str | Path, model: Estimator | None = None, target_recall: float = 0.97) -> IndexInfo:
    """Build the ANN index of a saved model and store it with its current version (for models with a dot form)."""
    from recotorch.artifacts import load, resolve_version

    model = model or load(model_dir)
    version_dir = model.artifact_version_ or resolve_version(model_dir)
    form = dot_form(model)
    if form is None:
        raise ValueError(f"{type(model).__name__} has no dot-product form; it is always scored exactly")
    index = AnnIndex.build(form.items.numpy(), sample_queries(form.users), target_recall=target_recall)
    index.save(version_dir)
    return index.info
