"""`recotorch serve MODEL_DIR`: the HTTP API and web page over a saved model."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

import typer

from recotorch.cli.common import console, user_errors


def serve(
    model_dir: Annotated[Path, typer.Argument(help="A model directory written by `recotorch fit` / `quickstart`.")],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    store: Annotated[str | None, typer.Option(
        help="Feedback store: sqlite:///path/feedback.db (default: feedback.db beside the model) or "
             "postgresql://user@host/db; 'none' to disable POST /feedback.")] = None,
    models_root: Annotated[Path | None, typer.Option(
        help="Directory whose model sub-directories POST /admin/reload may load by name.")] = None,
    ann_threshold: Annotated[int, typer.Option(
        help="Catalogues with at least this many items retrieve through a FAISS index.")] = 100_000,
    target_recall: Annotated[float, typer.Option(help="Recall@10 vs exact scoring the index is tuned to.")] = 0.97,
    save_index: Annotated[bool, typer.Option(help="Store a freshly built index in the model directory.")] = True,
    threads: Annotated[int, typer.Option(help="Torch threads for scoring (1 keeps latency steady).")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve recommendations over HTTP, with a web page at / and OpenAPI docs at /docs.

    The admin token for POST /admin/reload, when wanted, comes from RECOTORCH_ADMIN_TOKEN.
    `kill -HUP <pid>` reloads the model directory in place.
    """
    import torch
    import uvicorn

    from recotorch.serve.app import create_app

    torch.set_num_threads(max(1, threads))
    if store is None:
        store = f"sqlite:///{(model_dir.resolve().parent / 'feedback.db')}"
    with user_errors():
        if not (model_dir / "model.json").is_file():
            raise FileNotFoundError(f"{model_dir} is not a recotorch model directory (no model.json)")
        app = create_app(model_dir, store_url=None if store.lower() == "none" else store, models_root=models_root,
                         admin_token=os.environ.get("RECOTORCH_ADMIN_TOKEN") or None, ann_threshold=ann_threshold,
                         target_recall=target_recall, save_index=save_index)
    _limit_faiss_threads(threads)  # after the index is built: k-means may use every core
    shown = re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", store)  # never print a database password
    console.print(f"serving {model_dir} on http://{host}:{port} (docs at /docs, feedback -> {shown})", highlight=False)
    # no proxy-header rewriting (we bind loopback by default) and no Server header: less work per request
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, proxy_headers=False,
                server_header=False)


def _limit_faiss_threads(threads: int) -> None:
    try:
        import faiss
    except ImportError:
        return
    faiss.omp_set_num_threads(max(1, threads))
