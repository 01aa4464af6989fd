"""Option checks for the CLI: pure functions that raise `OptionError` naming the flag at fault.

An option that would do nothing in the given combination is refused, not ignored.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

from recotorch.errors import OptionError
from recotorch.models.config import config_class, field_names
from recotorch.train.config import check_value

# Python keyword of a model's __init__ -> the fit flag that sets it
FLAGS = {
    "dim": "--dim", "epochs": "--epochs", "lr": "--lr", "batch_size": "--batch-size",
    "weight_decay": "--weight-decay", "patience": "--patience", "seed": "--seed", "device": "--device",
    "reg": "--reg", "alpha": "--alpha", "iterations": "--iterations", "neighbours": "--neighbours",
    "n_neg": "--n-neg", "max_len": "--max-len", "n_last": "--n-last", "cell": "--cell", "loss": "--loss",
    "dropout": "--dropout", "half_life": "--half-life", "optimizer": "--optimizer", "amp": "--amp/--no-amp",
}
POSITIVE_INT = ("dim", "epochs", "iterations", "batch_size", "neighbours", "n_neg", "patience", "max_len", "n_last")
NON_NEGATIVE = ("weight_decay", "reg", "alpha")
OPTIMIZERS = ("adamw", "rowwise_adagrad", "sparse_adam")
_DEVICE = re.compile(r"^(cpu|auto|mps|cuda(:\d+)?)$")


def flag(name: str) -> str:
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def positive(option: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise OptionError(option, f"must be > 0, got {value}")


def non_negative(option: str, value: float | None) -> None:
    if value is not None and not value >= 0:  # also refuses nan
        raise OptionError(option, f"must be >= 0, got {value}")


def check_values(options: Mapping[str, Any]) -> None:
    """Ranges of the fit options that were given (Python keyword -> value)."""
    for name in POSITIVE_INT:
        positive(flag(name), options.get(name))
    for name in NON_NEGATIVE:
        non_negative(flag(name), options.get(name))
    positive("--lr", options.get("lr"))
    positive("--half-life", options.get("half_life"))
    if options.get("dropout") is not None and not 0.0 <= options["dropout"] < 1.0:
        raise OptionError("--dropout", f"must be in [0, 1), got {options['dropout']}")
    if options.get("seed") is not None and options["seed"] < 0:
        raise OptionError("--seed", f"must be >= 0, got {options['seed']}")
    if options.get("optimizer") is not None and options["optimizer"] not in OPTIMIZERS:
        raise OptionError("--optimizer", f"must be one of {', '.join(OPTIMIZERS)}, got {options['optimizer']!r}")
    if options.get("device") is not None:
        check_device(options["device"])


def check_device(device: str) -> None:
    """cpu, auto, mps, cuda or cuda:N; a GPU that is not there is refused with a clear message."""
    if not _DEVICE.match(device):
        raise OptionError("--device", f"must be cpu, cuda, cuda:N, mps or auto, got {device!r}")
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise OptionError("--device", f"{device!r} asked for, but no CUDA GPU is available to this PyTorch "
                                          "(torch.cuda.is_available() is False); use --device cpu or auto")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise OptionError("--device", f"{device!r}: this machine has {torch.cuda.device_count()} CUDA "
                                          f"device(s), numbered from 0")
    if device == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise OptionError("--device", "'mps' asked for, but Apple's MPS backend is not available here")


def check_model_takes(model: str, options: Mapping[str, Any], registry: Mapping[str, type]) -> None:
    """Refuse an unknown --model, and options the model does not take (named as CLI flags)."""
    if model not in registry:
        raise OptionError("--model", f"unknown model {model!r}; choose one of {', '.join(sorted(registry))}")
    accepted = set(inspect.signature(registry[model].__init__).parameters) - {"self"}
    unknown = [name for name in options if name not in accepted]
    if unknown:
        takes = sorted(flag(n) for n in accepted if n in FLAGS)
        raise OptionError(flag(unknown[0]), f"--model {model} does not take {', '.join(flag(n) for n in unknown)}"
                                            f"; it takes {', '.join(takes) or 'none of the model options'}")


def check_model_values(model: str, options: Mapping[str, Any], registry: Mapping[str, type]) -> None:
    """Refuse a flag's value that the model's own declaration does not allow (type, choices, range)."""
    config = config_class(registry[model])
    declared = set(field_names(config))
    for name, value in options.items():
        if value is not None and name in declared:
            try:
                check_value(config, name, value, option=flag(name))
            except OptionError as err:
                raise OptionError(err.option, f"{err.message} (--model {model})") from None


def check_timestamps_for_half_life(timestamp: Any, path: object) -> None:
    """--half-life orders each user's items in time: it needs timestamps that are not all equal."""
    if timestamp is None:
        raise OptionError("--half-life", f"needs timestamps, and {path} has none (set the column with --time-col)")
    if timestamp.numel() and bool((timestamp == timestamp[0]).all()):
        raise OptionError("--half-life", f"needs timestamps that differ, and every timestamp in {path} is the same")
