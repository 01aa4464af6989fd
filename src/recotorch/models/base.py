"""The shared face of every recotorch model: fit, predict, recommend, similar_items, save, and capabilities.

Capabilities are methods of the model, never a branch elsewhere on its class. Each model declares
what it can do in `CAPABILITIES` (or `capabilities()` when it depends on its parameters, as for
`Bagged`); callers ask `model.supports("fold_in")` and then call the method. A
method a model does not support raises `recotorch.errors.UnsupportedError`.

- `fold_in`: `fold_in(item_idx, values)` -> user representations (B, D); `score_new_users(vectors)`
  (B, n_items); `score_new_user_pairs(vectors, item_idx)` (B, M).
- `update`: `update(NewRows, reg=, epochs=, lr=)` folds new rows into the fitted state, in place.
- `retrieval_vectors`: `retrieval_vectors()` -> `core.RetrievalVectors` (a dot form, for an ANN index).
- `similar_items`: `similar_items(item_ids, k)`.
- `train_epochs`: trained in epochs by the one `Trainer`: `fit(..., checkpoint_dir=, resume=)`, `find_lr`.
- `next_items`: a next-item (sequence) model: `recommend_history(items_in_order, k)`, `evaluate --task next`.
- `item_vectors`, `user_vectors`, `item_biases`, `user_biases`: methods returning those tensors (explain,
  fold-in priors); `item_vectors()` exists on every model (None without vectors), the other three
  only on models that declare them.

Hyper-parameters are declared once per model, as a nested `Config` dataclass (`recotorch.models.config`):
it gives the keyword constructor, validation, `get_params`/`set_params`/`clone`, `repr` and the saved params.

Every model answers `cold_scores()` (a user with no history) and `liked_rating()` (the rating
that stands for "liked" in a history without ratings).
"""

from __future__ import annotations

import importlib
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl
import torch

from recotorch.core.retrieval import RetrievalVectors
from recotorch.core.threads import preparation_threads, torch_threads
from recotorch.core.topk import top_k
from recotorch.data.interactions import CSR, Interactions
from recotorch.data.vocab import Vocab
from recotorch.errors import OptionError, UnknownIdError, UnsupportedError
from recotorch.models.config import build_config, clone_params, config_class, defaults, field_names, install_init
from recotorch.train.config import field_types, literal_choices

Task = Literal["rating", "ranking"]
Capability = Literal["fold_in", "update", "retrieval_vectors", "similar_items", "item_vectors", "user_vectors",
                     "item_biases", "user_biases", "train_epochs", "next_items"]
CAPABILITY_NAMES: tuple[str, ...] = ("fold_in", "update", "retrieval_vectors", "similar_items", "item_vectors",
                                     "user_vectors", "item_biases", "user_biases", "train_epochs", "next_items")
CHUNK_SCORES = 1 << 24  # scores per recommend chunk: (users x items) held at once, 64 MB in float32

# name -> the module that registers it. Why a table: a command that fits or loads one model imports
# that model's module alone, not all of them (~0.1-0.2 s of every `recotorch fit`); the contract test
# checks that each module registers exactly the names listed for it.
MODEL_HOMES: dict[str, str] = {
    "als": "recotorch.models.als", "bagged": "recotorch.models.ensemble", "bce": "recotorch.models.ranking_mf",
    "bias": "recotorch.models.baselines", "blend": "recotorch.models.blend", "bpr": "recotorch.models.ranking_mf",
    "ease": "recotorch.models.ease", "gru4rec": "recotorch.models.sequential.neural",
    "hybrid": "recotorch.models.hybrid", "itemknn": "recotorch.models.itemknn",
    "knn_baseline": "recotorch.models.knn_baseline", "knn_last": "recotorch.models.sequential.counts",
    "mean": "recotorch.models.baselines", "mf": "recotorch.models.mf", "mf_coldstart": "recotorch.models.coldstart_mf",
    "ncf": "recotorch.models.ncf", "pop": "recotorch.models.popularity", "ranking_mf": "recotorch.models.ranking_mf",
    "rp3beta": "recotorch.models.rp3beta", "sasrec": "recotorch.models.sequential.neural",
    "svdpp": "recotorch.models.svdpp", "transitions": "recotorch.models.sequential.counts",
}


