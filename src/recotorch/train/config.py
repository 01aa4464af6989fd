"""Typed hyper-parameters, declared once: the `param` field helper, the `Params` base that checks them,
and `TrainConfig`, the training fields every gradient-trained model takes.

A hyper-parameter is a dataclass field: its annotation gives the type (a `Literal` gives the
choices), `param(default, help=..., ge=/gt=/le=/lt=, tune=)` the default, the allowed range, the
help text and an optional search-space hint for the tuner. `Params.__post_init__` checks every
field against that declaration and raises `OptionError` naming the keyword. A subclass may
re-declare a field with a plain default (`epochs: int = 8`); its range and help are inherited.
`recotorch.models.config` builds each model's constructor, `get_params` and CLI parsing from this.
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from recotorch.errors import OptionError
from recotorch.train.ordering import ShuffleName

OptimizerName = Literal["adamw", "sparse_adam", "rowwise_adagrad"]
ScheduleName = Literal["one_cycle", "constant"]


@dataclass(frozen=True)
class Tune:
    """A search-space hint for the tuner: a range of `kind` values, sampled on a log scale when `log`."""

    low: float
    high: float
    log: bool = False
    kind: Literal["float", "int"] = "float"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def log_uniform(low: float, high: float) -> Tune:
    return Tune(low, high, log=True)


def int_range(low: int, high: int, *, log: bool = False) -> Tune:
    return Tune(low, high, log=log, kind="int")


@dataclass(frozen=True)
class Spec:
    """What `param` declares beyond the type and default."""

    help: str = ""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    tune: Tune | None = None

    def range_text(self) -> str:
        parts = [f"{op} {v:g}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                 if v is not None]
        return " and ".join(parts)


def param(default: Any, *, help: str = "", ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None, tune: Tune | None = None) -> Any:
    """A hyper-parameter field: default, help text, allowed range (bounds apply to numbers, None passes)
    and an optional tuner hint."""
    spec = Spec(help=help, ge=ge, gt=gt, le=le, lt=lt, tune=tune)
    return dataclasses.field(default=default, metadata={"spec": spec})


def field_spec(config: type, name: str) -> Spec:
    """The `Spec` of field `name` of dataclass `config`, inherited from a base where re-declared plainly."""
    for klass in config.__mro__:
        found = getattr(klass, "__dataclass_fields__", {}).get(name)
        if found is not None and "spec" in found.metadata:
            return found.metadata["spec"]
    return Spec()


def field_types(config: type) -> dict[str, Any]:
    """Resolved annotations of a config dataclass's fields."""
    return typing.get_type_hints(config)


def literal_choices(hint: Any) -> tuple[Any, ...] | None:
    """The allowed values of a `Literal` (or `Literal | None`) annotation, else None."""
    args = _union_args(hint)
    literals = [a for a in args if typing.get_origin(a) is Literal]
    if not literals or not all(typing.get_origin(a) is Literal or a is type(None) for a in args):
        return None
    return tuple(v for a in literals for v in typing.get_args(a)) + ((None,) if type(None) in args else ())


def _union_args(hint: Any) -> tuple[Any, ...]:
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    return typing.get_args(hint) if union else (hint,)


