"""The OpenAPI 3.0 document of the OGC API and the downloads (served at /ogc/api).

Each collection, and each layer's download, gets its own paths (as in the standard's "example
2"), so a client can see exactly which filters each takes; /req/core/query-param-unknown makes
any parameter not listed here a 400 on the OGC paths. Every status the server answers with is
listed (/req/oas30/completeness).

The document says exactly what the server takes: a value it accepts fits the parameter's schema
and a value that fits is accepted (schemathesis checks both ways: `make hardening`). Parameter
schemas carry the patterns, ranges and enumerations of geo.query and geo.ogc.params; what JSON
Schema cannot say (a bbox's minimum not above its maximum, `from` not after `to`, an interval
that does not end before it starts) is in the descriptions.
"""

from typing import Any

from geo.districts import name_index
from geo.ogc.params import DEFAULT_LIMIT, ENUMERATIONS, GEOJSON, HTML, JSON, MAX_LIMIT, OPENAPI_JSON
from geo.query import FILTER_HELP, FILTER_PARAMS, MAX_LIST_ITEMS, MAX_VALUE_LENGTH, area_filters
from geo.store.schemas import LayerSchema
from geo.vocab import CATEGORIES, EVENT_TYPES, read_actors

# geo.dates.PERIOD (YYYY, YYYY-MM or YYYY-MM-DD) with only the dates that exist: years 0001-9999,
# months 01-12, each month's days, 29 February in leap years.
_YEAR = r"(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"
_LEAP = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = (
    r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
    r"|(?:0[13578]|1[02])-31)"
)
_DAY = rf"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP}-02-29)"
PERIOD_PATTERN = rf"(?:{_YEAR}(?:-(?:0[1-9]|1[0-2]))?|{_DAY})"
# geo.ogc.params.parse_datetime: an RFC 3339 date-time (any fraction of a second, an offset
# under 24 h), or a date of any precision; alone or as an interval start/end, either end open
# ("" or "..").
_TIME = r"[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
_OFFSET = r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_INSTANT = rf"(?:{_DAY}{_TIME}{_OFFSET}|{PERIOD_PATTERN})"
DATETIME_PATTERN = rf"^(?:{_INSTANT}|(?:{_INSTANT}|\.\.)?/(?:{_INSTANT}|\.\.)?)?$"
# Property filters reject control characters (below U+0020).
_NO_CONTROL = "^[^\\u0000-\\u001f]*$"


def openapi_document(
    manifest: dict[str, Any], schemas: dict[str, LayerSchema], server: str, title: str
) -> dict[str, Any]:
    """The API definition; `server` is the absolute URL of the landing page (…/ogc)."""
    root = server.rsplit("/ogc", 1)[0] or "/"
    paths: dict[str, Any] = {
        "/": _get("Capabilities", "landing page", "landingPage", [_ref("f")], "getLandingPage"),
        "/conformance": _get(
            "Capabilities", "conformance classes", "confClasses", [_ref("f")], "getConformance"
        ),
        "/api": _get(
            "Capabilities", "this API definition", None, [_ref("f")], "getAPI", OPENAPI_JSON
        ),
        "/collections": _get(
            "Capabilities", "the collections", "collections", [_ref("f")], "getCollections"
        ),
    }
    for name, schema in schemas.items():
        base = f"/collections/{name}"
        operation = _camel(name)
        paths[base] = _get(
            "Capabilities",
            f"the {name} collection",
            "collection",
            [_ref("f")],
            f"describe{operation}Collection",
        )
        items_params = [_ref(p) for p in ("f", "bbox", "datetime", "limit", "offset")]
        items_params += [_filter_param(schema, key) for key in _filters(schema)]
        items = _get(
            "Data",
            f"features of {name}",
            "featureCollectionGeoJSON",
            items_params,
            f"get{operation}Features",
            GEOJSON,
        )
        # For stateful testing (and readers): a listed feature's id opens it, and the numbers
        # returned page on.
        items["get"]["responses"]["200"]["links"] = {
            "feature": {
                "operationId": f"get{operation}Feature",
                "parameters": {"featureId": "$response.body#/features/0/id"},
                "description": "the first feature of the page, by its id",
            },
        }
        paths[f"{base}/items"] = items
        feature = _get(
            "Data",
            f"one feature of {name}",
            "featureGeoJSON",
            [_ref("featureId"), _ref("f")],
            f"get{operation}Feature",
            GEOJSON,
        )
        if name == "attacks":
            feature["get"]["responses"]["403"] = _error(
                "the attack's dataset does not let its rows be handed out (licence-restricted)"
            )
        paths[f"{base}/items/{{featureId}}"] = feature
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
        "components": {"parameters": _parameters(), "schemas": _schemas()},
    }  # fmt: skip


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _filters(schema: LayerSchema) -> list[str]:
    return [*schema.filterable, *schema.range_filters]


