"""Security headers on every answer. Views may loosen them for their own needs (the embed page
allows other sites to frame it; data endpoints allow any origin to read them)."""

from flask import Flask, Response

# Scripts, styles, fonts and images only from the app itself. Folium writes its map set-up as an
# inline <script>, so scripts also allow 'unsafe-inline'; no other host is ever allowed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' "
    "blob:; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
)


def register(app: Flask) -> None:
    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        return response
