"""The OpenAPI 3.0 document of the OGC API and the downloads (served at /ogc/api).

Each collection gets its own paths (as in the standard's "example 2"), so a client can see
exactly which property filters each takes; /req/core/query-param-unknown makes any parameter
not listed here a 400. Every status the server answers with is listed (/req/oas30/completeness).
"""

from typing import Any

from geo.ogc.params import DEFAULT_LIMIT, ENUMERATIONS, GEOJSON, HTML, JSON, MAX_LIMIT, OPENAPI_JSON
from geo.query import FILTER_HELP
from geo.store.schemas import LayerSchema
from geo.vocab import read_actors


def openapi_document(
    manifest: dict[str, Any], schemas: dict[str, LayerSchema], server: str, title: str
) -> dict[str, Any]:
    """The API definition; `server` is the absolute URL of the landing page (…/ogc)."""
    root = server.rsplit("/ogc", 1)[0] or "/"
    paths: dict[str, Any] = {
        "/": _get("Capabilities", "landing page", "landingPage", [_ref("f")]),
        "/conformance": _get("Capabilities", "conformance classes", "confClasses", [_ref("f")]),
        "/api": _get("Capabilities", "this API definition", None, [_ref("f")], OPENAPI_JSON),
        "/collections": _get("Capabilities", "the collections", "collections", [_ref("f")]),
    }
    for name, schema in schemas.items():
        base = f"/collections/{name}"
        paths[base] = _get("Capabilities", f"the {name} collection", "collection", [_ref("f")])
        items_params = [_ref(p) for p in ("f", "bbox", "datetime", "limit", "offset")]
        items_params += [_filter_param(schema, key) for key in _filters(schema)]
        paths[f"{base}/items"] = _get(
            "Data", f"features of {name}", "featureCollectionGeoJSON", items_params, GEOJSON
        )
        paths[f"{base}/items/{{featureId}}"] = _get(
            "Data", f"one feature of {name}", "featureGeoJSON", [_ref("featureId"), _ref("f")],
            GEOJSON,
        )  # fmt: skip
    for path, operation in _downloads(schemas).items():
        paths[path] = {**operation, "servers": [{"url": root}]}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": title,
            "version": manifest.get("packages", {}).get("kpmap", "0"),
            "description": "OGC API – Features (Core, GeoJSON, HTML, OpenAPI 3.0) and downloads "
            "of kpmap's layers. Errors are JSON: {status, code, description}.",
            "license": {"name": "data: see each collection's sources and licences"},
        },
        "servers": [{"url": server}],
        "tags": [{"name": "Capabilities"}, {"name": "Data"}, {"name": "Downloads"}],
        "paths": paths,
        "components": {"parameters": _parameters(schemas), "schemas": _schemas()},
    }


def _filters(schema: LayerSchema) -> list[str]:
    return [*schema.filterable, *schema.range_filters]


def _filter_param(schema: LayerSchema, key: str) -> dict[str, Any]:
    if key in schema.range_filters:
        prop, _ = schema.range_filters[key]
        return {
            "name": key,
            "in": "query",
            "required": False,
            "description": f"only features whose {prop} is <= this number",
            "schema": {"type": "number", "minimum": 0},
        }
    item: dict[str, Any] = {"type": "string"}
    if key in ENUMERATIONS:
        item["enum"] = list(ENUMERATIONS[key])
    if key == "actor":
        item["enum"] = list(read_actors())
    description = FILTER_HELP.get(
        key, f"features whose {key} is any of these (comma-separated; case is ignored)"
    )
    return {
        "name": key,
        "in": "query",
        "required": False,
        "style": "form",
        "explode": False,
        "description": description,
        "schema": {"type": "array", "items": item},
    }


def _get(
    tag: str, summary: str, schema: str | None, parameters: list, media: str = JSON
) -> dict[str, Any]:
    content: dict[str, Any] = {media: {"schema": _schema_ref(schema) if schema else {}}}
    content[HTML] = {"schema": {"type": "string"}}
    responses = {
        "200": {"description": summary, "content": content},
        "304": {"description": "not modified since the ETag in If-None-Match"},
        "400": _error("a parameter is unknown or has a value that is not allowed"),
        "404": _error("no such collection or feature"),
        "500": _error("a server error"),
    }
    return {
        "get": {"tags": [tag], "summary": summary, "parameters": parameters, "responses": responses}
    }


