"""Training without importing `torch._dynamo` when nothing is being compiled.

`torch.optim.Optimizer` wraps `add_param_group`, `zero_grad`, `state_dict` and `load_state_dict`
in `torch._disable_dynamo`, which imports `torch._dynamo` (and sympy) on the first call: about
0.8 s of CPU, more than a whole MF fit of ml-100k with the row-wise optimiser. While
`torch._dynamo` has not been imported nothing can be compiling, so calling those methods
directly does what the wrapper would; once it has been imported, the wrapper's own path is taken.
`deferred()` arranges that for the length of a block (the training loop) and puts torch's
behaviour back afterwards. (AdamW's `step` imports `torch._dynamo` itself; that stays.)
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

_METHODS = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")
_ATTR = "__dynamo_disable"  # where torch._compile._disable_dynamo caches its wrapper on the function
_lock = threading.Lock()
_depth = 0


def _functions() -> list[Callable[..., Any]]:
    """The plain functions behind Optimizer's dynamo-disabled methods (none if torch changed how)."""
    import torch

    found = []
    for name in _METHODS:
        raw = getattr(getattr(torch.optim.Optimizer, name, None), "__wrapped__", None)
        if callable(raw):
            found.append(raw)
    return found


def _direct(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        if "torch._dynamo" not in sys.modules:
            return fn(*args, **kwargs)
        import torch._dynamo

        return torch._dynamo.disable(fn, True, wrapping=False)(*args, **kwargs)

    call.recotorch_direct = True  # type: ignore[attr-defined]
    return call


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within the block, the optimiser methods above do not import `torch._dynamo` (re-entrant)."""
    global _depth
    with _lock:
        _depth += 1
        if _depth == 1:
            for fn in _functions():
                if getattr(fn, _ATTR, None) is None:
                    setattr(fn, _ATTR, _direct(fn))
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for fn in _functions():
                    if getattr(getattr(fn, _ATTR, None), "recotorch_direct", False):
                        delattr(fn, _ATTR)
