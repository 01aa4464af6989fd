"""API docs that work offline: Swagger UI at /docs and ReDoc at /redoc, their assets served by us.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, which makes /docs a blank page on a
machine without internet access. The `fastapi-offline` package (part of the `serve` extra)
ships the JavaScript and CSS of both; we only use its files, mounted under /docs-assets.
Without that package the two pages say how to get it, and /openapi.json still works.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def assets_dir() -> Path | None:
    """The folder holding Swagger UI's and ReDoc's files, or None when `fastapi-offline` is not installed."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "static"
    return folder if all((folder / name).is_file() for name in ASSET_FILES) else None


def add_docs(app: FastAPI) -> None:
    """Routes /docs, /docs/oauth2-redirect and /redoc; the app must be built with docs_url=redoc_url=None."""
    folder = assets_dir()
    openapi_url = app.openapi_url or "/openapi.json"
    if folder is not None:
        app.mount(ASSETS_URL, StaticFiles(directory=folder), name="docs-assets")

    def missing() -> HTMLResponse:
        return HTMLResponse(f"<!doctype html><title>{app.title} API</title><p>The interactive docs need the "
                            "<code>fastapi-offline</code> package (<code>pip install 'recotorch[serve]'</code>). "
                            f'The schema is at <a href="{openapi_url}">{openapi_url}</a>.</p>', status_code=200)

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        if folder is None:
            return missing()
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} - Swagger UI", oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None})  # no badge fetched from the online validator

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        if folder is None:
            return missing()
        return get_redoc_html(openapi_url=openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False)
