"""The HTML encoding of the OGC API's documents (/req/html/content): every member of the JSON
document in the body, and every link as an <a> element. One template renders any document, so
the HTML can never fall behind the JSON.

Jinja escapes every value (autoescape), so text from the data can never become markup.
"""

import json
from typing import Any
from urllib.parse import quote

import jinja2

# The templates are files next to this module (templates/page.html, templates/tree.html).
_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("geo.ogc", "templates"),
    autoescape=True,
    undefined=jinja2.ChainableUndefined,
)
_PAGE = _ENV.get_template("page.html")
_MACROS = _ENV.get_template("tree.html").module
# Members the page shows in its own sections; anything else goes under "Details".
_SHOWN = {"title", "description", "links", "type", "features", "properties", "geometry", "id"}


def render_html(doc: dict[str, Any], title: str, home: str, item_base: str = "") -> str:
    """A document as an HTML 5 page; `home` is the landing page URL, `item_base` the URL that
    a feature id appends to (for the links in a feature table)."""
    columns: list[str] = []
    for feature in doc.get("features", []) if doc.get("type") == "FeatureCollection" else []:
        for key in feature.get("properties") or {}:
            if key not in columns and key != "id":  # the id has its own, linked column
                columns.append(key)
    rest = {k: v for k, v in doc.items() if k not in _SHOWN}
    if doc.get("type") == "FeatureCollection":
        rest = {k: v for k, v in rest.items() if k not in ("numberMatched", "numberReturned")}
    return _PAGE.render(
        doc=doc,
        title=title,
        home=home,
        columns=columns,
        rest=rest,
        tree=_MACROS.tree,  # type: ignore[attr-defined]  # a macro the template defines
        show=_show,
        item_url=lambda fid: f"{item_base}/{quote(str(fid), safe='')}?f=html",
    )


def _show(value: Any) -> str:
    """A property value as text: lists and objects as JSON, null as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
