"""OGC API – Features (/ogc/...): thin adapters over geo.ogc.items, which holds the logic.

Each view checks its request, names its representation (for the ETag: 304 before any work),
and hands the rest to the core. Links are absolute, from the PUBLIC_URL setting when it is
set, never from a Host header an attacker could choose for a cached answer.
"""

from collections.abc import Callable

from flask import Blueprint, Response, current_app, request

from app import http
from app.extensions import get_policy, get_store
from geo.ogc import items as core

bp = Blueprint("ogc", __name__)

# The resources pick HTML or JSON by Accept, and are compressed by Accept-Encoding.
VARY = "Accept, Accept-Encoding"


@bp.get("/ogc")
@bp.get("/ogc/")
def landing() -> Response:
    fmt = _format(("f",), "the landing page")
    return _answer(fmt, lambda: core.landing(base(), fmt))


@bp.get("/ogc/conformance")
def conformance() -> Response:
    fmt = _format(("f",), "the conformance classes")
    return _answer(fmt, lambda: core.conformance(base(), fmt))


@bp.get("/ogc/api")
def api_definition() -> Response:
    fmt = _format(("f",), "the API definition")
    return _answer(fmt, lambda: core.api_definition(get_store(), base(), fmt))


@bp.get("/ogc/collections")
def collections() -> Response:
    fmt = _format(("f",), "the collections")
    return _answer(fmt, lambda: core.collections(get_store(), get_policy(), base(), fmt))


@bp.get("/ogc/collections/<collection_id>")
def collection(collection_id: str) -> Response:
    name = core.layer_name(get_store(), collection_id)
    fmt = _format(("f",), f"the collection {name}")
    return _answer(fmt, lambda: core.collection(get_store(), get_policy(), name, base(), fmt))


@bp.get("/ogc/collections/<collection_id>/items")
def items(collection_id: str) -> Response:
    pairs = request.args.items(multi=True)
    query = core.items_query(get_store(), collection_id, pairs, _preferred())
    return _answer(query.fmt, lambda: core.items(get_store(), get_policy(), query, base()))


# `path`: a feature id may hold a "/" (the item links quote it as %2F, which arrives decoded).
@bp.get("/ogc/collections/<collection_id>/items/<path:feature_id>")
def item(collection_id: str, feature_id: str) -> Response:
    fmt = _format(("f",), "a feature")
    store, policy = get_store(), get_policy()
    return _answer(fmt, lambda: core.item(store, policy, collection_id, feature_id, base(), fmt))


def base() -> str:
    """The landing page's absolute URL: PUBLIC_URL's, else the host the request was sent to
    (after ProxyFix, when TRUSTED_PROXIES lets it read X-Forwarded-*)."""
    root = current_app.config.get("PUBLIC_URL") or request.host_url.rstrip("/")
    return root + "/ogc"


def _format(allowed: tuple[str, ...], what: str) -> str:
    return core.output_format(request.args.items(multi=True), _preferred(), allowed, what)


def _preferred() -> str | None:
    return request.accept_mimetypes.best_match(core.MEDIA_TYPES, default=core.MEDIA_TYPES[0])


def _answer(fmt: str, make: Callable[[], core.Answer]) -> Response:
    """304 when the client holds this representation, else the core's answer, with a weak
    ETag (a timeStamp may change the bytes, not the meaning: RFC 9110 8.8.1)."""
    tag = http.data_etag(fmt, base())  # the links' host, when it comes from the request
    if http.not_modified(tag):
        return http.not_modified_response(tag, weak=True, vary=VARY)
    answer = make()
    return http.respond(answer.body, answer.media_type, etag=tag, weak=True, vary=VARY)
