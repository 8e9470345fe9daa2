"""OGC API – Features documents (landing page, conformance, collections, links), as plain dicts
that the web layer encodes as JSON or, with geo.ogc.html, as HTML. The parameter rules and
media types are in geo.ogc.params."""

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from geo.ogc.params import (
    CONFORMANCE,
    CRS84,
    GEOJSON,
    GREGORIAN,
    HTML,
    JSON,
    OPENAPI_JSON,
)


def link(href: str, rel: str, media_type: str, title: str) -> dict[str, str]:
    return {"href": href, "rel": rel, "type": media_type, "title": title}


def url(base: str, path: str = "", params: dict[str, Any] | list | None = None) -> str:
    query = urlencode(params or {}, doseq=True)
    return f"{base}{path}" + (f"?{query}" if query else "")


def self_links(href_json: str, href_html: str, fmt: str, json_type: str = JSON) -> list[dict]:
    """`self` for the encoding being sent and `alternate` for the other (/req/core/fc-links)."""
    as_json = link(href_json, "self" if fmt == "json" else "alternate", json_type, "as JSON")
    as_html = link(href_html, "self" if fmt == "html" else "alternate", HTML, "as HTML")
    return [as_json, as_html] if fmt == "json" else [as_html, as_json]


def landing_page(base: str, fmt: str, title: str, description: str) -> dict[str, Any]:
    """The landing page (/req/core/root-success): links to the API, conformance and data."""
    return {
        "title": title,
        "description": description,
        "links": [
            *self_links(url(base, "", {"f": "json"}), url(base, "", {"f": "html"}), fmt),
            link(url(base, "/api"), "service-desc", OPENAPI_JSON, "the API definition"),
            link(url(base, "/api", {"f": "html"}), "service-doc", HTML, "the API documentation"),
            link(url(base, "/conformance"), "conformance", JSON, "conformance classes"),
            link(url(base, "/collections"), "data", JSON, "the collections"),
        ],
    }


def conformance(base: str, fmt: str) -> dict[str, Any]:
    """The conformance classes this API implements (/req/core/conformance-success)."""
    path = "/conformance"
    return {
        "conformsTo": list(CONFORMANCE),
        "links": self_links(url(base, path, {"f": "json"}), url(base, path, {"f": "html"}), fmt),
    }


def collection(
    manifest: dict[str, Any],
    name: str,
    base: str,
    fmt: str,
    withheld: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One collection's metadata, as listed in /collections (/req/core/sfc-md-success).

    `withheld` is geo.licences' statement of the rows the licences keep out of the items; the
    description repeats it when any are.
    """
    entry = manifest["layers"][name]
    path = f"/collections/{name}"
    sources = entry.get("sources", [])
    attribution = "; ".join(f"{s['name']}: {s['licence']}" for s in sources)
    extent: dict[str, Any] = {}
    if entry.get("bounds"):
        extent["spatial"] = {"bbox": [list(entry["bounds"])], "crs": CRS84}
    if entry.get("time_range"):
        extent["temporal"] = {"interval": [list(entry["time_range"])], "trs": GREGORIAN}
    description = f"{entry.get('count', 0)} features. Sources and licences: {attribution}"
    if withheld and withheld.get("count"):
        description += f". {withheld['count']} of them are not served as items: "
        description += withheld["reason"]
    doc = {
        "id": name,
        "title": entry.get("title", name),
        "description": description,
        "itemType": "feature",
        "crs": [CRS84],
        "extent": extent,
        "attribution": attribution,
        "links": [
            *self_links(url(base, path, {"f": "json"}), url(base, path, {"f": "html"}), fmt),
            link(url(base, f"{path}/items", {"f": "json"}), "items", GEOJSON, "the features"),
            link(url(base, f"{path}/items", {"f": "html"}), "items", HTML, "the features"),
        ],
    }
    if withheld is not None:
        doc["withheld"] = withheld
    return doc


def collections(
    manifest: dict[str, Any],
    names: list[str],
    base: str,
    fmt: str,
    withheld: dict[str, dict[str, Any] | None] | None = None,
) -> dict:
    """All collections (/req/core/fc-md-items): one entry per layer of the store."""
    path = "/collections"
    withheld = withheld or {}
    return {
        "links": self_links(url(base, path, {"f": "json"}), url(base, path, {"f": "html"}), fmt),
        "collections": [
            collection(manifest, name, base, fmt, withheld.get(name)) for name in names
        ],
    }


def items_links(
    base: str,
    name: str,
    params: list[tuple[str, str]],
    fmt: str,
    offset: int,
    limit: int,
    matched: int,
) -> list[dict[str, str]]:
    """self, alternate, next and prev (when there are such pages) and collection links.

    `params` are the request's own query parameters; each link keeps them, changing only `f`
    and `offset`, so following `next` pages through the same selection.
    """
    path = f"/collections/{name}/items"
    kept = [(k, v) for k, v in params if k not in ("f", "offset")]

    def page(f: str, start: int) -> str:
        return url(base, path, [*kept, ("f", f)] + ([("offset", str(start))] if start else []))

    links = self_links(page("json", offset), page("html", offset), fmt, GEOJSON)
    media = GEOJSON if fmt == "json" else HTML
    if offset + limit < matched:
        links.append(link(page(fmt, offset + limit), "next", media, "next page"))
    if offset > 0:
        links.append(link(page(fmt, max(offset - limit, 0)), "prev", media, "previous page"))
    links.append(link(url(base, f"/collections/{name}"), "collection", JSON, "the collection"))
    return links


def feature_links(base: str, name: str, feature_id: str, fmt: str) -> list[dict[str, str]]:
    """self, alternate and collection links of one feature (/req/core/f-links)."""
    path = f"/collections/{name}/items/{quote(feature_id, safe='')}"
    return [
        *self_links(url(base, path, {"f": "json"}), url(base, path, {"f": "html"}), fmt, GEOJSON),
        link(url(base, f"/collections/{name}"), "collection", JSON, "the collection"),
    ]


def timestamp() -> str:
    """Now, as the RFC 3339 timeStamp of a response (/req/core/fc-timeStamp)."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
