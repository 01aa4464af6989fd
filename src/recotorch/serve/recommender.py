"""`Recommender`: the serving runtime over one loaded model (top-k, filters, fold-in, similar, predict).

It composes the model: known users through `Estimator.recommend_indices`, pairs through
`predict_indices`, similar items through `similar_items`, anonymous users through the model's
fold-in (`recotorch.online.scores_for_history`, with its empty-history and demographic handling).
Every answer is in raw ids with titles where the model's data had them. Filters (include /
exclude lists, genre) become a boolean mask over the catalogue applied to the scores *before*
top-k, so a filtered list is the best k of the allowed items, never a short list. Ranking is
`core.top_k` everywhere (ties: lower item index first). Above `ann_threshold` items, models with
the "retrieval_vectors" capability retrieve candidates through a FAISS index (see
`recotorch.serve.index`); the candidates are then re-scored exactly by the model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recotorch.core.retrieval import RetrievalVectors
from recotorch.core.topk import top_k
from recotorch.errors import OptionError, UnsupportedError
from recotorch.models.base import Estimator
from recotorch.serve.catalog import Catalog, IdMap, UnknownIdError
from recotorch.serve.index import AnnIndex, sample_queries

DEFAULT_ANN_THRESHOLD = 100_000
log = logging.getLogger("recotorch.serve")


class FoldInUnavailableError(UnsupportedError):
    """Anonymous recommendations need a model with the "fold_in" capability (the API answers 501)."""


class Recommender:
    """Answers recommendation requests from one fitted model; immutable once built (safe to share)."""

    def __init__(self, model: Estimator, *, version: str = "model", ann_threshold: int = DEFAULT_ANN_THRESHOLD,
                 target_recall: float = 0.97, index_dir: str | Path | None = None, save_index: bool = False) -> None:
        tic = time.perf_counter()
        self.model = model
        self.version = version
        self.users = IdMap(model.users_)
        self._seen_ptr = model.seen_.indptr.numpy()  # slicing by tensor scalars costs ~0.1 ms a request
        popularity = torch.bincount(model.seen_.indices, minlength=model.n_items).numpy()
        self.catalog = Catalog(model.items_, model.item_features_, popularity)
        vectors = model.item_vectors()
        self._unit = None if vectors is None else torch.nn.functional.normalize(vectors.float(), dim=1)
        self.form: RetrievalVectors | None = model.retrieval_vectors() if model.supports("retrieval_vectors") else None
        self.index: AnnIndex | None = None
        if self.form is not None and model.n_items >= ann_threshold:
            items = self.form.items.numpy()
            self.index = AnnIndex.load_if_matching(index_dir, items) if index_dir else None
            if self.index is None:
                self.index = AnnIndex.build(items, sample_queries(self.form.users), target_recall=target_recall)
                if save_index and index_dir:
                    try:
                        self.index.save(index_dir)
                    except OSError as exc:  # a read-only model directory: serve anyway, rebuild next time
                        log.warning("could not store the index in %s: %s", index_dir, exc)
        self.load_seconds = round(time.perf_counter() - tic, 3)

    @classmethod
    def load(cls, model_dir: str | Path, **options: Any) -> Recommender:
        """Load a model directory and build its runtime (and index, when the catalogue is large)."""
        from recotorch.artifacts import load

        model = load(model_dir)  # checked; records the version folder it read and its tag
        # the index lives with the version it was built from: a later save retires both together
        return cls(model, version=model.artifact_tag_, index_dir=model.artifact_version_, **options)

    # ---- describing ---------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        model = self.model
        return {"version": self.version, "model": model.name, "task": model.task, "n_users": model.n_users,
                "n_items": model.n_items, "genres": self.catalog.genre_names,
                "retrieval": "exact" if self.index is None else self.index.info.kind,
                "index": None if self.index is None else vars(self.index.info).copy(),
                "has_item_vectors": self._unit is not None, "load_seconds": self.load_seconds}

    def _rows(self, idx: Sequence[int], scores: Sequence[float]) -> list[dict[str, Any]]:
        return [{**self.catalog.describe(i), "score": float(s)} for i, s in zip(idx, scores, strict=True)]

    def _ranked(self, idx: torch.Tensor, vals: torch.Tensor) -> list[dict[str, Any]]:
        """Rows of one ranked list (1-D), empty slots (-1) left out."""
        keep = idx >= 0
        return self._rows(idx[keep].tolist(), vals[keep].tolist())

    # ---- filters ------------------------------------------------------------------------
    def candidate_mask(self, include: list[Any] | None = None, exclude: list[Any] | None = None,
                       genre: str | None = None) -> torch.Tensor | None:
        """Allowed items (n_items,) bool, or None when nothing is filtered. Unknown ids raise UnknownIdError."""
        if not include and not exclude and not genre:
            return None
        items = self.catalog.items
        if include:
            mask = torch.zeros(self.model.n_items, dtype=torch.bool)
            mask[torch.from_numpy(items.indices(include, "item (include)"))] = True
        else:
            mask = torch.ones(self.model.n_items, dtype=torch.bool)
        if exclude:
            mask[torch.from_numpy(items.indices(exclude, "item (exclude)"))] = False
        if genre:
            mask &= self.catalog.genre_mask(genre)
        return mask

    # ---- known users --------------------------------------------------------------------
    def recommend(self, user: Any, k: int = 10, *, exclude_seen: bool = True, include: list[Any] | None = None,
                  exclude: list[Any] | None = None, genre: str | None = None) -> list[dict[str, Any]]:
        """Top-k for a known user, best first (fewer only when fewer items are allowed)."""
        u = self.users.index(user, "user")
        mask = self.candidate_mask(include, exclude, genre)
        if self.index is not None and not include:
            cand = self._ann_candidates(u, k, exclude_seen, mask)
            if cand is not None:  # exact model scores of the candidates, ties to the lower index
                with torch.no_grad():
                    vals = self.model.score(torch.full_like(cand, u), cand).float()
                idx, top = top_k(vals[None], min(k, cand.numel()))
                keep = idx[0] >= 0
                return self._rows(cand[idx[0][keep]].tolist(), top[0][keep].tolist())
        idx, vals = self.model.recommend_indices(torch.tensor([u]), k, exclude_seen=exclude_seen, mask=mask)
        return self._ranked(idx[0], vals[0])

    def _ann_candidates(self, u: int, k: int, exclude_seen: bool, mask: torch.Tensor | None) -> torch.Tensor | None:
        """Up to k allowed, unseen items from the index (sorted by index), or None to score exactly instead.

        The mask is applied inside the search (a FAISS ID selector); seen items are removed by
        over-fetching k + n_seen and filtering. If too few remain, the caller scores exactly.
        """
        assert self.index is not None and self.form is not None
        lo, hi = int(self._seen_ptr[u]), int(self._seen_ptr[u + 1])
        seen = self.model.seen_.indices[lo:hi] if exclude_seen else None
        n_seen = 0 if seen is None else seen.numel()
        fetch = k + n_seen
        allowed = None if mask is None else mask.numpy()
        if allowed is not None and int(allowed.sum()) < 4 * fetch:
            return None  # a very selective filter: the exact masked scoring is cheap and complete
        found, _ = self.index.search(self.form.users[u].numpy()[None], fetch, allowed)
        skip = set(seen.tolist()) if n_seen else set()  # a set: torch.isin costs ~0.2 ms on these sizes
        cand = sorted(i for i in found[0].tolist() if i >= 0 and i not in skip)
        if len(cand) < min(k, self.model.n_items - n_seen):
            return None
        return torch.tensor(cand, dtype=torch.int64)

    # ---- anonymous users ----------------------------------------------------------------
    def recommend_new_user(self, ratings: list[tuple[Any, float]] | None = None, liked: list[Any] | None = None,
                           k: int = 10, *, include: list[Any] | None = None, exclude: list[Any] | None = None,
                           genre: str | None = None, user_features: Mapping[str, Any] | None = None,
                           repeats: bool = False) -> list[dict[str, Any]]:
        """Top-k for a user known only by a few ratings or liked items (fold-in), each with a reason.

        The history is folded into the frozen model (its "fold_in" capability); the whole
        catalogue is scored, rated items (unless `repeats`) and filtered-out items masked, then the
        top k taken. `user_features` (age, gender, occupation) give a demographic prior where the model has one.
        """
        from recotorch.online.foldin import scores_for_history

        items = self.catalog.items
        raws = [r for r, _ in ratings] if ratings else list(liked or [])
        if not raws:
            raise OptionError("ratings", "give at least one rated or liked item")
        idx = items.indices(raws, "item")
        values = [float(v) for _, v in ratings] if ratings else self._liked_values(len(raws))
        mask = self.candidate_mask(include, exclude, genre)
        if not self.model.supports("fold_in"):
            raise FoldInUnavailableError(f"fold-in is not available for {type(self.model).__name__}")
        history = torch.from_numpy(np.asarray(idx, dtype=np.int64))
        with torch.no_grad():
            scores = scores_for_history(self.model, history, None if values is None else torch.tensor(values),
                                        user_features=user_features).clone()
        if not repeats:
            scores[history] = -torch.inf
        if mask is not None:
            scores.masked_fill_(~mask, -torch.inf)
        top, vals = top_k(scores[None], min(k, scores.numel()))
        keep = top[0] >= 0
        top, vals = top[0][keep], vals[0][keep]
        rows = self._rows(top.tolist(), vals.tolist())
        self._add_reasons(rows, top, idx, values if ratings else None)
        return rows

    def scores_next_items(self) -> bool:
        """Whether `recommend_history` reads the order (a model with the "next_items" capability)."""
        return self.model.supports("next_items")

    def recommend_history(self, history: list[Any], k: int = 10, *, repeats: bool = False,
                          include: list[Any] | None = None, exclude: list[Any] | None = None,
                          genre: str | None = None) -> list[dict[str, Any]]:
        """Top-k next items for an anonymous user from the items they touched, oldest first.

        A next-item model scores the ordered history itself (`recommend_history_indices`); any other
        model folds the items in as liked items (`recommend_new_user`). History items are left out
        unless `repeats`; filters act before top-k. Unknown ids raise UnknownIdError.
        """
        if not history:
            raise OptionError("history", "give at least one item id")
        if not self.scores_next_items():
            return self.recommend_new_user(liked=history, k=k, include=include, exclude=exclude, genre=genre,
                                           repeats=repeats)
        idx = torch.from_numpy(np.asarray(self.catalog.items.indices(history, "item"), dtype=np.int64))
        mask = self.candidate_mask(include, exclude, genre)
        top, vals = self.model.recommend_history_indices(idx[None], k, exclude_seen=not repeats, mask=mask)
        keep = top[0] >= 0
        top, vals = top[0][keep], vals[0][keep]
        rows = self._rows(top.tolist(), vals.tolist())
        self._add_reasons(rows, top, idx.numpy(), None)
        return rows

    def _liked_values(self, n: int) -> list[float] | None:
        """Ratings standing for "liked" items: the model's `liked_rating()` (None: ranking models)."""
        value = self.model.liked_rating()
        return None if value is None else [float(value)] * n

    def _add_reasons(self, rows: list[dict[str, Any]], ranked: torch.Tensor, rated: np.ndarray,
                     values: list[float] | None) -> None:
        """'because you liked X': the liked item whose vector is closest (cosine) to each recommendation."""
        if self._unit is None or not rows:
            return
        liked = torch.from_numpy(rated)
        if values is not None:
            v = torch.tensor(values)
            liked = liked[v >= v.mean()]  # above-average ratings count as liked
        sims = self._unit[ranked] @ self._unit[liked].T  # (n_recs, n_liked)
        best = sims.argmax(dim=1)
        for row, j, s in zip(rows, best.tolist(), sims.max(dim=1).values.tolist(), strict=True):
            i = int(liked[j])
            row["because"] = {"item": self.catalog.items.raw(i), "title": self.catalog.title(i),
                              "similarity": round(float(s), 4)}

    # ---- items --------------------------------------------------------------------------
    def similar(self, item: Any, k: int = 10) -> list[dict[str, Any]]:
        """Items closest to `item`, by the model's own `similar_items` (cosine of item vectors by default)."""
        i = self.catalog.items.index(item, "item")
        if not self.model.supports("similar_items"):
            raise UnsupportedError(f"{type(self.model).__name__} has no item vectors to compare")
        idx, vals = self.model.similar_indices(torch.tensor([i]), k)
        return self._ranked(idx[0], vals[0])

    def predict(self, pairs: list[tuple[Any, Any]], allow_unknown: bool = False) -> list[dict[str, Any]]:
        """Model scores of (user, item) pairs; unknown ids raise unless `allow_unknown` (then the fallback)."""
        u = torch.tensor([self.users.get(p[0]) for p in pairs], dtype=torch.int64)
        i = torch.tensor([self.catalog.items.get(p[1]) for p in pairs], dtype=torch.int64)
        known = (u >= 0) & (i >= 0)
        if not allow_unknown and not bool(known.all()):
            j = int((~known).nonzero()[0])
            kind, raw = ("user", pairs[j][0]) if u[j] < 0 else ("item", pairs[j][1])
            raise UnknownIdError(f"unknown {kind} id: {raw!r} (pair {j}); set allow_unknown for fallback values")
        pred = self.model.predict_indices(u, i)
        return [{"user": p[0], "item": p[1], "prediction": float(v), "known": bool(kn)}
                for p, v, kn in zip(pairs, pred.values.tolist(), known.tolist(), strict=True)]

    def search(self, query: str = "", limit: int = 20, offset: int = 0, genre: str | None = None) -> dict[str, Any]:
        total, idx = self.catalog.search(query, limit, offset, genre)
        pop = self.catalog.popularity
        return {"total": total, "items": [{**self.catalog.describe(i), "n_ratings": int(pop[i])} for i in idx]}
