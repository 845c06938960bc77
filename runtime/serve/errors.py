"""Every HTTP error as JSON `{"detail": ...}` (the shape FastAPI and the web page use), never a traceback,
never more than a short excerpt of the request; and the request fields checked by the shared limits.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, Field, ValidationError
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException

from runtime.music.formats import ConverterMissing
from runtime.search.errors import IndexDirError
from runtime.search.index import UnknownItemError
from runtime.search.limits import Limit, excerpt, require_text

log = logging.getLogger("clamp.serve")
MESSAGE_CHARS = 2000  # the most of any error message sent back (messages may quote the request)
# What each kind of error a user can act on answers (the most specific class wins).
STATUS_OF: dict[type[Exception], int] = {
    ValueError: 400,  # a bad query: filter, tune index, labels, score
    UnknownItemError: 404,
    IndexDirError: 503,  # a damaged index: the operator must rebuild it
    FileNotFoundError: 503,  # no model to encode queries with
    ConverterMissing: 503,  # no MusicXML/MIDI converters installed
}


def limited(limit: Limit, number: type = int) -> Any:
    """A request field type checked by `limit`, refused in the CLI's words (runtime.cli.InRange)."""

    def check(value: Any) -> Any:
        try:
            return limit.check(value)
        except ValueError as err:
            raise PydanticCustomError("out_of_range", "{message}", {"message": str(err)}) from None

    bounds = (("exclusiveMinimum" if limit.low_exclusive else "minimum", limit.low), ("maximum", limit.high))
    schema = {key: value for key, value in bounds if value is not None}
    return Annotated[number, Field(json_schema_extra=schema), AfterValidator(check)]


def _text(value: str) -> str:
    try:
        return require_text(value)
    except ValueError as err:
        raise PydanticCustomError("empty_text", "{message}", {"message": str(err)}) from None


QueryText = Annotated[str, AfterValidator(_text)]


def validation_details(err: ValidationError | RequestValidationError) -> list[dict[str, Any]]:
    """Pydantic's error list, each offending input cut to an excerpt (a 2 MB text is not sent back)."""
    details = []
    for error in err.errors(include_url=False) if isinstance(err, ValidationError) else err.errors():
        error = {key: value for key, value in error.items() if key not in ("url", "ctx")}
        if "input" in error:
            error["input"] = _bounded(error["input"])
        details.append(error)
    return details


def _bounded(value: Any) -> Any:
    """A JSON-ready excerpt of an input: strings cut, containers summarised, numbers and None as they are."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str | bytes):
        return excerpt(value if isinstance(value, str) else value.decode("utf-8", "replace"))
    return excerpt(repr(value))


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": excerpt(message, MESSAGE_CHARS)}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to a status and a JSON message a user can act on (a damaged index is logged too)."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_details(err)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        if isinstance(err.detail, str):
            return error_response(err.status_code, err.detail, err.headers)
        return JSONResponse({"detail": err.detail}, status_code=err.status_code, headers=err.headers)

    async def known(request: Request, err: Exception) -> JSONResponse:
        status = next(STATUS_OF[kind] for kind in type(err).__mro__ if kind in STATUS_OF)
        if isinstance(err, IndexDirError):
            log.error("%s %s: %s", request.method, request.url.path, err)
        return error_response(status, str(err.args[0]) if isinstance(err, KeyError) else str(err))

    for kind in STATUS_OF:
        app.add_exception_handler(kind, known)

    @app.exception_handler(Exception)
    async def internal(request: Request, err: Exception) -> JSONResponse:
        """A bug: the user gets a JSON 500; the server re-raises it for its log (without the request body).

        The server then drops the connection: `Connection: close` tells the client not to reuse it.
        """
        message = f"internal server error ({type(err).__name__}); the server's log has the details"
        return error_response(500, message, {"Connection": "close"})
