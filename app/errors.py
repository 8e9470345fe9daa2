"""One place that maps errors to HTTP answers: JSON for the data API and tiles, HTML for pages.

A user's mistake gets its 4xx with a message saying what was wrong and what is allowed; anything
unexpected is logged and answered with a plain 500 that shows no stack trace.
"""

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from geo.errors import KpmapError, RenderBusy

# Paths whose clients are programs, not people: errors there are JSON.
JSON_PREFIXES = ("/ogc", "/download", "/tiles", "/api")


def wants_json() -> bool:
    if request.path.startswith(JSON_PREFIXES):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_response(status: int, code: str, message: str) -> Response:
    """The answer to an error: JSON for programs, the error page (templates/error.html) for
    people."""
    if wants_json():
        response = jsonify({"status": status, "code": code, "description": message})
    else:
        title = _title(status)
        response = Response(
            render_template("error.html", status=status, title=title, message=message),
            mimetype="text/html",
        )
    response.status_code = status
    return response


def _title(status: int) -> str:
    return HTTP_STATUS_CODES.get(status, "Error")


def register(app: Flask) -> None:
    @app.errorhandler(KpmapError)
    def domain_error(exc: KpmapError):
        if isinstance(exc, RenderBusy):  # [live-store hook 6] busy, not broken: say when to retry
            response = error_response(exc.status, exc.code, str(exc))
            response.headers["Retry-After"] = str(exc.retry_after)
            return response
        if exc.status >= 500:
            app.logger.exception("kpmap error")
        return error_response(exc.status, exc.code, str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "-")
        response = error_response(exc.code or 500, code, exc.description or exc.name)
        # What the exception says in its headers stays said: Allow on a 405, Content-Range on
        # a 416, Retry-After on a 503.
        for key, value in exc.get_headers():
            if key.lower() != "content-type":
                response.headers[key] = value
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        app.logger.exception("unexpected error")
        return error_response(500, "internal-error", "Something went wrong on our side.")
