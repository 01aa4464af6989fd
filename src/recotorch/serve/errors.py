"""The one place where exceptions become HTTP statuses.

`recotorch.errors` types are the user's (or the client's) mistakes and map to one 4xx (or 501 /
503) each; nothing else becomes a 4xx. Any other exception is a bug: 500 with a fixed body, and
the traceback goes to the log, never to the client. Validation errors (422) name where and what,
never echo the input back, and are bounded in size whatever was sent.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from recotorch.errors import (
    CorruptModelError,
    InputFileError,
    OptionError,
    ServiceUnavailableError,
    UnknownIdError,
    UnsupportedError,
)

log = logging.getLogger("recotorch.serve")

# Most specific first: a CorruptModelError is also a ValueError, but not an OptionError.
STATUS: tuple[tuple[type[Exception], int], ...] = (
    (UnknownIdError, 404),
    (CorruptModelError, 422),
    (OptionError, 422),
    (InputFileError, 422),
    (UnsupportedError, 501),
    (ServiceUnavailableError, 503),
)
MAX_ERRORS = 20  # a body with 10,000 bad ids still gets a short answer
MAX_TEXT = 200
MAX_LOC = 8
MAX_LOC_TEXT = 40
MAX_DETAIL = 2000  # an unknown genre lists the known ones


def status_of(exc: BaseException) -> int:
    """The HTTP status for `exc`: its `recotorch.errors` type's, else 500."""
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def _short(text: Any) -> str:
    text = str(text)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def _loc_part(part: Any) -> str | int:
    # a location may hold a key the client sent (an extra field's name): keep only its start
    text = str(part)
    return part if isinstance(part, int) else text if len(text) <= MAX_LOC_TEXT else text[:MAX_LOC_TEXT - 3] + "..."


def validation_detail(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Location, message and type of each error (at most MAX_ERRORS), without the input or its context."""
    detail = [{"loc": [_loc_part(p) for p in list(e.get("loc", ()))[:MAX_LOC]], "msg": _short(e.get("msg", "")),
               "type": _short(e.get("type", ""))[:64]} for e in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        detail.append({"loc": [], "msg": f"... and {len(errors) - MAX_ERRORS} more errors", "type": "truncated"})
    return detail


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping above, the 422 body without input, and the 500 for everything else."""

    async def recotorch_error(request: Request, exc: Exception) -> JSONResponse:
        status = status_of(exc)
        if status == 500:
            return await unexpected(request, exc)
        if status == 422:  # the documented shape of every 422: a list of {loc, msg, type}
            loc = [exc.option] if isinstance(exc, OptionError) else []
            return JSONResponse({"detail": [{"loc": loc, "msg": str(exc)[:MAX_DETAIL], "type": "value_error"}]},
                                status_code=422)
        return JSONResponse({"detail": str(exc)[:MAX_DETAIL]}, status_code=status)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": validation_detail(list(exc.errors()))}, status_code=422)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal server error (a bug: see the server log)"}, status_code=500)

    for kind, _ in STATUS:
        app.add_exception_handler(kind, recotorch_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, unexpected)
