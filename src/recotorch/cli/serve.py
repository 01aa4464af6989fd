"""`recotorch serve MODEL_DIR`: the HTTP API and web page over a saved model."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated

import typer

from recotorch.cli.common import console, user_errors
from recotorch.errors import CorruptModelError, OptionError
from recotorch.outputs import is_model_dir


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
    log_level: Annotated[str, typer.Option(help="uvicorn log level (its own messages; see --access-log for "
                                           "requests).")] = "warning",
    access_log: Annotated[str, typer.Option(
        help="HTTP access log, one line per request: 'off', 'on' (on standard output) or a file to append "
             "them to.")] = "off",
    admin_token: Annotated[str | None, typer.Option(
        envvar="RECOTORCH_ADMIN_TOKEN", show_envvar=True,
        help="Token that admin routes (POST /admin/reload) require as 'Authorization: Bearer <token>'. "
             "Prefer the environment variable: a command line is visible to other users.")] = None,
    no_admin_auth: Annotated[bool, typer.Option(
        "--no-admin-auth", help="Let anyone who can reach the server call admin routes (without a token, "
                                "admin routes are otherwise refused).")] = False,
    allowed_hosts: Annotated[str | None, typer.Option(
        help="Comma-separated Host names to answer, e.g. 'recs.example.com,*.internal' (others get 400).")] = None,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body accepted; larger ones get 413.")]
        = 1_000_000,
    feedback_range: Annotated[str | None, typer.Option(
        help="LOW,HIGH: feedback values accepted by POST /feedback (default: the model's rating range, "
             "or -10,10 for models without one).")] = None,
    store_timeout: Annotated[float, typer.Option(
        help="Seconds a feedback write may wait for the database (locked, down) before answering 503.")] = 5.0,
) -> None:
    """Serve recommendations over HTTP, with a web page at / and OpenAPI docs at /docs.

    Admin routes need --admin-token (or RECOTORCH_ADMIN_TOKEN) unless --no-admin-auth.
    `kill -HUP <pid>` reloads the model directory in place.
    """
    import torch
    import uvicorn

    from recotorch.serve.app import create_app

    torch.set_num_threads(max(1, threads))
    if store is None:
        store = f"sqlite:///{(model_dir.resolve().parent / 'feedback.db')}"
    with user_errors():
        if not is_model_dir(model_dir):
            raise CorruptModelError(model_dir, "is not a recotorch model directory (no CURRENT or model.json)")
        if no_admin_auth and admin_token:
            raise OptionError("--no-admin-auth", "conflicts with --admin-token / RECOTORCH_ADMIN_TOKEN")
        if store_timeout <= 0:
            raise OptionError("--store-timeout", f"must be positive, got {store_timeout:g}")
        hosts = _hosts(allowed_hosts)
        log_config = _log_config(log_level, access_log, model_dir)
        app = create_app(model_dir, store_url=None if store.lower() == "none" else store, models_root=models_root,
                         admin_token=admin_token or None, admin_auth=not no_admin_auth, allowed_hosts=hosts,
                         max_body_bytes=max_body_bytes, feedback_range=_range(feedback_range),
                         store_timeout=store_timeout, ann_threshold=ann_threshold, target_recall=target_recall,
                         save_index=save_index)
    if no_admin_auth:
        console.print("warning: --no-admin-auth: anyone who can reach this server can call /admin/reload",
                      style="bold yellow", highlight=False)
    _limit_faiss_threads(threads)  # after the index is built: k-means may use every core
    shown = re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", store)  # never print a database password
    console.print(f"serving {model_dir} on http://{host}:{port} (docs at /docs, feedback -> {shown})", highlight=False)
    # no proxy-header rewriting (we bind loopback by default) and no Server header: less work per request
    uvicorn.run(app, host=host, port=port, log_config=log_config, access_log=access_log != "off",
                proxy_headers=False, server_header=False)


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _log_config(level: str, access: str, model_dir: Path) -> dict:
    """uvicorn's logging set-up: its own messages at `level`, request lines per --access-log."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    if level.lower() not in LOG_LEVELS:
        raise OptionError("--log-level", f"must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["uvicorn"]["level"] = config["loggers"]["uvicorn.error"]["level"] = \
        "DEBUG" if level.lower() == "trace" else level.upper()
    config["loggers"]["uvicorn.access"]["level"] = "INFO"
    if access.lower() in ("off", "on"):
        return config
    path = Path(access)
    if path.is_dir():
        raise OptionError("--access-log", f"{path} is a folder; give 'off', 'on' or a file to append to")
    if model_dir.exists() and model_dir.resolve() in path.resolve().parents:
        raise OptionError("--access-log", f"{path} lies inside the model directory {model_dir}; write it elsewhere")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise OptionError("--access-log", f"{path}: the folder {parent} does not exist")
    config["formatters"]["access"]["use_colors"] = False
    config["handlers"]["access"] = {"formatter": "access", "class": "logging.FileHandler",
                                    "filename": str(path), "mode": "a", "encoding": "utf-8"}
    return config


def _range(text: str | None) -> tuple[float, float] | None:
    """'-10,10' -> (-10.0, 10.0); OptionError for anything else."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        lo = hi = None
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise OptionError("--feedback-range", f"expected LOW,HIGH with finite LOW < HIGH, got {text!r}")
    return lo, hi


def _hosts(text: str | None) -> list[str] | None:
    if text is None:
        return None
    hosts = [h.strip() for h in text.split(",") if h.strip()]
    if not hosts:
        raise OptionError("--allowed-hosts", "give at least one host name")
    return hosts


def _limit_faiss_threads(threads: int) -> None:
    try:
        import faiss
    except ImportError:
        return
    faiss.omp_set_num_threads(max(1, threads))
