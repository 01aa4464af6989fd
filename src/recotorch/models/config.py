"""Each model's hyper-parameters as one typed config, and what is built from it.

A model declares its hyper-parameters once, as a nested dataclass `Config` (fields made with
`recotorch.train.config.param`; gradient models derive it from `TrainConfig`, so every training
field is a keyword). From it come the model's keyword constructor (with a real signature),
validation at construction (`OptionError` naming the keyword), `get_params`/`set_params`/`clone`,
`__repr__`, the params written to model.json, `make_model`, the CLI's `--set key=value`
(`parse_assignments`) and the listing for `--help` and the tuner (`describe`).

    class MyModel(Estimator):
        @dataclass
        class Config(Params):
            dim: int = param(32, ge=1, help="factors", tune=int_range(8, 256, log=True))
            reg: float = param(1.0, ge=0, help="ridge strength", tune=log_uniform(1e-3, 1e3))

`MyModel(dim=8)` then sets `self.dim`, `self.reg`. A model that still writes its own `__init__`
(`self._set_params(locals())`) gets a config derived from its signature (types, defaults and
`Literal` choices; no ranges or help), checked at fit.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import json
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from recotorch.errors import OptionError
from recotorch.train.config import (
    Params,
    Spec,
    TrainConfig,
    Tune,
    check_value,
    field_spec,
    field_types,
    literal_choices,
    type_text,
)

__all__ = ["FieldInfo", "Params", "UnknownOptionError", "config_class", "describe", "model_class", "options_help",
           "parse_assignments", "search_space"]

_DERIVED: dict[type, type] = {}


class UnknownOptionError(OptionError, TypeError):
    """A keyword the model does not take (a `TypeError` too, as Python raises for unknown keywords)."""


def config_class(model: type) -> type:
    """The config dataclass of a model class: its declared `Config`, or one derived from its signature."""
    declared = model.__dict__.get("Config") or _declared_in_bases(model)
    if declared is not None:
        return declared
    if model not in _DERIVED:
        _DERIVED[model] = _from_signature(model)
    return _DERIVED[model]


def _declared_in_bases(model: type) -> type | None:
    for klass in model.__mro__:
        if "__init__" in klass.__dict__ and not getattr(klass.__dict__["__init__"], "_from_config", False):
            return None  # a hand-written constructor nearer than any Config
        if "Config" in klass.__dict__:
            return klass.__dict__["Config"]
    return None


def _from_signature(model: type) -> type:
    try:
        hints = typing.get_type_hints(model.__init__)
    except Exception:  # an annotation that cannot be resolved: take any value
        hints = {}
    fields = []
    for p in inspect.signature(model.__init__).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = None if p.default is p.empty else p.default
        fields.append((p.name, hints.get(p.name, Any), dataclasses.field(default=default)))
    return dataclasses.make_dataclass(f"{model.__name__}Config", fields, bases=(Params,))


def field_names(config: type) -> list[str]:
    """Fields in signature order: the model's own first, then the training fields."""
    names = [f.name for f in dataclasses.fields(config)]
    train = {f.name for f in dataclasses.fields(TrainConfig)}
    return [n for n in names if n not in train] + [n for n in names if n in train]


def build_config(model: type, params: dict[str, Any]) -> Any:
    """The validated config of `model` for keyword `params` (unknown keywords refused with a suggestion)."""
    config = config_class(model)
    names = field_names(config)
    for key in params:
        if key not in names:
            raise UnknownOptionError(key, f"{model.__name__} does not take {key!r}{_did_you_mean(key, names)}")
    return config(**params)


def _did_you_mean(key: str, names: list[str]) -> str:
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; it takes {', '.join(sorted(names))}"


def install_init(model: type) -> None:
    """Give a model class that declares `Config` (and no `__init__` of its own) its keyword constructor."""
    config = model.__dict__["Config"]

    def __init__(self: Any, **params: Any) -> None:
        self._apply_config(build_config(type(self), params))

    __init__._from_config = True  # type: ignore[attr-defined]
    __init__.__signature__ = signature(config)  # type: ignore[attr-defined]
    __init__.__doc__ = f"Hyper-parameters: see `{model.__name__}.Config` or `describe({model.__name__!r})`."
    __init__.__qualname__ = f"{model.__qualname__}.__init__"
    model.__init__ = __init__  # type: ignore[misc]


def signature(config: type) -> inspect.Signature:
    """A keyword-only constructor signature for `config`'s fields (defaults and annotations shown)."""
    hints = field_types(config)
    fields = {f.name: f for f in dataclasses.fields(config)}
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for name in field_names(config):
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=hints.get(name, inspect.Parameter.empty)))
    return inspect.Signature(params, return_annotation=None)


def defaults(config: type) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(config):
        out[f.name] = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    return out


def clone_params(params: dict[str, Any]) -> dict[str, Any]:
    """Deep copies of the values, as `sklearn.base.clone` makes."""
    return {k: copy.deepcopy(v) for k, v in params.items()}


