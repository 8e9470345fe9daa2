"""schemathesis hooks for kpmap's API: the constraints its OpenAPI document states in words.

JSON Schema cannot relate one value to another, so the document says in its descriptions that a
bbox's minimum is not above its maximum (and latitudes are within -90..90, where the schema can
only bound every coordinate by -180..180), that `from` is not after `to`, and that a datetime
interval does not end before it starts. For requests generated to be valid, these hooks put the
values in that order; requests generated to be invalid whose query is valid as it is sent are
left out (`filter_case`).

Loaded by `make hardening` (SCHEMATHESIS_HOOKS=benchmarks.schemathesis_hooks) and by
tests/test_hardening.py.
"""

import atexit

import schemathesis


@schemathesis.hook
def map_case(context, case):
    meta = getattr(case, "meta", None)
    if meta is None or not meta.generation.mode.is_positive or not case.query:
        return case
    query = dict(case.query)
    for key in ("actor", "category", "event_type", "district"):
        query[key] = _within_length(query.get(key))
    query = {k: v for k, v in query.items() if v is not None or k in case.query}
    if "bbox" in query:
        query["bbox"] = _ordered_bbox(query["bbox"])
    if query.get("from") and query.get("to") and _rejected(_check_period, query):
        query["from"], query["to"] = query["to"], query["from"]
    if isinstance(query.get("datetime"), str) and _rejected(_check_datetime, query):
        start, _, end = query["datetime"].partition("/")
        query["datetime"] = f"{end}/{start}"
    case.query = query
    return case


@schemathesis.hook
def filter_case(context, case):
    """Leave out a case generated to be invalid whose query is valid as the server receives it.

    schemathesis judges a case by the typed values it generated: the number 1.0 given to a
    comma-separated list of texts is invalid to it, but it is sent as "province=1.0", the valid
    list ["1.0"], and the server's 200 was counted as a conformance failure (its issue #4600,
    fixed there for single values only). Only cases whose every other part was generated valid
    are looked at; the query is read as sent (texts, lists split at commas, empty objects
    not sent) and checked against each parameter's schema.
    """
    meta = getattr(case, "meta", None)
    if meta is None or meta.generation.mode.is_positive or not case.query:
        return True
    for location, info in meta.components.items():
        if info.mode.is_negative and getattr(location, "value", "") != "query":
            return True
    parameters = {p.name: p.definition for p in case.operation.query}
    for key, value in case.query.items():
        definition = parameters.get(key)
        if definition is None or not _valid_as_sent(definition, value):
            return True
    return False


def _valid_as_sent(definition: dict, value) -> bool:
    """Whether a query value, as it goes on the wire, is one its parameter's schema admits."""
    import jsonschema_rs

    if value is None or value == {} or value == []:
        return True  # not sent
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return False  # a list is sent repeated, an object as its items: not judged here
    schema = definition.get("schema", {})
    text = str(value)
    if schema.get("type") == "array" and definition.get("explode") is False:
        items = text.split(",") if text else []  # "bbox=" is the empty list
        typed = [_as_typed(item, schema.get("items", {})) for item in items]
        return jsonschema_rs.validator_for(schema).is_valid(typed)
    candidates = [text, *([_as_typed(text, {"type": "number"})] if text else [])]
    validator = jsonschema_rs.validator_for(schema)
    return any(validator.is_valid(c) for c in candidates)


def _as_typed(text: str, schema: dict):
    """A text as the number the schema wants, where it reads as one."""
    if schema.get("type") in ("number", "integer"):
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if number.is_integer() and schema["type"] == "integer" else number
    return text


def _within_length(values):
    """A list filter cut to the server's 2,000 characters in all (geo.query.MAX_VALUE_LENGTH)."""
    from geo.query import MAX_VALUE_LENGTH

    if not isinstance(values, list):
        return values
    kept: list = []
    while values and len(",".join(map(str, [*kept, values[0]]))) <= MAX_VALUE_LENGTH:
        kept.append(values[0])
        values = values[1:]
    return kept


def _ordered_bbox(value):
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, list | tuple):
        parts = list(value)
    else:
        return value
    try:
        numbers = [float(p) for p in parts]
    except (TypeError, ValueError):
        return value
    if len(numbers) not in (4, 6) or not all(-180 <= n <= 180 for n in numbers):
        return value
    half = len(numbers) // 2
    for i in range(half):  # x, y (and heights) paired with their maxima
        low, high = sorted((numbers[i], numbers[i + half]))
        numbers[i], numbers[i + half] = low, high
    for i in (1, 1 + half):  # latitudes
        numbers[i] = max(-90.0, min(90.0, numbers[i]))
    return numbers if not isinstance(value, str) else ",".join(repr(n) for n in numbers)


def _rejected(check, query) -> bool:
    """Whether the server's own parser refuses the values (only InvalidQuery: anything else it
    raises is left for the server to answer, so that a server error is seen)."""
    from geo.errors import InvalidQuery

    try:
        check(query)
    except InvalidQuery:
        return True
    except Exception:
        return False
    return False


def _check_period(query) -> None:
    from geo.query import parse_filters

    parse_filters({"from": str(query["from"]), "to": str(query["to"])})


def _check_datetime(query) -> None:
    from geo.ogc.params import parse_datetime

    if "/" in query["datetime"]:
        parse_datetime(query["datetime"])


# --- what `make hardening` counts ----------------------------------------------------------------

# Every answer's status, when HARDENING_COUNTS names a file: written when the run ends.
STATUSES: dict[int, int] = {}


@schemathesis.hook
def after_call(context, case, response):
    status = getattr(response, "status_code", 0)
    STATUSES[status] = STATUSES.get(status, 0) + 1


def _write_counts() -> None:
    import json
    import os

    path = os.environ.get("HARDENING_COUNTS")
    if path and STATUSES:
        with open(path, "w") as f:
            json.dump({str(k): v for k, v in sorted(STATUSES.items())}, f)


atexit.register(_write_counts)
