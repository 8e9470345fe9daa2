"""geo/query.py: the map's filters, shared by the map, the downloads, the OGC API and tiles."""

import pytest
from werkzeug.datastructures import MultiDict

from geo.errors import InvalidQuery, LayerNotFound
from geo.query import describe_filters, filter_notes, parse_filters, shown
from geo.vocab import EVENT_TYPES


def test_every_filter_parsed():
    args = {
        "bbox": "70,33,72,35",
        "from": "2024-01",
        "to": "2024",
        "actor": "iskp,TTP",
        "event_type": "Suicide Bombing",
        "district": "D.I. Khan,bajaur",
        "max_border_km": "25",
    }
    assert parse_filters(args) == {
        "bbox": (70.0, 33.0, 72.0, 35.0),
        "start": "2024-01",
        "end": "2024",
        "actor": ["ISKP", "TTP"],
        "event_type": ["suicide bombing"],
        "district": ["dera-ismail-khan", "bajaur"],
        "max_border_km": 25.0,
    }


def test_nothing_given_means_no_filter():
    assert parse_filters({}) == {}
    assert parse_filters({"actor": "", "from": ""}) == {}


def test_other_parameters_are_ignored():
    """The map and tiles share the query string with their own parameters."""
    assert parse_filters({"basemap": "osm", "zoom": "7", "actor": "TTP"}) == {"actor": ["TTP"]}


def test_repeated_and_comma_separated_values_combine():
    args = MultiDict([("actor", "TTP"), ("actor", "ISKP,BLA")])
    assert parse_filters(args)["actor"] == ["TTP", "ISKP", "BLA"]


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_type_is_accepted(event_type):
    assert parse_filters({"event_type": event_type.upper()}) == {"event_type": [event_type]}


@pytest.mark.parametrize(
    ("name", "district"),
    [
        ("bajaur", "bajaur"),
        ("Bajaur", "bajaur"),
        ("Bajour", "bajaur"),
        ("D.I. Khan", "dera-ismail-khan"),
        ("dera-ismail-khan", "dera-ismail-khan"),
        ("FR Kohat", "kohat"),
        ("PK509", "dera-ismail-khan"),
        ("pk534", "torghar"),
        ("Tor Ghar", "torghar"),
        ("Upper South Waziristan", "south-waziristan"),
        ("Central Dir", "upper-dir"),
    ],
)
def test_district_by_id_name_alias_pcode_or_successor(name, district):
    assert parse_filters({"district": name}) == {"district": [district]}


def test_a_former_district_selects_every_polygon_it_became():
    assert parse_filters({"district": "Kohistan,Lower Kohistan"}) == {
        "district": ["lower-kohistan", "upper-kohistan", "kolai-palas"]
    }
    assert filter_notes({"district": "kohistan"}) == [
        "Kohistan was split (until 2014) into lower-kohistan, upper-kohistan, kolai-palas: all "
        "are selected"
    ]


def test_a_successor_selects_its_parent_and_says_so():
    notes = filter_notes({"district": "Lower South Waziristan,bajaur"})
    assert len(notes) == 1
    assert "Lower South Waziristan (created 2022-10) is not drawn" in notes[0]
    assert "South Waziristan (south-waziristan), which is selected" in notes[0]
    assert filter_notes({"district": "bajaur"}) == []


def test_district_on_the_districts_layer_filters_ids():
    assert parse_filters({"district": "Bajour"}, "districts") == {"id": ["bajaur"]}


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        ({"actor": "<script>alert(1)</script>"}, "ISKP, TTP"),
        ({"actor": "Taliban"}, "allowed:"),
        ({"event_type": "drone strike"}, "suicide bombing"),
        ({"district": "Lahore"}, "use an id, a name or a P-code"),
        ({"from": "yesterday"}, "YYYY-MM-DD"),
        ({"to": "2024-02-30"}, "does not exist"),
        ({"from": "2024-13"}, "does not exist"),
        ({"from": "2024-05", "to": "2024-04"}, "after"),
        ({"max_border_km": "-5"}, ">= 0"),
        ({"max_border_km": "nan"}, ">= 0"),
        ({"max_border_km": "inf"}, ">= 0"),
        ({"bbox": "1,2,3"}, "4 comma-separated numbers"),
        ({"bbox": "72,33,70,35"}, "greater than maxx"),
        ({"bbox": "70,33,72,95"}, "latitude -90..90"),
        ({"bbox": "a,b,c,d"}, "4 comma-separated numbers"),
        ({"bbox": "70,33,72,nan"}, "finite"),
        ({"actor": "TTP\x00"}, "control characters"),
        ({"from": "2024", "to": "2023"}, "after"),
        ({"actor": "x" * 5000}, "longer than"),
        ({"actor": ",".join(["TTP"] * 101)}, "more than 100"),
    ],
)
def test_bad_values_say_what_is_allowed(args, allowed):
    with pytest.raises(InvalidQuery) as caught:
        parse_filters(args)
    message = str(caught.value)
    assert allowed in message
    assert "<" not in message and "\x00" not in message  # shown in HTML by the map page


def test_month_and_year_windows_are_not_reversed():
    assert parse_filters({"from": "2024-03", "to": "2024"}) == {"start": "2024-03", "end": "2024"}


def test_six_number_bbox_drops_heights():
    assert parse_filters({"bbox": "70,33,0,72,35,100"})["bbox"] == (70.0, 33.0, 72.0, 35.0)


@pytest.mark.parametrize("key", ["actor", "from", "event_type", "max_border_km"])
def test_attack_filters_on_other_layers_are_refused(key):
    value = {"actor": "TTP", "from": "2024", "event_type": "other", "max_border_km": "5"}[key]
    with pytest.raises(InvalidQuery, match="its filters are: bbox, district"):
        parse_filters({key: value}, "districts")


def test_unknown_layer():
    with pytest.raises(LayerNotFound, match="the layers are"):
        parse_filters({}, "../../etc/passwd")


def test_describe_filters_uses_parameter_names():
    kwargs = parse_filters({"from": "2024", "to": "2024-06", "bbox": "70,33,72,35"})
    assert describe_filters(kwargs) == {
        "bbox": [70.0, 33.0, 72.0, 35.0],
        "from": "2024",
        "to": "2024-06",
    }
    assert describe_filters(parse_filters({"district": "bajaur"}, "districts")) == {
        "district": ["bajaur"]
    }


def test_filters_give_what_the_store_selects(store):
    kwargs = parse_filters({"actor": "iskp", "from": "2023", "district": "Bajour"})
    found = store.query("attacks", **kwargs)
    assert found
    assert {f["properties"]["actor"] for f in found} == {"ISKP"}
    assert {f["properties"]["district"] for f in found} == {"bajaur"}


def test_shown_is_short_and_plain():
    assert shown("<b>&\"'") == "'?b????'"
    assert shown("a" * 100).endswith("...'")


def test_the_documented_filters_table_is_the_declared_one():
    """One home for the filters: docs/api.md rows say what geo.query.FILTERS says, in its order."""
    from pathlib import Path

    from geo.query import FILTERS

    readme = (Path(__file__).parent.parent / "docs" / "api.md").read_text(encoding="utf-8")
    rows = [f"| `{f.name}` | {f.help} | `{f.example}` |" for f in FILTERS]
    table = readme[readme.index("| parameter | meaning | example |") :].split("\n\n")[0]
    assert table.splitlines()[2:] == rows


def test_each_declared_example_parses():
    from urllib.parse import parse_qsl

    from geo.query import FILTERS

    for f in FILTERS:
        assert parse_filters(dict(parse_qsl(f.example))), f.name