def _downloads(schemas: dict[str, LayerSchema]) -> dict[str, Any]:
    filters = [_ref(p) for p in ("bbox", "from", "to")]
    filters += [
        _ref(p) for p in ("actorFilter", "categoryFilter", "eventTypeFilter", "districtFilter")
    ]
    filters += [_ref("maxBorderKm")]
    layer = {
        "name": "layer",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": list(schemas)},
    }

    def download(summary: str, media: str, params: list) -> dict[str, Any]:
        operation = _get("Downloads", summary, None, params, media)["get"]
        operation["responses"]["200"]["content"] = {media: {"schema": {}}}
        return {"get": operation}

    return {
        "/download/{layer}.geojson": download(
            "a layer as an RFC 7946 FeatureCollection with a metadata member", GEOJSON,
            [layer, *filters],
        ),
        "/download/attacks.csv": download(
            "the attacks as CSV, one row per attack", "text/csv", filters
        ),
        "/download/kpmap.gpkg": download(
            "every layer in one GeoPackage", "application/geopackage+sqlite3", filters
        ),
    }  # fmt: skip


def _parameters(schemas: dict[str, LayerSchema]) -> dict[str, Any]:
    def query(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "description": description,
            "schema": schema,
            **extra,
        }

    listing = {"type": "array", "items": {"type": "string"}}
    return {
        "f": query(
            "f",
            "the encoding (else chosen by the Accept header)",
            {"enum": ["json", "html"], "type": "string"},
        ),
        "bbox": query(
            "bbox",
            "minx,miny,maxx,maxy in WGS 84 longitude/latitude (or 6 numbers with heights)",
            {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
            style="form",
            explode=False,
        ),
        "datetime": query(
            "datetime",
            "an RFC 3339 date-time or date, or an interval start/end with '..' for an open end",
            {"type": "string"},
        ),
        "limit": query(
            "limit",
            "how many features at most",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        ),
        "offset": query(
            "offset", "how many features to skip", {"type": "integer", "minimum": 0, "default": 0}
        ),
        "featureId": {
            "name": "featureId",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
        },
        "from": query("from", FILTER_HELP["from"], {"type": "string"}),
        "to": query("to", FILTER_HELP["to"], {"type": "string"}),
        "actorFilter": query("actor", FILTER_HELP["actor"], listing, explode=False),
        "categoryFilter": query("category", FILTER_HELP["category"], listing, explode=False),
        "eventTypeFilter": query("event_type", FILTER_HELP["event_type"], listing, explode=False),
        "districtFilter": query("district", FILTER_HELP["district"], listing, explode=False),
        "maxBorderKm": query(
            "max_border_km", FILTER_HELP["max_border_km"], {"type": "number", "minimum": 0}
        ),
    }


def _schemas() -> dict[str, Any]:
    link = {
        "type": "object",
        "required": ["href", "rel", "type"],
        "properties": {k: {"type": "string"} for k in ("href", "rel", "type", "title")},
    }
    links = {"type": "array", "items": {"$ref": "#/components/schemas/link"}}
    feature = {
        "type": "object",
        "required": ["type", "geometry", "properties"],
        "properties": {
            "type": {"type": "string", "enum": ["Feature"]},
            "id": {"type": "string"},
            "geometry": {"type": "object", "nullable": True},
            "properties": {"type": "object", "nullable": True},
            "links": links,
        },
    }
    return {
        "link": link,
        "exception": {
            "type": "object",
            "required": ["status", "code", "description"],
            "properties": {
                "status": {"type": "integer"},
                "code": {"type": "string"},
                "description": {"type": "string"},
            },
        },
        "landingPage": {
            "type": "object",
            "required": ["links"],
            "properties": {
                "title": {"type": "string"},
                "description": {"type": "string"},
                "links": links,
            },
        },
        "confClasses": {
            "type": "object",
            "required": ["conformsTo"],
            "properties": {"conformsTo": {"type": "array", "items": {"type": "string"}}},
        },
        "collection": {
            "type": "object",
            "required": ["id", "links"],
            "properties": {
                "id": {"type": "string"},
                "title": {"type": "string"},
                "description": {"type": "string"},
                "links": links,
                "extent": {"type": "object"},
                "itemType": {"type": "string"},
                "crs": {"type": "array", "items": {"type": "string"}},
            },
        },
        "collections": {
            "type": "object",
            "required": ["links", "collections"],
            "properties": {
                "links": links,
                "collections": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/collection"},
                },
            },
        },
        "featureGeoJSON": feature,
        "featureCollectionGeoJSON": {
            "type": "object",
            "required": ["type", "features"],
            "properties": {
                "type": {"type": "string", "enum": ["FeatureCollection"]},
                "features": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/featureGeoJSON"},
                },
                "links": links,
                "timeStamp": {"type": "string", "format": "date-time"},
                "numberMatched": {"type": "integer", "minimum": 0},
                "numberReturned": {"type": "integer", "minimum": 0},
            },
        },
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def _schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _schema_ref("exception")}}}
