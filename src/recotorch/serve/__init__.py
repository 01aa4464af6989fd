"""Serving: the `Recommender` runtime, a FastAPI app with a web page, a durable feedback log, ANN retrieval.

>>> from recotorch.serve import create_app
>>> app = create_app("runs/quickstart/model-mf", store_url="sqlite:///feedback.db")  # uvicorn.run(app)

The HTTP parts need the `serve` extra (fastapi, uvicorn, faiss-cpu); importing this package does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recotorch.serve.store import export_feedback, open_store, read_feedback

if TYPE_CHECKING:
    from recotorch.serve.recommender import Recommender

__all__ = ["Recommender", "build_index", "create_app", "export_feedback", "open_store", "read_feedback"]


def __getattr__(name: str) -> Any:  # lazy: fastapi and faiss load only when used
    if name == "create_app":
        from recotorch.serve.app import create_app

        return create_app
    if name == "Recommender":
        from recotorch.serve.recommender import Recommender

        return Recommender
    if name == "build_index":
        from recotorch.serve.index import build_index

        return build_index
    raise AttributeError(name)