def _filter_param(schema: LayerSchema, key: str) -> dict[str, Any]:
    """An items filter: the map's filters as geo.query parses them, the other properties as
    lists of values (a closed set of values where geo.ogc.params.ENUMERATIONS has one)."""
    if key in schema.range_filters:
        prop, _ = schema.range_filters[key]
        return _query(
            key, f"only features whose {prop} is <= this number (empty: no filter)", _DISTANCE
        )
    if key in FILTER_PARAMS:
        return _query(key, _listed(key), _map_list(key), style="form", explode=False)
    item: dict[str, Any] = {"type": "string", "pattern": _NO_CONTROL}
    if key in ENUMERATIONS:
        item = {"type": "string", "enum": [*ENUMERATIONS[key], ""]}  # "" is skipped
    description = f"features whose {key} is any of these (comma-separated; case is ignored)"
    return _query(key, description, {"type": "array", "items": item}, style="form", explode=False)


def _or_empty(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema, or an empty value (`limit=`), which the server takes as not given."""
    return {"anyOf": [schema, {"type": "string", "maxLength": 0}]}


_DISTANCE = _or_empty({"type": "number", "minimum": 0})


def _map_list(key: str) -> dict[str, Any]:
    """A map filter that takes a list (geo.query): each value one of the allowed spellings, at
    most MAX_LIST_ITEMS of them and MAX_VALUE_LENGTH characters in all."""
    values = {
        "actor": list(read_actors()),
        "category": list(CATEGORIES),
        "event_type": list(EVENT_TYPES),
        # every id, name, alias and P-code, as geo.build.districts compares them (any case or
        # punctuation: "D.I. Khan" is "d i khan")
        "district": sorted(name_index()),
    }[key]
    # The server also refuses a value longer than MAX_VALUE_LENGTH characters in all, which
    # JSON Schema cannot say of a list: the description does.
    return {
        "type": "array",
        "maxItems": MAX_LIST_ITEMS,
        # An empty item ("ISKP,,TTP", "district=") is skipped, as an empty form field is.
        "items": {"type": "string", "enum": [*values, ""]},
    }


def _listed(key: str) -> str:
    return f"{FILTER_HELP[key]}; at most {MAX_LIST_ITEMS} values and {MAX_VALUE_LENGTH} characters"


def _query(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
        **extra,
    }


def _get(
    tag: str,
    summary: str,
    schema: str | None,
    parameters: list,
    operation_id: str,
    media: str = JSON,
    html: bool = True,
) -> dict[str, Any]:
    content: dict[str, Any] = {media: {"schema": _schema_ref(schema) if schema else {}}}
    if html:
        content[HTML] = {"schema": {"type": "string"}}
    responses = {
        "200": {"description": summary, "content": content},
        "304": {"description": "not modified since the ETag in If-None-Match"},
        "400": _error("a parameter is unknown or has a value that is not allowed"),
        "404": _error("no such collection or feature"),
        "414": {"description": "the request line is longer than 8,190 bytes (gunicorn's limit)"},
        "500": _error("a server error"),
    }
    return {
        "get": {
            "tags": [tag],
            "summary": summary,
            "operationId": operation_id,
            "parameters": parameters,
            "responses": responses,
        }
    }


def _downloads(schemas: dict[str, LayerSchema]) -> dict[str, Any]:
    """One path per layer's GeoJSON (each takes its own filters), the CSV and the GeoPackage.

    A download takes the map's filters and ignores other parameters. The layers other than
    attacks take bbox (and districts and tehsils district); the attack filters given to them
    are checked as the attacks' are (a malformed value is a 400 on any layer) but not applied,
    and the metadata's filters_not_applied says so.
    """

    components = _parameters()
    refs = {"bbox": "bbox", "from": "from", "to": "to", "max_border_km": "maxBorderKm"}

    def param(key: str, not_applied_to: str | None = None) -> dict[str, Any]:
        if key in refs:
            if not_applied_to is None:
                return _ref(refs[key])
            parameter = dict(components[refs[key]])
        else:
            parameter = _query(key, _listed(key), _map_list(key), style="form", explode=False)
        if not_applied_to is not None:
            note = f" (checked as on the attacks, but not applied to {not_applied_to})"
            parameter["description"] = parameter["description"] + note
        return parameter

    def filters(layer: str) -> list[dict[str, Any]]:
        allowed = FILTER_PARAMS if layer == "attacks" else area_filters(layer)
        return [param(key, None if key in allowed else layer) for key in FILTER_PARAMS]

    def download(summary: str, media: str, params: list, operation_id: str) -> dict[str, Any]:
        operation = _get("Downloads", summary, None, params, operation_id, media, html=False)
        operation["get"]["responses"]["200"]["content"] = {media: {"schema": {}}}
        if media == GEOJSON:
            operation["get"]["responses"]["200"]["content"] = {
                media: {"schema": _schema_ref("download")}
            }
        return operation

    paths = {
        f"/download/{name}.geojson": download(
            f"the {name} layer as an RFC 7946 FeatureCollection with a metadata member",
            GEOJSON,
            filters(name),
            f"download{_camel(name)}GeoJSON",
        )
        for name in schemas
    }
    if "attacks" in schemas:
        paths["/download/attacks.csv"] = download(
            "the attacks as CSV, one row per attack",
            "text/csv",
            filters("attacks"),
            "downloadAttacksCSV",
        )
    # The GeoPackage applies each filter to the layers that take it.
    paths["/download/kpmap.gpkg"] = download(
        "every layer in one GeoPackage",
        "application/geopackage+sqlite3",
        filters("attacks"),
        "downloadGeoPackage",
    )
    return paths  # fmt: skip


def _parameters() -> dict[str, Any]:
    coordinate = {"type": "number", "minimum": -180, "maximum": 180}
    return {
        "f": _query(
            "f",
            "the encoding (else chosen by the Accept header)",
            {"enum": ["json", "html"], "type": "string"},
        ),
        "bbox": _query(
            "bbox",
            "minx,miny,maxx,maxy in WGS 84 longitude/latitude (or 6 numbers, with minimum and "
            "maximum heights after miny and maxy, which are ignored); longitudes within "
            "-180..180, latitudes within -90..90, each minimum not greater than its maximum "
            "(boxes across the antimeridian are not supported); empty: no filter",
            {
                "type": "array",
                "items": coordinate,
                "anyOf": [
                    {"minItems": 4, "maxItems": 4},
                    {"minItems": 6, "maxItems": 6},
                    {"maxItems": 0},  # bbox= (empty): no filter
                ],
            },
            style="form",
            explode=False,
        ),
        "datetime": _query(
            "datetime",
            "an RFC 3339 date-time or a date (YYYY-MM-DD, YYYY-MM or YYYY), or an interval "
            "start/end of them with either end open as '..' or empty; the start not after the "
            "end. Empty: no filter",
            {"type": "string", "pattern": DATETIME_PATTERN},
        ),
        "limit": _query(
            "limit",
            "how many features at most (empty: the default)",
            _or_empty(
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}
            ),
        ),
        "offset": _query(
            "offset",
            "how many features to skip (empty: 0)",
            _or_empty({"type": "integer", "minimum": 0, "maximum": 999_999_999_999, "default": 0}),
        ),
        "featureId": {
            "name": "featureId",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
        },
        "from": _query(
            "from",
            FILTER_HELP["from"] + ", not after `to`; empty: no filter",
            {"type": "string", "pattern": f"^{PERIOD_PATTERN}?$"},
        ),
        "to": _query(
            "to",
            FILTER_HELP["to"] + ", not before `from`; empty: no filter",
            {"type": "string", "pattern": f"^{PERIOD_PATTERN}?$"},
        ),
        "maxBorderKm": _query("max_border_km", FILTER_HELP["max_border_km"], _DISTANCE),
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
        "download": {
            "type": "object",
            "required": ["type", "features", "metadata"],
            "properties": {
                "type": {"type": "string", "enum": ["FeatureCollection"]},
                "features": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/featureGeoJSON"},
                },
                "metadata": {
                    "type": "object",
                    "required": ["layer", "count", "filters", "sources", "attribution"],
                },
            },
        },
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