class Registry(Mapping[str, "type[Estimator]"]):
    """Model name -> class. Every name is listed from the start; a class's module is imported when the
    class is first asked for. Models defined elsewhere join with `register`."""

    def __init__(self, homes: Mapping[str, str]) -> None:
        self._homes = dict(homes)
        self._classes: dict[str, type[Estimator]] = {}

    def add(self, cls: type[Estimator]) -> None:
        self._classes[cls.name] = cls
        self._homes.setdefault(cls.name, cls.__module__)

    def home(self, name: str) -> str:
        """The module that defines model `name`."""
        return self._homes[name]

    def __getitem__(self, name: str) -> type[Estimator]:
        if name not in self._classes and name in self._homes:
            importlib.import_module(self._homes[name])
        return self._classes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._homes

    def __iter__(self) -> Iterator[str]:
        return iter(self._homes)

    def __len__(self) -> int:
        return len(self._homes)


MODELS = Registry(MODEL_HOMES)


def register(cls: type[Estimator]) -> type[Estimator]:
    """Class decorator: make a model loadable and selectable by its `name`."""
    MODELS.add(cls)
    return cls


@dataclass(frozen=True)
class NewRows:
    """New interactions for `Estimator.update`, in the model's (already extended) indices.

    The vocabularies, seen sets and features of the model were extended before the call;
    `old_seen`, `old_users` and `old_items` describe the model as it was fitted.
    """

    user_idx: torch.Tensor  # (n,) int64
    item_idx: torch.Tensor  # (n,) int64
    rating: torch.Tensor | None  # (n,) float32, or None for implicit data
    old_seen: CSR
    old_users: int
    old_items: int

    def ratings(self, model: Estimator) -> torch.Tensor:
        """The ratings; rating models need them."""
        if self.rating is None:
            raise ValueError(f"{type(model).__name__} predicts ratings: the new interactions need a rating column")
        return self.rating


@dataclass(frozen=True)
class Predictions:
    """Predicted values for (user, item) pairs; `known` is False where a fallback answered."""

    values: np.ndarray  # (n,) float32
    known: np.ndarray  # (n,) bool: both ids were seen in training

    @property
    def n_fallback(self) -> int:
        return int((~self.known).sum())


@dataclass(frozen=True)
class Recommendations:
    """Top-k lists: row r holds the items for `user_ids[r]`, best first; -1 marks an empty slot.

    For `similar_items` the rows are query items (`query="item"`), and `user_ids` holds their ids.
    """

    user_ids: list[Any]
    item_idx: torch.Tensor  # (n_users, k) int64
    scores: torch.Tensor  # (n_users, k) float32, -inf in empty slots
    items: Vocab
    query: Literal["user", "item"] = "user"

    def item_ids(self, row: int) -> list[Any]:
        idx = self.item_idx[row]
        return self.items.lookup(idx[idx >= 0].numpy())

    def to_frame(self) -> pl.DataFrame:
        """Long format: user, item, rank (1-based), score (for similar items: item, similar_item, rank,
        score); empty slots left out."""
        filled = self.item_idx >= 0
        rows, cols = filled.nonzero(as_tuple=True)
        queries = pl.Series(self.query, self.user_ids, strict=False).gather(rows.numpy())
        found = "item" if self.query == "user" else "similar_item"
        return pl.DataFrame({
            self.query: queries,
            found: self.items.ids.gather(self.item_idx[rows, cols].numpy()),
            "rank": (cols + 1).numpy(),
            "score": self.scores[rows, cols].numpy(),
        })


