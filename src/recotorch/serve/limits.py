"""What a request may be, checked before routing: a bounded body (413) and a URL of valid UTF-8 (422).

The body limit is pure ASGI middleware: 413 at once, nothing buffered, nothing stalled.

A declared `Content-Length` above the limit is answered 413 before a byte of the body is read,
so a client sending 10 MB costs the server no parsing and no memory, and the event loop stays
free for other requests. Bodies without a length (chunked) are counted as they stream in: once
they pass the limit the request ends with 413 (the route never sees the body). Either way the
answer carries `Connection: close`, so the unread rest of the body is never parsed as a request.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import HTTPException

DEFAULT_MAX_BODY_BYTES = 1_000_000


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit; FastAPI and Starlette answer 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes", headers={"Connection": "close"})


class BodyLimitMiddleware:
    """Refuse HTTP request bodies larger than `max_bytes` with 413."""

    def __init__(self, app: Any, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _refuse(send, self.max_bytes)
            return
        seen = 0
        started = False

        async def counted_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:  # read outside a route's error handling (e.g. by another middleware)
            if not started:
                await _refuse(send, self.max_bytes)


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server itself refuses a malformed length
    return None


async def _refuse(send: Any, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class Utf8UrlMiddleware:
    """422 for a path or query string whose percent-decoded bytes are not UTF-8 (e.g. an encoded surrogate).

    Starlette would decode such bytes to U+FFFD and the route would look up a different id;
    refusing them keeps "ids with lone surrogates are 422" true for URLs as for JSON bodies.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raw_path = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
            query = scope.get("query_string", b"").replace(b"+", b" ")
            try:
                unquote_to_bytes(raw_path).decode("utf-8")
                unquote_to_bytes(query).decode("utf-8")
            except UnicodeDecodeError:
                body = json.dumps({"detail": [{"loc": ["path" if _bad(raw_path) else "query"],
                                               "msg": "the URL must be valid UTF-8 (no encoded surrogates)",
                                               "type": "value_error"}]}).encode()
                await send({"type": "http.response.start", "status": 422,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _bad(raw: bytes) -> bool:
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
