"""The lowest layer: top-k with its one tie rule, devices and seeding, and the shared maths of models.

Nothing here imports another recotorch package (except `recotorch.errors`), so every layer may use it.
"""

from recotorch.core.device import resolve_device, seeded, tensor_device
from recotorch.core.maths import (
    LOGIT_EPS,
    als_solve,
    auto_range_data_scale,
    auto_rating_range,
    logit_targets,
    pad_rows,
    ridge_fold_in,
    ridge_solve,
    squash,
)
from recotorch.core.retrieval import RetrievalVectors
from recotorch.core.topk import largest, top_k

__all__ = [
    "LOGIT_EPS",
    "RetrievalVectors",
    "als_solve",
    "auto_range_data_scale",
    "auto_rating_range",
    "largest",
    "logit_targets",
    "pad_rows",
    "resolve_device",
    "ridge_fold_in",
    "ridge_solve",
    "seeded",
    "squash",
    "tensor_device",
    "top_k",
]