class Estimator(ABC):
    """Base class: hyper-parameters in `__init__`, fitted state in attributes ending in `_`.

    Subclasses implement `_fit`, `score` and `_state`/`_restore`; everything that deals with
    raw ids, seen items, top-k and files lives here once.
    """

    name: ClassVar[str]
    task: ClassVar[Task]
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset()
    # how strongly each pair counts when `recotorch fit` makes implicit data and --weights is not given;
    # None: the model does not use weights (every pair counts 1), and `fit` refuses --weights for it
    DEFAULT_WEIGHTS: ClassVar[str | None] = None
    # a tiny configuration for the registry-driven contract test (tests/test_model_contract.py)
    TEST_PARAMS: ClassVar[dict[str, Any]] = {}
    lineage_: dict[str, Any] | None = None  # written into the saved extras (set by `recotorch.online.update`)
    artifact_version_: Path | None = None  # the version folder a loaded model came from (set by `artifacts.load`)
    artifact_tag_: str | None = None  # ... and its tag

    @property
    def is_fitted(self) -> bool:
        """True once `fit` (or a load) gave the model its vocabularies and fitted state."""
        return "users_" in vars(self)

    users_: Vocab
    items_: Vocab
    seen_: CSR  # training items of each user
    item_features_: pl.DataFrame | None = None
    user_features_: pl.DataFrame | None = None

    # ---- the part each model writes -----------------------------------------------------
    @abstractmethod
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        """Learn from compacted training data (indices are this model's own)."""

    @abstractmethod
    def score(self, user_idx: torch.Tensor, item_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Scores for index pairs, shape (n,); with `item_idx=None`, all items: (n_users, n_items).

        The full-catalogue form returns a new CPU tensor that the caller may overwrite.
        """

    def score_on_device(self, user_idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """`score(user_idx)` left on the model's device, so top-k runs there (a GPU) before any copy.

        `out`, a (len(user_idx), n_items) buffer, is where models that can write the scores
        in place put them (reusing one buffer saves a page-faulted allocation per chunk); others
        ignore it. Either way use the returned tensor.
        """
        return self.score(user_idx)

    @abstractmethod
    def _fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Fitted tensors and JSON-able extras, enough for `_restore`."""

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """What a model directory stores: `_fitted_state()` plus the lineage of an update, if any."""
        tensors, extra = self._fitted_state()
        return tensors, {**extra, **(self.lineage_ or {})}

    state = _state

    @abstractmethod
    def _restore(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        """Rebuild fitted state from `_state()` output."""

    # ---- hyper-parameters (declared once in `Config`: see `recotorch.models.config`) -------
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Config" in cls.__dict__ and "__init__" not in cls.__dict__:
            install_init(cls)

    def _apply_config(self, config: Any) -> None:
        """Set each field of a validated config as an attribute of the same name."""
        for name in field_names(type(config)):
            setattr(self, name, getattr(config, name))

    def _set_params(self, params: dict[str, Any]) -> None:
        """Store `__init__` arguments verbatim (call as `self._set_params(locals())`), for models that write
        their own constructor instead of declaring a `Config`."""
        for name, value in params.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    @classmethod
    def param_choices(cls) -> dict[str, tuple[Any, ...]]:
        """The allowed values of each hyper-parameter annotated with a `Literal` (or `Literal | None`)."""
        config = config_class(cls)
        try:
            hints = field_types(config)
        except Exception:  # an annotation that cannot be resolved: nothing to check
            return {}
        found = {name: literal_choices(hint) for name, hint in hints.items()}
        return {name: choices for name, choices in found.items() if choices is not None}

    def check_params(self) -> None:
        """Refuse hyper-parameters their declaration does not allow (`OptionError` naming the keyword):
        run at construction for models with a `Config`, and again at fit (attributes may have been set)."""
        build_config(type(self), self.get_params())

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """Hyper-parameters by name, as given to the constructor (`deep` is accepted for scikit-learn's habit;
        recotorch models hold no nested estimators)."""
        return {n: getattr(self, n) for n in field_names(config_class(type(self)))}

    def set_params(self, **params: Any) -> Estimator:
        """Change hyper-parameters (checked as at construction); returns self. Fitted state is kept until
        the next `fit`."""
        config = build_config(type(self), {**self.get_params(), **params})
        for name in params:
            setattr(self, name, getattr(config, name))
        return self

    def clone(self) -> Estimator:
        """An unfitted copy with the same hyper-parameters (`sklearn.base.clone` semantics)."""
        return type(self)(**clone_params(self.get_params()))

    def __repr__(self) -> str:
        """The class and the hyper-parameters that differ from their defaults, as scikit-learn shows them."""
        dflt = defaults(config_class(type(self)))
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if k not in dflt or dflt[k] != v)
        return f"{type(self).__name__}({args})"

    # ---- fitting ------------------------------------------------------------------------
    def prepare_fit(self) -> None:
        """Start, in the background, what a later `fit` needs and can get ready while the data is read
        (compiled kernels); a no-op by default. Loading a fitted model never calls it."""
        return None

    def fit(self, train: Interactions, valid: Interactions | None = None) -> Estimator:
        """Learn from `train`; `valid` (same raw ids) may drive early stopping. Returns self."""
        if len(train) == 0:
            raise ValueError("cannot fit on empty interactions")
        self.check_params()
        with torch_threads(preparation_threads(len(train))):  # the thread policy: recotorch.core.threads
            train = train.compact()
            self.users_, self.items_ = train.users, train.items
            self.seen_ = train.to_csr()
            self.item_features_ = train.item_features
            self.user_features_ = train.user_features
            if valid is not None:
                valid, _ = valid.reindex(self.users_, self.items_)
        # a gradient model's own work outside its training loop (biases, orders) is data preparation too
        with torch_threads(preparation_threads(len(train))) if self.supports("train_epochs") else nullcontext():
            self._fit(train, valid)
        return self

    @property
    def n_users(self) -> int:
        return len(self.users_)

    @property
    def n_items(self) -> int:
        return len(self.items_)

    # ---- capabilities -------------------------------------------------------------------
    def capabilities(self) -> frozenset[str]:
        """What this model can do beyond fit/score/recommend/predict (see the module docstring)."""
        return type(self).CAPABILITIES

    def supports(self, capability: Capability | str) -> bool:
        """True when the model implements `capability` (a name in `CAPABILITY_NAMES`)."""
        if capability not in CAPABILITY_NAMES:
            raise ValueError(f"unknown capability {capability!r}; choose one of {list(CAPABILITY_NAMES)}")
        return capability in self.capabilities()

    def _unsupported(self, what: str) -> UnsupportedError:
        return UnsupportedError(f"{what} is not available for {type(self).__name__} ({self.name!r})")

    def fold_in(self, item_idx: torch.Tensor, values: torch.Tensor | None = None, *, reg: float | None = None,
                reg_bias: float | None = None, user_features: pl.DataFrame | None = None) -> torch.Tensor:
        """Representations (B, D) of new users from padded histories, the fitted model frozen.

        item_idx (B, L): model item indices, -1 = padding; values (B, L): their ratings (rating
        models need them; others treat them as confidences or ignore them); `reg` / `reg_bias`
        the prior strengths (model-specific defaults); `user_features` (B rows of age, gender,
        occupation) give models with a demographic prior that prior. Nothing is written.
        """
        raise self._unsupported("fold-in")

    def score_new_users(self, vectors: torch.Tensor) -> torch.Tensor:
        """Scores (B, n_items) of folded-in users (`fold_in` output) against the whole catalogue."""
        raise self._unsupported("fold-in")

    def score_new_user_pairs(self, vectors: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Scores (B, M) of folded-in users for chosen items item_idx (B, M) (model indices, all >= 0)."""
        return self.score_new_users(vectors).gather(1, item_idx)

    def rating_scale(self) -> tuple[float, float] | None:
        """(lo, hi) of the ratings the model was trained on (rating models), else None (0/1 data)."""
        return None

    def update(self, rows: NewRows, *, reg: float | None = None, epochs: int = 0, lr: float | None = None) -> None:
        """Fold `rows` into the fitted state in place (vocabularies and seen sets already extended).

        `reg`: prior strength of closed-form solves (model default); `epochs`/`lr`: an optional
        fine-tune of gradient models. Driven by `recotorch.online.update`, which writes the result
        as a new model directory.
        """
        raise self._unsupported("incremental update")

    def retrieval_vectors(self) -> RetrievalVectors:
        """The model's scores as inner products (user vectors, item vectors, user offsets, squash)."""
        raise self._unsupported("a dot-product form")

    def cold_scores(self) -> torch.Tensor:
        """Scores (n_items,) for a user with no history: the number of training users per item.

        Rating models answer with their bias-adjusted item mean instead.
        """
        return torch.bincount(self.seen_.indices, minlength=self.n_items).float()

    def output_range(self) -> tuple[float, float] | None:
        """(lo, hi) the model's predictions are squashed onto (rating models with a sigmoid), else None."""
        return None

    def liked_rating(self) -> float | None:
        """The rating standing for "liked" in a history without ratings: None (ranking models, which
        treat every given item as a positive); rating models give the top of their rating scale."""
        if self.task == "rating":
            raise OptionError("liked", f"{type(self).__name__} predicts ratings on an open scale: "
                                       "send 'ratings', not 'liked'")
        return None

    # ---- answering in raw ids -----------------------------------------------------------
    def predict(self, user_ids: Iterable[Any], item_ids: Iterable[Any]) -> Predictions:
        """Score (user, item) pairs given as raw ids; unknown ids get `fallback` values."""
        u = torch.from_numpy(self.users_.index(user_ids))
        i = torch.from_numpy(self.items_.index(item_ids))
        return self.predict_indices(u, i)

    def predict_indices(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> Predictions:
        """`predict` for model indices; -1 marks an unknown id (answered by `fallback`)."""
        u, i = user_idx, item_idx
        if u.numel() != i.numel():
            raise ValueError(f"got {u.numel()} users but {i.numel()} items")
        known = (u >= 0) & (i >= 0)
        values = self._fallback(u, i)
        with torch.no_grad():
            values[known] = self.score(u[known], i[known]).float()
        return Predictions(values.numpy(), known.numpy())

    def fallback(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Values (n,) for pairs where an index may be -1 (unknown): rating models answer with their baseline."""
        return self._fallback(user_idx, item_idx)

    def _fallback(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Values for pairs with an unknown id (-1); rating models answer with their baseline."""
        return torch.zeros(user_idx.numel())

    def recommend(
        self,
        user_ids: Sequence[Any] | Any,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        include: Iterable[Any] | None = None,
        exclude: Iterable[Any] | None = None,
        batch_size: int | None = None,
    ) -> Recommendations:
        """Top-k items for each user over the whole catalogue, in chunks of `batch_size` users.

        Seen items are left out unless `exclude_seen=False`; `include` restricts the candidates
        to those items, `exclude` removes items. Unknown users raise `KeyError`. By default a
        chunk holds about 16M scores (64 MB), so memory stays bounded for any number of users.
        """
        ids = [user_ids] if isinstance(user_ids, (str, int, np.integer)) else list(user_ids)
        u = torch.from_numpy(self.users_.index(ids))
        if (u < 0).any():
            missing = [ids[j] for j in (u < 0).nonzero().flatten().tolist()[:5]]
            raise KeyError(f"unknown user id(s): {missing}")
        idx, val = self.recommend_indices(u, k, exclude_seen=exclude_seen, mask=self._candidate_mask(include, exclude),
                                          batch_size=batch_size)
        return Recommendations(ids, idx, val, self.items_)

    def recommend_indices(self, user_idx: torch.Tensor, k: int = 10, *, exclude_seen: bool = True,
                          mask: torch.Tensor | None = None, batch_size: int | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """`recommend` for model indices: (items (B, k), scores (B, k)) on the CPU, -1 / -inf in empty slots.

        `mask` (n_items,) bool: the allowed candidates (None: all).
        """
        u = user_idx
        k = min(k, self.n_items)
        batch_size = batch_size or max(1, min(4096, CHUNK_SCORES // max(self.n_items, 1)))
        idx_parts, score_parts = [], []
        buffer: torch.Tensor | None = None
        with torch.no_grad():
            for start in range(0, u.numel(), batch_size):
                rows = u[start : start + batch_size]
                scores = self.score_on_device(rows, None if buffer is None else buffer[: rows.numel()]).float()
                if buffer is None and scores.is_contiguous():
                    buffer = scores  # the next chunks are written into it where the model can
                if mask is not None:
                    scores[:, ~mask.to(scores.device)] = -torch.inf
                idx, val = top_k(scores, k, exclude=self.seen_ if exclude_seen else None, rows=rows, inplace=True)
                idx_parts.append(idx.cpu())
                score_parts.append(val.cpu())
        if not idx_parts:
            return torch.empty(0, k, dtype=torch.int64), torch.empty(0, k)
        if len(idx_parts) == 1:  # one chunk (e.g. one served user): no copy
            return idx_parts[0], score_parts[0]
        return torch.cat(idx_parts), torch.cat(score_parts)

    def _candidate_mask(self, include: Iterable[Any] | None, exclude: Iterable[Any] | None) -> torch.Tensor | None:
        if include is None and exclude is None:
            return None
        mask = torch.ones(self.n_items, dtype=torch.bool)
        if include is not None:
            mask[:] = False
            idx = self.items_.index(list(include))
            mask[torch.from_numpy(idx[idx >= 0])] = True
        if exclude is not None:
            idx = self.items_.index(list(exclude))
            mask[torch.from_numpy(idx[idx >= 0])] = False
        return mask

    def item_vectors(self) -> torch.Tensor | None:
        """Item embeddings (n_items, dim) for similarity, or None if the model has none."""
        return None

    def similar_items(self, item_ids: Sequence[Any] | Any, k: int = 10) -> Recommendations:
        """Most similar items (`similar_indices`) of each given item, itself left out. Unknown ids raise KeyError."""
        if not self.supports("similar_items"):
            raise UnsupportedError(f"{type(self).__name__} has no item vectors to compare")
        ids = [item_ids] if isinstance(item_ids, (str, int, np.integer)) else list(item_ids)
        i = torch.from_numpy(self.items_.index(ids))
        if (i < 0).any():
            missing = [ids[j] for j in (i < 0).nonzero().flatten().tolist()[:5]]
            raise UnknownIdError(f"unknown item id(s): {missing}")
        idx, val = self.similar_indices(i, k)
        return Recommendations(ids, idx, val, self.items_, query="item")

    def similar_indices(self, item_idx: torch.Tensor, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        """`similar_items` for model indices: (items (B, k), similarities (B, k)); by default the cosine
        similarity of item vectors."""
        vectors = self.item_vectors()
        if vectors is None:
            raise UnsupportedError(f"{type(self).__name__} has no item vectors to compare")
        i = item_idx
        unit = _unit_rows(self, vectors)
        sims = unit[i] @ unit.T
        sims[torch.arange(i.numel()), i] = -torch.inf
        return top_k(sims, max(1, min(k, self.n_items - 1)))

    # ---- files --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write a model directory atomically (see `recotorch.artifacts`); returns its path."""
        return _storage()[0](self, path)

    @classmethod
    def load(cls, path: str | Path) -> Estimator:
        return _storage()[1](path)


_UNIT: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], torch.Tensor]] = weakref.WeakKeyDictionary()


def _unit_rows(model: Estimator, vectors: torch.Tensor) -> torch.Tensor:
    """The length-normalised rows of `vectors`, remembered beside the model while those vectors stay the same
    (a served model answers many `similar_items` calls from one set of item vectors)."""
    key = (vectors.data_ptr(), vectors._version, tuple(vectors.shape), vectors.dtype)
    found = _UNIT.get(model)
    if found is None or found[0] != key:
        found = (key, torch.nn.functional.normalize(vectors.float(), dim=1))
        _UNIT[model] = found
    return found[1]


_STORAGE: list[tuple[Callable[[Estimator, str | Path], Path], Callable[[str | Path], Estimator]]] = []


def register_storage(save: Callable[[Estimator, str | Path], Path], load: Callable[[str | Path], Estimator]) -> None:
    """Install the functions behind `Estimator.save`/`load` (`recotorch.artifacts` registers its own), so
    that models never import the layer that writes model directories."""
    _STORAGE[:] = [(save, load)]


def _storage() -> tuple[Callable[[Estimator, str | Path], Path], Callable[[str | Path], Estimator]]:
    if not _STORAGE:  # artifacts registers itself when imported; loaded by name so models never import it
        importlib.import_module("recotorch.artifacts")
    if not _STORAGE:
        raise RuntimeError("no model storage registered: import recotorch.artifacts")
    return _STORAGE[0]