# ---- the command line and the tuner -------------------------------------------------------------
@dataclass(frozen=True)
class FieldInfo:
    """One hyper-parameter as `describe` lists it."""

    name: str
    type: str
    default: Any
    choices: tuple[Any, ...] | None
    help: str
    range: str
    tune: Tune | None
    training: bool  # one of `TrainConfig`'s fields

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tune"] = None if self.tune is None else self.tune.to_dict()
        return d

    def line(self) -> str:
        """`name=default  type  help (range)`, for a `--help`-style listing."""
        extra = f" ({self.range})" if self.range else ""
        return f"{self.name}={self.default!r}  [{self.type}]  {self.help}{extra}".rstrip()


def describe(model_name: str) -> list[FieldInfo]:
    """The hyper-parameters of a registered model: name, type, default, choices, help, range, tuner hint."""
    config = config_class(model_class(model_name))
    hints, dflt = field_types(config), defaults(config)
    train = {f.name for f in dataclasses.fields(TrainConfig)} if issubclass(config, TrainConfig) else set()
    out = []
    for name in field_names(config):
        spec: Spec = field_spec(config, name)
        choices = literal_choices(hints.get(name, Any))
        tune = spec.tune
        out.append(FieldInfo(name, type_text(hints.get(name, Any)) or "any", dflt[name], choices, spec.help,
                             spec.range_text(), tune, name in train))
    return out


def options_help(model_name: str) -> str:
    """A `--help`-style listing of a model's options: its own, then the training loop's (`describe`)."""
    infos = describe(model_name)
    own = [f"  {i.line()}" for i in infos if not i.training]
    train = [f"  {i.line()}" for i in infos if i.training]
    parts = [f"{model_name} options (--set KEY=VALUE):", *(own or ["  (none)"])]
    if train:
        parts += ["training options:", *train]
    return "\n".join(parts)


def search_space(model_name: str) -> dict[str, Tune | tuple[Any, ...]]:
    """What the tuner may vary: fields with a `tune` hint (ranges), and the model's own `Literal` fields
    (choices; the training loop's optimizer, schedule and shuffle are settings, not searched)."""
    space: dict[str, Tune | tuple[Any, ...]] = {}
    for info in describe(model_name):
        if info.tune is not None:
            space[info.name] = info.tune
        elif info.choices is not None and not info.training:
            space[info.name] = tuple(c for c in info.choices if c is not None)
    return space


def parse_assignments(model_name: str, assignments: list[str], *, option: str = "--set") -> dict[str, Any]:
    """`["reg=400", "half_life=0.2"]` -> `{"reg": 400.0, "half_life": 0.2}` for model `model_name`.

    Each value is converted to the field's declared type ("none" for None, "true"/"false" for
    booleans, comma-separated values for tuples and lists, JSON for dicts) and checked against its
    choices and range. Unknown keys are refused with the closest name suggested; every refusal is an
    `OptionError` naming `--set KEY`.
    """
    model = model_class(model_name)
    config = config_class(model)
    names, hints = field_names(config), field_types(config)
    out: dict[str, Any] = {}
    for text in assignments:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OptionError(option, f"expected KEY=VALUE, got {text!r}")
        if key not in names:
            raise UnknownOptionError(f"{option} {key}",
                                     f"model {model_name!r} has no option {key!r}{_did_you_mean(key, names)}")
        if key in out:
            raise OptionError(f"{option} {key}", "given twice")
        value = convert(raw.strip(), hints.get(key, Any), f"{option} {key}")
        check_value(config, key, value, option=f"{option} {key}")
        out[key] = value
    return out


def convert(text: str, hint: Any, option: str) -> Any:
    """The value of `text` for annotation `hint` (the first member of a union that reads it)."""
    args = typing.get_args(hint) if _is_union(hint) else (hint,)
    if text.lower() in ("none", "null") and type(None) in args:
        return None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _convert_one(text, arg)
        except (ValueError, TypeError):
            continue
    raise OptionError(option, f"cannot read {text!r} as {type_text(hint)}")


def _convert_one(text: str, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        for choice in typing.get_args(hint):
            if str(choice) == text:
                return choice
        raise ValueError(text)
    if hint is bool:
        lowered = text.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise ValueError(text)
    if hint is int:
        return int(text)
    if hint is float:
        return float(text)
    if hint is str or hint is Any:
        return text
    if origin is dict or hint is dict:
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError(text)
        return value
    if origin in (tuple, list, Sequence):
        parts = [p.strip() for p in text.split(",")] if text.strip() else []
        items = typing.get_args(hint)
        if origin is tuple and items and items[-1] is not Ellipsis:
            if len(parts) != len(items):
                raise ValueError(text)
            return tuple(_convert_one(p, a) for p, a in zip(parts, items, strict=True))
        inner = items[0] if items else str
        return tuple(_convert_one(p, inner) for p in parts)
    raise TypeError(hint)


def _is_union(hint: Any) -> bool:
    import types

    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union


def model_class(model_name: str) -> type:
    """The registered model class called `model_name` (`OptionError` naming --model when unknown)."""
    from recotorch.models.base import MODELS

    if model_name not in MODELS:
        raise OptionError("model", f"unknown model {model_name!r}{_did_you_mean(model_name, sorted(MODELS))}")
    return MODELS[model_name]

