"""OGC API – Features, Part 1: Core: the documents and the parameter rules, without any web
framework (as pygeoapi keeps its API logic apart from its Flask adapter).

`base` below is the absolute URL of the API's landing page without a trailing slash, e.g.
"https://kpmap.example/ogc"; every link is built from it. Documents are plain dicts; the web
layer encodes them as JSON or, with geo.ogc.html, as HTML.

Standard: OGC 17-069r4 (http://www.opengis.net/doc/IS/ogcapi-features-1/1.0). What the
requirement classes ask, and where it is met:

| requirement                         | here                                               |
| ----------------------------------- | -------------------------------------------------- |
| /req/core/root-success              | landing_page: service-desc/-doc, conformance, data |
| /req/core/conformance-success       | conformance: core, geojson, html, oas30            |
| /req/core/fc-md-*                   | collections / collection: links, extent, itemType  |
| /req/core/fc-bbox-*                 | 4 or 6 numbers, CRS84 (geo.query.parse_bbox_text) |
| /req/core/fc-time-*                 | parse_datetime: instants, intervals, `..` and ""   |
| /req/core/fc-limit-*                | parse_limit: 1..10000, default 100                 |
| /req/core/fc-links, fc-rel-type     | items_links: self, alternate, next, prev, collection |
| /req/core/fc-numberMatched, ...     | built by the web layer from Store.select           |
| /req/core/query-param-*             | 400 for unknown parameters and invalid values      |
"""

import re
from datetime import UTC, datetime

from geo.dates import PERIOD, period
from geo.errors import InvalidQuery
from geo.vocab import DATE_PRECISIONS, EVENT_TYPES, TARGETS

GEOJSON = "application/geo+json"
JSON = "application/json"
HTML = "text/html"
OPENAPI_JSON = "application/vnd.oai.openapi+json;version=3.0"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
GREGORIAN = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"
CONFORMANCE = (
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
)
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
# Parameters every items request takes; property filters come from the layer's schema.
ITEMS_PARAMS = ("f", "bbox", "datetime", "limit", "offset")
# Values some property filters may take: an unknown one is a 400 that lists them, not silence.
ENUMERATIONS: dict[str, tuple[str, ...]] = {
    "event_type": EVENT_TYPES,
    "target": TARGETS,
    "date_precision": DATE_PRECISIONS,
    "geo_precision": ("1", "2", "3"),
    "claimed": ("true", "false"),
    "former_fata": ("true", "false"),
}

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_INTEGER = re.compile(r"^[0-9]{1,12}$")


def parse_limit(text: str | None) -> int:
    """The `limit` parameter: an integer from 1 to 10,000; 100 when absent.

    >>> parse_limit(None), parse_limit("1000")
    (100, 1000)
    """
    if text is None or text == "":
        return DEFAULT_LIMIT
    if not _INTEGER.match(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise InvalidQuery(
            f"limit must be a whole number from 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}); "
            "page through more with offset or the next links"
        )
    return int(text)


def parse_offset(text: str | None) -> int:
    """The `offset` parameter: how many matching features to skip (>= 0; 0 when absent)."""
    if text is None or text == "":
        return 0
    if not _INTEGER.match(text):
        raise InvalidQuery("offset must be a whole number >= 0 (features to skip)")
    return int(text)


def parse_datetime(text: str) -> tuple[str | None, str | None]:
    """The `datetime` parameter as inclusive (start, end) days for Store.select; None is open.

    An RFC 3339 date-time, or an interval of two separated by "/", either end open with ".."
    or "" (/req/core/fc-time-definition). Attack dates are days, so a date-time stands for its
    day in UTC; a full date (2024-01-31), month (2024-01) or year (2024) is also taken.

    >>> parse_datetime("2024-01-01T00:00:00Z/..")
    ('2024-01-01', None)
    >>> parse_datetime("2024-03-01T02:00:00+05:00")
    ('2024-02-29', '2024-02-29')
    """
    parts = text.split("/")
    if len(parts) == 1:
        day = _instant(parts[0], text)
        return day, day
    if len(parts) != 2:
        raise _bad_datetime(text)
    start, end = (None if p in ("", "..") else _instant(p, text) for p in parts)
    if start and end and period(start).first > period(end).last:
        raise InvalidQuery("datetime interval starts after it ends: use start/end")
    return start, end


def _instant(part: str, whole: str) -> str:
    if _DATE_TIME.match(part):
        try:
            moment = datetime.fromisoformat(part.upper())
            # the first and last hours of the calendar have no UTC date in year 1..9999
            return moment.astimezone(UTC).date().isoformat()
        except (ValueError, OverflowError):
            raise _bad_datetime(whole) from None
    if PERIOD.match(part):
        try:
            period(part)
        except ValueError:
            raise _bad_datetime(whole) from None
        return part
    raise _bad_datetime(whole)


def _bad_datetime(text: str) -> InvalidQuery:
    del text  # not echoed: the message says what is allowed instead
    return InvalidQuery(
        "datetime must be an RFC 3339 date-time (2024-01-31T00:00:00Z) or date (2024-01-31), "
        "or an interval start/end with either end open as '..', e.g. 2024-01-01/2024-03-31 "
        "or ../2024-03-31"
    )


def check_enumeration(key: str, values: list[str]) -> list[str]:
    """Values of a property filter with a closed set of values, in their canonical spelling."""
    allowed = ENUMERATIONS.get(key)
    if allowed is None:
        return values
    canonical = {a.casefold(): a for a in allowed}
    out = []
    for value in values:
        if value.casefold() not in canonical:
            raise InvalidQuery(f"{key} must be one of: {', '.join(allowed)}")
        out.append(canonical[value.casefold()])
    return out
