"""The lowest layer: top-k with its one tie rule, devices and seeding, the thread policy, and the shared
maths of models.

Nothing here imports another recotorch package (except `recotorch.errors`), so every layer may use it.
The names below load their module on first use, so that importing one light module of `core`
(`core.threads`, before torch is imported) does not import torch.
"""

from __future__ import annotations

from recotorch.core.lazy import lazy_attributes

_HOMES = {
    "resolve_device": "device", "seeded": "device", "tensor_device": "device",
    "LOGIT_EPS": "maths", "als_solve": "maths", "auto_range_data_scale": "maths", "auto_rating_range": "maths",
    "logit_targets": "maths", "pad_rows": "maths", "ridge_fold_in": "maths", "ridge_solve": "maths",
    "squash": "maths",
    "RetrievalVectors": "retrieval",
    "largest": "topk", "top_k": "topk",
}

__all__ = sorted(_HOMES)


__getattr__ = lazy_attributes(__name__, _HOMES)
