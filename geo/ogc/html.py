"""The HTML encoding of the OGC API's documents (/req/html/content): every member of the JSON
document in the body, and every link as an <a> element. One template renders any document, so
the HTML can never fall behind the JSON.

Jinja escapes every value (autoescape), so text from the data can never become markup.
"""

import json
from typing import Any
from urllib.parse import quote

import jinja2

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · kpmap OGC API</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5rem auto; max-width: 75rem;
       padding: 0 1rem; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: .2rem .4rem; vertical-align: top; text-align: left; }
th { background: #f3f3f3; } dt { font-weight: 600; } dd { margin: 0 0 .4rem 1.2rem; }
pre { white-space: pre-wrap; margin: 0; max-height: 12rem; overflow: auto; }
nav a { margin-right: .8rem; }
</style></head>
<body>
<nav><a href="{{ home }}">OGC API home</a><a href="{{ home }}/collections">collections</a>
<a href="{{ home }}/api?f=html">API definition</a></nav>
<h1>{{ title }}</h1>
{% if doc.description %}<p>{{ doc.description }}</p>{% endif %}
{% if doc.links %}<h2>Links</h2><ul>
{% for l in doc.links %}<li><a href="{{ l.href }}" rel="{{ l.rel }}" type="{{ l.type }}">
{{ l.title or l.href }}</a> ({{ l.rel }}, {{ l.type }})</li>{% endfor %}</ul>{% endif %}
{% if doc.type == "FeatureCollection" %}
<p>{{ doc.numberReturned }} of {{ doc.numberMatched }} matching features
(generated {{ doc.timeStamp }}).</p>
{% if doc.features %}<table><thead><tr><th>id</th>{% for k in columns %}<th>{{ k }}</th>
{% endfor %}<th>geometry</th></tr></thead><tbody>
{% for f in doc.features %}<tr><td><a href="{{ item_url(f.id) }}">{{ f.id }}</a></td>
{% for k in columns %}<td>{{ show(f.properties.get(k)) }}</td>{% endfor %}
<td><pre>{{ show(f.geometry) }}</pre></td></tr>
{% endfor %}</tbody></table>{% endif %}
{% elif doc.type == "Feature" %}
<table><tbody><tr><th>id</th><td>{{ doc.id }}</td></tr>
{% for k, v in doc.properties.items() %}<tr><th>{{ k }}</th><td>{{ show(v) }}</td></tr>
{% endfor %}<tr><th>geometry</th><td><pre>{{ show(doc.geometry) }}</pre></td></tr>
</tbody></table>
{% endif %}
{% if rest %}<h2>Details</h2>{{ tree(rest) }}{% endif %}
</body></html>"""

_TREE = """{% macro tree(value) -%}
{% if value is mapping %}<dl>{% for k, v in value.items() %}<dt>{{ k }}</dt>
<dd>{{ tree(v) }}</dd>{% endfor %}</dl>
{%- elif value is sequence and value is not string %}<ol>{% for v in value %}
<li>{{ tree(v) }}</li>{% endfor %}</ol>
{%- elif value is string and (value.startswith("http://") or value.startswith("https://")) -%}
<a href="{{ value }}">{{ value }}</a>
{%- else %}{{ value }}{% endif %}
{%- endmacro %}"""

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
_PAGE = _ENV.from_string(_TEMPLATE)
_MACROS = _ENV.from_string(_TREE).module
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
        tree=_MACROS.tree,
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