def conforms(value: Any, hint: Any) -> bool:
    """True when `value` fits annotation `hint` (ints pass for floats, lists for tuples and sequences;
    an annotation this does not understand passes everything)."""
    if hint is Any or hint is object:
        return True
    if hint is type(None) or hint is None:
        return value is None
    origin = typing.get_origin(hint)
    if origin is Literal:  # True is not 1 here, but 1 may stand for 1.0
        return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in typing.get_args(hint))
    if isinstance(hint, types.UnionType) or origin is typing.Union:
        return any(conforms(value, a) for a in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, Sequence, list, typing.Sequence) or hint in (tuple, list):
        if isinstance(value, str) or not isinstance(value, (tuple, list)):
            return False
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(conforms(v, a) for v, a in zip(value, args, strict=True))
        return not args or all(conforms(v, args[0]) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def type_text(hint: Any) -> str:
    """A short reading of an annotation for messages and `describe`."""
    if typing.get_origin(hint) is Literal:
        return " | ".join(repr(c) for c in typing.get_args(hint))
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return " | ".join(type_text(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", None) if not typing.get_args(hint) else str(hint).replace("typing.", "")


def check_value(config: type, name: str, value: Any, *, option: str | None = None) -> None:
    """Refuse `value` for field `name` of `config` when it is of the wrong type, not one of the `Literal`
    choices, or outside the declared range (`OptionError` naming `option`, by default the keyword)."""
    option = option or name
    hint = field_types(config)[name]
    choices = literal_choices(hint)
    if choices is not None and not conforms(value, hint):
        shown = [repr(c) for c in choices if c is not None]
        listed = " or ".join(shown) if len(shown) < 3 else ", ".join(shown[:-1]) + " or " + shown[-1]
        raise OptionError(option, f"must be {listed}, got {value!r}")
    if not conforms(value, hint):
        raise OptionError(option, f"must be {type_text(hint)}, got {value!r}")
    spec = field_spec(config, name)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        v = float(value)
        ok = ((spec.ge is None or v >= spec.ge) and (spec.gt is None or v > spec.gt)
              and (spec.le is None or v <= spec.le) and (spec.lt is None or v < spec.lt))
        if not ok or v != v:
            raise OptionError(option, f"must be {spec.range_text() or 'a number'}, got {value!r}")


def _takes_tuple(hint: Any) -> bool:
    origins = {typing.get_origin(a) or a for a in _union_args(hint)}
    return bool(origins & {tuple, Sequence})


class Params:
    """Base of typed hyper-parameter dataclasses: every field is checked when the config is built."""

    def __post_init__(self) -> None:
        hints = field_types(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, list) and _takes_tuple(hints[f.name]):  # e.g. read back from model.json
                setattr(self, f.name, tuple(value))
            check_value(type(self), f.name, getattr(self, f.name))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


@dataclass
class TrainConfig(Params):
    """How the one training loop runs (every field is also a keyword of every gradient-trained model).

    Under torchrun each process uses "cuda:LOCAL_RANK" instead of a CUDA device named in `device`.
    `optimizer`: "adamw" is dense; "rowwise_adagrad" (fastest; `recotorch.train.optimizers`) and
    "sparse_adam" (lazy Adam) update only the rows a batch touches, for models whose embeddings
    give sparse gradients. `shuffle="user_blocks"`: blocks of users in random order, rows shuffled
    within each (cache-friendly on large logs; `recotorch.train.ordering`).
    """

    epochs: int = param(5, ge=1, help="passes over the training rows", tune=int_range(1, 60))
    batch_size: int = param(1024, ge=1, help="rows per optimiser step (before gradient accumulation)",
                            tune=int_range(128, 16384, log=True))
    lr: float = param(1e-2, gt=0, help="peak learning rate (the top of the one-cycle schedule)",
                      tune=log_uniform(1e-4, 1e-1))
    weight_decay: float = param(0.5, ge=0, help="decoupled (AdamW) weight decay, the course's wd",
                                tune=log_uniform(1e-3, 3.0))
    schedule: ScheduleName = param("one_cycle", help="one_cycle (warm-up then cosine annealing) or constant")  # noqa: RUF009 (a type alias)
    pct_start: float = param(0.25, gt=0, lt=1, help="fraction of steps spent warming up in one-cycle")
    grad_accum: int = param(1, ge=1, help="batches whose gradients are summed before one optimiser step")
    patience: int | None = param(None, ge=1, help="stop after this many epochs without validation improvement "
                                                 "and restore the best epoch's weights (None: never)")
    seed: int = param(0, help="seeds initialisation, shuffling and dropout (the global RNG is left alone)")
    device: str = param("cpu", help="cpu, cuda, cuda:1, or auto (CUDA when available)")
    progress: bool = param(False, help="show a progress bar with the live loss")
    optimizer: OptimizerName = param("adamw", help="adamw (dense), rowwise_adagrad or sparse_adam (row-sparse)")  # noqa: RUF009 (a type alias)
    amp: bool = param(False, help="forward pass under bfloat16 autocast (for GPUs with bf16 tensor cores)")
    shuffle: ShuffleName = param("random", help="random (a permutation per epoch) or user_blocks")  # noqa: RUF009 (a type alias)

    @classmethod
    def of(cls, params: Any) -> TrainConfig:
        """The training fields of a larger config (a model's), as a `TrainConfig`."""
        return cls(**{f.name: getattr(params, f.name) for f in dataclasses.fields(cls)})

    def fingerprint(self) -> dict[str, Any]:
        """The fields that change the numbers (not progress display)."""
        d = self.to_dict()
        d.pop("progress")
        # fields added later are left out at their defaults, so older checkpoints still match
        for name, default in (("optimizer", "adamw"), ("amp", False), ("shuffle", "random")):
            if d[name] == default:
                d.pop(name)
        return d
