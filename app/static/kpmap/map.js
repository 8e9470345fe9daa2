/*
 * kpmap's web map: loads the layers by URL from the service (the first view's from the page
 * itself, which carries them by URL: carried) and draws them into the Leaflet layers that folium
 * created (app/maps.py, build_map).
 *
 * Safety: every text that comes from data is put into the page with textContent (the el()
 * helper), never as HTML; a source's URL becomes a link only when it is http(s).
 * Tests and benchmarks wait for window.kpmapReady (true once districts, border and attacks are
 * drawn) and read window.kpmapStats (what was drawn; `tehsils` once that layer has been shown;
 * `detailPending`, the layers still being fetched or drawn at a new zoom's detail).
 */
(function () {
  "use strict";

  var DAY_MS = 86400000;
  var MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December"];
  var PRECISION = { 1: "the place itself", 2: "near the place (approximate)", 3: "only the district" };

  window.kpmapReady = false;
  window.kpmapStats = {};

  /* ---- small helpers ------------------------------------------------------------------- */

  function el(tag, props, children) {
    var node = document.createElement(tag);
    Object.keys(props || {}).forEach(function (key) {
      if (key === "text") node.textContent = props[key];
      else if (key === "class") node.className = props[key];
      else node.setAttribute(key, props[key]);
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function safeUrl(url) {
    return typeof url === "string" && /^https?:\/\//i.test(url.trim()) ? url.trim() : null;
  }

  function sourceItem(source) {
    source = source || {};
    var label = [source.publication, source.title].filter(Boolean).join(", ");
    if (source.date) label += " (" + source.date + ")";
    var url = safeUrl(source.url);
    if (!url) return el("li", { text: label || "unnamed source" });
    return el("li", {}, [el("a", { href: url, target: "_blank", rel: "noopener noreferrer nofollow",
      text: label || url })]);
  }

  function table(rows) {
    return el("table", { class: "kpmap-popup-table" }, rows.filter(Boolean).map(function (r) {
      return el("tr", {}, [el("th", { text: r[0] }), el("td", { text: r[1] })]);
    }));
  }

  // A number as toLocaleString("en") writes it ("12,345", "1,234.568": at most three decimals),
  // without it: its first call in a page loads the locale data, ~30 ms before the map is drawn
  // on a slow machine.
  function n(value) {
    if (value === null || value === undefined) return "not reported";
    var number = Number(value);
    if (!isFinite(number)) return String(number);
    var rounded = Math.round(Math.abs(number) * 1000) / 1000;
    var parts = String(rounded).split(".");
    var text = parts[0].replace(/\B(?=(\d{3})+$)/g, ",") + (parts[1] ? "." + parts[1] : "");
    return (number < 0 && rounded ? "-" : "") + text;
  }

  function range(low, best, high) {
    var parts = [low, best, high].filter(function (v) { return v !== null && v !== undefined; });
    if (!parts.length) return "not reported";
    var unique = parts.filter(function (v, i) { return parts.indexOf(v) === i; });
    if (unique.length === 1) return n(unique[0]);
    return [low, best, high].map(function (v) { return v === null || v === undefined ? "?" : n(v); })
      .join(" – ") + " (low – best – high)";
  }

  function dayText(day) {
    var d = new Date(day * DAY_MS);
    return d.getUTCDate() + " " + MONTHS[d.getUTCMonth()].slice(0, 3) + " " + d.getUTCFullYear();
  }

  function monthText(month) { // months since 1970-01
    return MONTHS[month % 12] + " " + (1970 + Math.floor(month / 12));
  }

  function dateText(value) { // "2024-04-02", "2024-04" or "2024", as written
    if (!value) return "";
    var p = String(value).split("-");
    if (p.length === 3) return Number(p[2]) + " " + MONTHS[Number(p[1]) - 1] + " " + p[0];
    if (p.length === 2) return MONTHS[Number(p[1]) - 1] + " " + p[0];
    return p[0];
  }

  function whenText(props) {
    var text = dateText(props.date);
    if (props.date_end) text += " – " + dateText(props.date_end);
    if (props.date_precision === "month") text += " (known to the month)";
    if (props.date_precision === "range") text += " (some day in this range)";
    return text;
  }

  function monthOf(day) {
    var d = new Date(day * DAY_MS);
    return (d.getUTCFullYear() - 1970) * 12 + d.getUTCMonth();
  }

  function monthBounds(month) { // [first day, last day] of a month, in days since 1970-01-01
    var y = 1970 + Math.floor(month / 12), m = month % 12;
    return [Date.UTC(y, m, 1) / DAY_MS, Date.UTC(y, m + 1, 1) / DAY_MS - 1];
  }

  // The feeds the first view draws, asked for by the page's head (fetchEarly, app/maps.py) as
  // soon as this script has loaded rather than once the map is made: their answers then arrive
  // before the basemap tiles' and are parsed while the page loads. Each is handed out once.
  var early = {};
  function fetchEarly(urls) {
    urls.forEach(function (url) {
      early[url] = fetchJSON(url);
      early[url].catch(function () { /* reported by whoever asks for it */ });
    });
  }

  // The first view's districts and border, and its attacks when few, come in the page itself
  // (app/maps.py, _carried), as JSON in a <script data-kpmap-feed="url"> element: drawn as soon
  // as the map is made, without waiting for a request. Each is handed out once; asked for
  // again (back at this zoom), it is fetched.
  function carried(url) {
    var found = null;
    Array.prototype.forEach.call(document.querySelectorAll("script[data-kpmap-feed]"), function (element) {
      if (!found && element.getAttribute("data-kpmap-feed") === url) found = element;
    });
    if (!found) return null;
    found.remove();
    return JSON.parse(found.textContent);
  }

  function getJSON(url) {
    var inPage = carried(url);
    if (inPage) return Promise.resolve(inPage);
    var asked = early[url];
    delete early[url];
    return asked || fetchJSON(url);
  }

  // A plain fetch (no custom headers), so that the page's <link rel="preload"> answers it.
  function fetchJSON(url) {
    return fetch(url).then(function (response) {
      if (!response.ok) {
        return response.text().then(function (body) {
          var message = body;
          try { message = JSON.parse(body).description || body; } catch (e) { /* not JSON */ }
          throw new Error(url + " answered " + response.status + ": " + message);
        });
      }
      return response.json();
    });
  }

  /* ---- the map ------------------------------------------------------------------------- */

  function start(map, layers, config) {
    var stats = window.kpmapStats;
    stats.ms = { start: Math.round(performance.now()) }; // ms since navigation, for benchmarks
    var districtShapes = {};
    stats.count = config.count;

    function actorColour(key) {
      var actor = config.actors[key];
      return actor ? actor.colour : config.unknownColour;
    }
    function actorName(key) {
      if (!key) return "no perpetrator named";
      var actor = config.actors[key];
      return actor ? actor.name + " (" + key + ")" : key;
    }
    // A militant attack is coloured by its perpetrator; other events by their category.
    function isAttack(category) { return !category || category === config.attackCategory; }
    function markColour(record) {
      return isAttack(record.category) ? actorColour(record.actor)
        : config.categoryColours[record.category] || config.unknownColour;
    }
    function districtName(id) { return config.districtNames[id] || id; }

    function showError(error) {
      console.error(error);
      var box = document.getElementById("kpmap-error") || el("div", { id: "kpmap-error",
        class: "kpmap-error", role: "alert" });
      box.textContent = "Part of the map could not be loaded: " + error.message;
      map.getContainer().appendChild(box);
    }

    addLegend(map);

    /* Outlines and the border come simplified below a pixel for the zoom they are seen at
       (app/maps.py, detailed): the first view's, then finer ones as the reader zooms in. */
    function detailedUrl(url, zoom, kind) { // as aggregate.detail_zoom decides
      var d = config.detail;
      zoom = Math.ceil(zoom);
      if (zoom <= d.firstZoom) return url;
      return url + "?z=" + Math.min(zoom, kind === "outlines" ? d.outlineMaxZoom : d.borderFullZoom);
    }
    // The function that draws the layer at url for the map's zoom (a promise of it), called
    // again by every zoom that needs another, while `shown()` (when given) says it is on the map.
    function followZoom(url, kind, draw, shown) {
      var drawn = null;
      function sync() {
        var wanted = detailedUrl(url, map.getZoom(), kind);
        if (wanted === drawn || (shown && !shown())) return Promise.resolve();
        drawn = wanted;
        stats.detailPending = (stats.detailPending || 0) + 1;
        return getJSON(wanted).then(function (geojson) {
          if (wanted === drawn) draw(geojson); // not when a later zoom asked for another meanwhile
        }, function (error) {
          if (wanted === drawn) drawn = null; // asked for again at the next zoom or toggle
          throw error;
        }).finally(function () { stats.detailPending -= 1; });
      }
      map.on("zoomend", function () { sync().catch(showError); });
      return sync;
    }


    /* Tehsils and the border bands get panes of their own beneath the overlay pane, so that
       districts' edges, the border and the attacks stay above them however late they load, and
       the bands never catch a click meant for a tehsil. */
    map.createPane("kpmapBands").style.zIndex = 380;
    map.createPane("kpmapTehsils").style.zIndex = 390;
    function tehsilsShown() { return map.hasLayer(layers.tehsils); }

    /* Districts: a choropleth of the chosen metric under the filters. While the tehsils are
       shown the districts are outlines only: two choropleths over each other cannot be read. */
    function metricValue(totals) { return totals ? totals[config.metric] : 0; }
    function fillColour(value, classes) {
      if (!value) return config.zeroColour;
      for (var i = 0; i < classes.length; i++) {
        if (value <= classes[i].max) return classes[i].colour;
      }
      return classes.length ? classes[classes.length - 1].colour : config.zeroColour;
    }
    function districtStyle(feature) {
      if (tehsilsShown()) return { color: "#333", weight: 1.6, opacity: 0.9, fill: false };
      var value = metricValue(config.totals[feature.id]);
      return { color: "#666", weight: 1, opacity: 0.9, fill: true, fillColor: fillColour(value, config.classes),
        fillOpacity: value ? 0.6 : 0.25 };
    }
    function districtPopup(feature) {
      var p = feature.properties, totals = config.totals[feature.id] || {};
      var facts = (p.facts || []).map(function (f) {
        var text = (f.qualifier ? f.qualifier + " " : "") + n(f.value) + " " + f.metric;
        if (f.actor) text += " by " + f.actor;
        text += " (" + [f.period_start, f.period_end].filter(Boolean).join(" to ") + ")";
        if (f.note) text += ". " + f.note;
        return el("li", {}, [text, el("ul", {}, [sourceItem(f.citation)])]);
      });
      var successors = (p.successors || []).map(function (s) {
        var text = s.name + (s.created ? " (created " + dateText(s.created) + ")" : "");
        return el("li", {}, [text, el("ul", {}, [sourceItem(s.citation)])]);
      });
      return el("div", { class: "kpmap-popup" }, [
        el("h3", { text: p.name }),
        table([
          ["P-code", p.pcode],
          ["Former FATA", p.former_fata ? "yes (merged into KP in 2018)" : "no"],
          p.frontier_region ? ["Former Frontier Region", p.frontier_region + " (part of the district since 2018)"] : null,
          ["Attacks (filters)", n(totals.attacks || 0)],
          ["Killed (filters)", n(totals.killed || 0)],
          ["Injured (filters)", n(totals.injured || 0)],
          ["Area", n(Math.round(p.area_km2)) + " km²"],
        ]),
        successors.length ? el("div", { class: "kpmap-popup-successors" }, [
          el("strong", { text: "Districts since created within it" }), el("ul", {}, successors)]) : null,
        facts.length ? el("div", { class: "kpmap-popup-facts" }, [el("strong", { text: "Cited figures" }),
          el("ul", {}, facts)]) : null,
        el("div", { class: "kpmap-popup-source", text: "Boundary: " + (p.source || "") }),
      ]);
    }
    var districtLayer = L.geoJSON(null, {
      style: districtStyle,
      onEachFeature: function (feature, shape) {
        districtShapes[feature.id] = shape;
        shape.bindPopup(function () { return districtPopup(feature); }, { maxWidth: 360 });
        shape.bindTooltip(function () {
          return el("span", { text: feature.properties.name + ": " + n(metricValue(config.totals[feature.id])) +
            " " + config.metricLabel });
        }, { sticky: true });
        shape.on("mouseover", function () {
          shape.setStyle({ weight: 3, color: "#222" });
          shape.bringToFront();
          layers.border.bringToFront(); // the border stays above any district edge
        });
        shape.on("mouseout", function () { districtLayer.resetStyle(shape); });
      },
    });
    var districtsDrawn = followZoom(config.urls.districts, "outlines", function (geojson) {
      Object.keys(districtShapes).forEach(function (id) { delete districtShapes[id]; });
      districtLayer.clearLayers();
      districtLayer.addData(geojson);
      if (!layers.districts.hasLayer(districtLayer)) districtLayer.addTo(layers.districts);
      layers.border.bringToFront && layers.border.bringToFront();
      stats.districts = districtLayer.getLayers().length;
      stats.ms.districts = stats.ms.districts || Math.round(performance.now());
    })();

    /* Tehsils: the same choropleth per tehsil (classes of their own), loaded when first shown.
       An attack known only to its district is in no tehsil's count; the popup says how many
       such attacks its district has under the filters. */
    function tehsilStyle(feature) {
      var value = metricValue(config.tehsilTotals[feature.id]);
      return { color: "#555", weight: 0.8, opacity: 0.9, fillColor: fillColour(value, config.tehsilClasses),
        fillOpacity: value ? 0.6 : 0.2 };
    }
    function tehsilPopup(feature) {
      var p = feature.properties, totals = config.tehsilTotals[feature.id] || {};
      var unplaced = config.unplaced[p.district] || 0, district = districtName(p.district);
      var note = unplaced ? n(unplaced) + (unplaced === 1 ? " matching event" : " matching events") + " in " +
        district + (unplaced === 1 ? " is" : " are") + " known only to the district and in no tehsil's count."
        : "Attacks known only to their district are in no tehsil's count; " + district + " has none under these filters.";
      return el("div", { class: "kpmap-popup" }, [
        el("h3", { text: p.name }),
        table([
          ["District", district],
          ["P-code", p.pcode],
          ["Former Frontier Region", p.former_frontier_region ? "yes: " + (p.frontier_region || "unnamed") +
            " (merged into KP in 2018)" : "no"],
          ["Attacks (filters)", n(totals.attacks || 0)],
          ["Killed (filters)", n(totals.killed || 0)],
          ["Injured (filters)", n(totals.injured || 0)],
          ["Area", n(Math.round(p.area_km2)) + " km²"],
        ]),
        el("p", { class: "kpmap-small", text: note }),
        el("div", { class: "kpmap-popup-source", text: "Boundary: " + (p.source || "") }),
      ]);
    }
    var tehsilLayer = L.geoJSON(null, {
      pane: "kpmapTehsils",
      style: tehsilStyle,
      onEachFeature: function (feature, shape) {
        shape.bindPopup(function () { return tehsilPopup(feature); }, { maxWidth: 360 });
        shape.bindTooltip(function () {
          return el("span", { text: feature.properties.name + " (" + districtName(feature.properties.district) +
            "): " + n(metricValue(config.tehsilTotals[feature.id])) + " " + config.metricLabel });
        }, { sticky: true });
        shape.on("mouseover", function () { shape.setStyle({ weight: 2.5, color: "#222" }); shape.bringToFront(); });
        shape.on("mouseout", function () { tehsilLayer.resetStyle(shape); });
      },
    });
    var syncTehsils = followZoom(config.urls.tehsils, "outlines", function (geojson) {
      tehsilLayer.clearLayers();
      tehsilLayer.addData(geojson);
      if (!layers.tehsils.hasLayer(tehsilLayer)) tehsilLayer.addTo(layers.tehsils);
      stats.tehsils = tehsilLayer.getLayers().length;
    }, tehsilsShown);
    function tehsilsToggled() {
      var shown = tehsilsShown();
      if (shown) syncTehsils().catch(showError); // loaded when first shown, then at each zoom
      if (districtLayer) districtLayer.eachLayer(function (shape) { districtLayer.resetStyle(shape); });
      // district-only outlines keep their dashed edge but lose their fill, which would catch
      // every click meant for the tehsils beneath
      districtOnly.eachLayer(function (outline) { outline.setStyle({ fill: !shown }); });
      var legend = document.getElementById("kpmap-legend-tehsils");
      if (legend) legend.hidden = !shown;
    }
    layers.tehsils.on("add remove", tehsilsToggled);
    if (tehsilsShown()) syncTehsils().catch(showError);

    /* The Durand Line: a cased, dashed line unlike any district edge; the KP stretch bolder. */
    function borderPopup(feature) {
      var p = feature.properties;
      var fence = (p.fence || []).map(function (f) {
        var text = f.label + ": " + f.value + (f.as_of ? " (as of " + dateText(f.as_of) + ")" : "");
        if (f.note) text += ". " + f.note;
        return el("li", {}, [text, el("ul", {}, [sourceItem(f.citation)])]);
      });
      return el("div", { class: "kpmap-popup" }, [
        el("h3", { text: p.name }),
        table([
          ["Borders", p.province],
          ["Measured length", n(p.measured_length_km) + " km (whole line " + n(p.measured_total_km) + " km)"],
          ["Reported length", n(p.reported_length_km) + " km"],
        ]),
        el("p", { class: "kpmap-small", text: p.length_note || "" }),
        el("ul", {}, [sourceItem(p.reported_length_source)]),
        fence.length ? el("div", {}, [el("strong", { text: "The fence, as reported" }), el("ul", {}, fence)]) : null,
        el("div", { class: "kpmap-popup-source", text: "Line: " + (p.source || "") }),
      ]);
    }
    function isKP(feature) { return feature.properties.province === "Khyber Pakhtunkhwa"; }
    var casing = L.geoJSON(null, { interactive: false, style: function (f) {
      return { color: "#ffffff", weight: isKP(f) ? 8 : 6, opacity: 0.9 };
    } });
    var line = L.geoJSON(null, {
      style: function (f) {
        return { color: "#6a0dad", weight: isKP(f) ? 4 : 2.5, opacity: 1, dashArray: isKP(f) ? "12 4 2 4" : "6 5",
          lineCap: "butt" };
      },
      onEachFeature: function (feature, shape) {
        shape.bindPopup(function () { return borderPopup(feature); }, { maxWidth: 380 });
        shape.bindTooltip(function () { return el("span", { text: feature.properties.name }); }, { sticky: true });
      },
    });
    var borderDrawn = followZoom(config.urls.border, "border", function (geojson) {
      casing.clearLayers();
      casing.addData(geojson);
      line.clearLayers();
      line.addData(geojson);
      if (!layers.border.hasLayer(line)) {
        casing.addTo(layers.border);
        line.addTo(layers.border);
      }
      stats.border = line.getLayers().length;
      stats.ms.border = stats.ms.border || Math.round(performance.now());
    })();

    /* Bands along the border, loaded when first shown. */
    var bandsLoaded = false;
    function loadBands() {
      if (bandsLoaded) return;
      bandsLoaded = true;
      var shades = { 10: 0.35, 25: 0.22, 50: 0.12 };
      getJSON(config.urls.bands).then(function (geojson) {
        L.geoJSON(geojson, {
          pane: "kpmapBands",
          interactive: true,
          style: function (f) {
            return { stroke: false, fillColor: "#6a0dad", fillOpacity: shades[f.properties.max_km] || 0.1 };
          },
          onEachFeature: function (feature, shape) {
            shape.bindTooltip(function () {
              return el("span", { text: feature.properties.label + " from the Durand Line (Pakistani side)" });
            }, { sticky: true });
          },
        }).addTo(layers.bands);
        stats.bands = geojson.features.length;
      }).catch(showError);
    }
    layers.bands.on("add", loadBands);
    if (map.hasLayer(layers.bands)) loadBands();

    /* Attacks: circle markers (colour: group, size: killed), clustered, a heat map, and dashed
       district outlines for attacks known only to their district. Up to config.clientLimit
       attacks are loaded at once and clustered here (Leaflet.markercluster); beyond that the
       server aggregates them on a grid for the current view (see app/mapdata.py, clusters). */
    var districtOnly = L.featureGroup().addTo(layers.attacks);

    function radius(killed) { return killed > 0 ? Math.min(5 + 2.2 * Math.sqrt(killed), 24) : 5; }

    function records(cols) { // compact columns (app/mapdata.py, compact_attacks) -> records
      var out = [];
      for (var i = 0; i < cols.count; i++) {
        out.push({ id: cols.id[i], lat: cols.lat[i], lon: cols.lon[i], actor: cols.actors[cols.actor[i]],
          category: cols.categories[cols.category[i]],
          district: cols.districts[cols.district[i]], killed: cols.killed[i], precision: cols.precision[i],
          start: cols.start[i], end: cols.end[i] });
      }
      return out;
    }

    function attackPopup(props) {
      var sources = (props.sources || []).map(sourceItem);
      return el("div", { class: "kpmap-popup" }, [
        el("h3", { text: props.location + ", " + districtName(props.district) }),
        table([
          ["Date", whenText(props)],
          ["Category", props.category || "militant attack"],
          ["Perpetrator", actorName(props.actor)],
          ["Parties", (props.parties || []).map(function (p) { return p.name; }).join(" v ") || "—"],
          ["Deaths by side", deathsText(props.deaths)],
          ["District (source)", props.district_reported || "—"],
          ["Claimed", props.claimed === true ? "yes" : props.claimed === false ? "no" : "not reported"],
          ["Type", props.event_type],
          ["Target", props.target],
          ["Killed", range(props.killed_low, props.killed_best, props.killed_high)],
          ["Injured", range(props.injured_low, null, props.injured_high)],
          ["To the border", n(props.distance_to_border_km) + " km"],
          ["Located to", PRECISION[props.geo_precision] || String(props.geo_precision)],
        ]),
        el("p", { class: "kpmap-popup-description", text: props.description }),
        (props.flags || []).length ? el("ul", { class: "kpmap-popup-flags" },
          props.flags.map(function (flag) { return el("li", { text: flag }); })) : el("span", {}),
        el("strong", { text: "Sources" }),
        el("ul", {}, sources),
      ]);
    }

    function deathsText(deaths) {
      if (!deaths) return "not given by side";
      var labels = { side_a: "side A", side_b: "side B", civilians: "civilians", unknown: "unknown" };
      return Object.keys(labels).filter(function (k) { return deaths[k] !== null && deaths[k] !== undefined; })
        .map(function (k) { return labels[k] + " " + n(deaths[k]); }).join(", ") || "not given by side";
    }

    function openAttack(record, latlng) {
      var popup = L.popup({ maxWidth: 380 }).setLatLng(latlng)
        .setContent(el("div", { text: "Loading…" })).openOn(map);
      getJSON(config.urls.attack + encodeURIComponent(record.id) + ".json").then(function (feature) {
        popup.setContent(attackPopup(feature.properties));
      }).catch(function (error) { popup.setContent(el("div", { text: error.message })); });
    }

    function makeMarker(record) {
      var approximate = record.precision === 2, colour = markColour(record);
      var marker = isAttack(record.category) ? L.circleMarker([record.lat, record.lon], {
        radius: radius(record.killed), color: approximate ? colour : "#222", weight: approximate ? 2 : 1,
        dashArray: approximate ? "3 3" : null, fillColor: colour, fillOpacity: approximate ? 0.35 : 0.8,
      }) : L.circleMarker([record.lat, record.lon], { // a ring: no perpetrator to colour it by
        radius: radius(record.killed), color: colour, weight: 3, dashArray: approximate ? "3 3" : null,
        fillColor: "#fff", fillOpacity: 0.6,
      });
      marker.kpRecord = record;
      return marker;
    }

    function spanText(record) {
      return dayText(record.start) + (record.end !== record.start ? " – " + dayText(record.end) : "");
    }

    /* groups: district id -> {count, sample: records, withheld: how many are not listed} */
    function drawDistrictOnly(groups) {
      districtOnly.clearLayers();
      var drawn = 0;
      Object.keys(groups).forEach(function (id) {
        var shape = districtShapes[id], count = groups[id].count, list = groups[id].sample;
        var withheld = groups[id].withheld || 0;
        if (!shape || !count) return;
        var same = list.length > 0 && !withheld && list.every(function (r) { return r.actor === list[0].actor; });
        var outline = L.polygon(shape.getLatLngs(), { color: same ? actorColour(list[0].actor) : "#333",
          weight: 3, dashArray: "8 6", fill: !tehsilsShown(), fillOpacity: 0.04, fillColor: "#000" });
        var label = n(count) + (count === 1 ? " event" : " events") + " located only to " + districtName(id);
        outline.bindTooltip(function () { return el("span", { text: label }); }, { sticky: true });
        outline.bindPopup(function () {
          var items = list.map(function (record) {
            var button = el("button", { type: "button", class: "kpmap-link-button",
              text: spanText(record) + ": " + actorName(record.actor) + ", " +
                (record.killed >= 0 ? n(record.killed) + " killed" : "killed not reported") });
            button.addEventListener("click", function () { openAttack(record, outline.getCenter()); });
            return el("li", {}, [button]);
          });
          if (count - withheld > list.length) items.push(el("li", { text: "and " + n(count - withheld - list.length) + " more" }));
          if (withheld) items.push(el("li", { text: n(withheld) + " from datasets whose terms let this map only count them" }));
          return el("div", { class: "kpmap-popup" }, [el("h3", { text: label }),
            el("p", { class: "kpmap-small", text: "Their sources give no place finer than the district." }),
            el("ul", {}, items)]);
        }, { maxWidth: 380 });
        outline.addTo(districtOnly);
        drawn += count;
      });
      stats.districtOnly = drawn;
    }

    function groupByDistrict(list) {
      var groups = {};
      list.forEach(function (record) {
        var group = groups[record.district] = groups[record.district] || { count: 0, sample: [] };
        group.count += 1;
        if (group.sample.length < 50) group.sample.push(record);
      });
      return groups;
    }

    function overlaps(record, w) { return record.start <= w[1] && record.end >= w[0]; }

    /* All matching attacks in the browser, clustered by Leaflet.markercluster. */
    function clientAttacks() {
      var loaded = getJSON(config.urls.attacks + (config.query ? "?" + config.query : ""));
      return Promise.all([loaded, districtsDrawn]).then(function (results) {
        var cols = results[0];
        stats.ms.attacksLoaded = Math.round(performance.now());
        var all = records(cols);
        all.forEach(function (record) { if (record.precision !== 3) record.marker = makeMarker(record); });
        layers.clusters.on("click", function (e) {
          if (e.layer && e.layer.kpRecord) openAttack(e.layer.kpRecord, e.layer.getLatLng());
        });

        function draw(chosen) { // resolves once the clusters are built (they are built in chunks)
          var markers = [], vague = [];
          chosen.forEach(function (r) { if (r.precision === 3) vague.push(r); else markers.push(r.marker); });
          drawDistrictOnly(groupByDistrict(vague));
          layers.heat.setLatLngs(chosen.map(function (r) { return [r.lat, r.lon]; }));
          stats.heatPoints = chosen.length;
          stats.markers = markers.length;
          stats.draws = (stats.draws || 0) + 1;
          layers.clusters.clearLayers();
          return new Promise(function (resolve) {
            if (!markers.length || !map.hasLayer(layers.clusters)) {
              layers.clusters.addLayers(markers);
              resolve(chosen.length);
              return;
            }
            layers.clusters.options.chunkProgress = function (done, total) {
              if (done >= total) resolve(chosen.length);
            };
            layers.clusters.addLayers(markers);
          });
        }
        // One set at a time: a set asked for while the clusters are still being built (the
        // slider moved on) is drawn next, so no stale chunk lands after it.
        var drawing = null, queued = null;
        function next() {
          var chosen = queued;
          queued = null;
          return draw(chosen).then(function (count) {
            if (queued) return next();
            drawing = null;
            return count;
          });
        }
        return {
          show: function (w) {
            queued = w ? all.filter(function (r) { return overlaps(r, w); }) : all;
            if (!drawing) drawing = next();
            return drawing;
          },
        };
      });
    }

    /* More attacks than a browser clusters quickly: the server grids them for the view. */
    function serverAttacks() {
      var group = L.layerGroup().addTo(layers.attacks), timeWindow = null, sequence = 0;
      function url() {
        var params = new URLSearchParams(config.query), b = map.getBounds().pad(0.25);
        params.set("z", String(map.getZoom()));
        params.set("view", [Math.max(b.getWest(), -180), Math.max(b.getSouth(), -85), Math.min(b.getEast(), 180),
          Math.min(b.getNorth(), 85)].map(function (v) { return v.toFixed(4); }).join(","));
        if (timeWindow) params.set("window", timeWindow[0] + "," + timeWindow[1]);
        if (map.hasLayer(layers.heat)) params.set("heat", "1");
        return config.urls.clusters + "?" + params.toString();
      }
      function cellIcon(count) {
        var size = count < 100 ? "small" : count < 1000 ? "medium" : "large";
        return L.divIcon({ html: "<div><span>" + n(count) + "</span></div>",
          className: "marker-cluster marker-cluster-" + size, iconSize: L.point(40, 40) });
      }
      function draw(answer) {
        group.clearLayers();
        var cells = answer.cells;
        for (var i = 0; i < cells.count.length; i++) {
          (function (latlng, count, killed, actor) {
            var marker = L.marker(latlng, { icon: cellIcon(count), keyboard: false });
            marker.bindTooltip(function () {
              return el("span", { text: n(count) + " events, " + n(killed) + " killed; most by " + actorName(actor) +
                ". Click to zoom in." });
            });
            marker.on("click", function () { map.setView(latlng, Math.min(map.getZoom() + 2, map.getMaxZoom())); });
            marker.addTo(group);
          })([cells.lat[i], cells.lon[i]], cells.count[i], cells.killed[i], answer.actors[cells.actor[i]]);
        }
        var points = records(answer.points);
        points.forEach(function (record) {
          var marker = makeMarker(record);
          marker.on("click", function () { openAttack(record, marker.getLatLng()); });
          marker.addTo(group);
        });
        var groups = {};
        Object.keys(answer.district_only).forEach(function (id) {
          groups[id] = { count: answer.district_only[id].count, withheld: answer.district_only[id].withheld,
            sample: records(answer.district_only[id].sample) };
        });
        drawDistrictOnly(groups);
        if (answer.heat) {
          var h = answer.heat, max = 1, latlngs = [];
          for (var j = 0; j < h.count.length; j++) {
            latlngs.push([h.lat[j], h.lon[j], h.count[j]]);
            max = Math.max(max, h.count[j]);
          }
          layers.heat.setOptions({ max: max });
          layers.heat.setLatLngs(latlngs);
          stats.heatPoints = latlngs.length;
        }
        stats.cells = cells.count.length;
        stats.markers = points.length;
        stats.draws = (stats.draws || 0) + 1;
      }
      var latest = null;
      function refresh() {
        var mine = ++sequence;
        // outlines of district-only attacks need the districts' shapes: draw once they are in
        latest = Promise.all([getJSON(url()), districtsDrawn]).then(function (results) {
          // An answer overtaken by a newer view is dropped, and this settles with the newer one,
          // so whoever waits (the page's "ready") waits for what is actually drawn.
          if (mine !== sequence) return latest;
          draw(results[0]);
          return results[0].count;
        });
        return latest;
      }
      map.on("moveend", function () { refresh().catch(showError); });
      map.on("overlayadd", function (e) { if (e.layer === layers.heat) refresh().catch(showError); });
      return Promise.resolve({
        show: function (w) {
          timeWindow = w;
          return refresh().then(function (count) {
            stats.ms.attacksLoaded = stats.ms.attacksLoaded || Math.round(performance.now());
            return count;
          });
        },
      });
    }

    // Asked for at once, alongside the districts (which they are drawn after).
    // Attacks whose records must stay on the server (config.aggregateOnly, see app/maps.py) are
    // only ever sent as clusters, so the page then lets the server cluster every view.
    var serverSide = config.count > config.clientLimit || config.aggregateOnly;
    var attacksDrawn = (serverSide ? serverAttacks() : clientAttacks()).then(function (source) {
      addTimeline(source);
      return source.show(null);
    });

    /* Time: a slider over the months of the matching attacks; play steps through them. */
    function addTimeline(source) {
      if (!config.timeRange) return;
      var first = config.timeRange[0], last = config.timeRange[1];
      var firstMonth = monthOf(first), lastMonth = monthOf(last), timer = null;
      var control = L.control({ position: "bottomleft" });
      control.onAdd = function () {
        var play = el("button", { type: "button", class: "kpmap-button", title: "Play through time",
          "aria-label": "Play through time", text: "▶" });
        var slider = el("input", { type: "range", min: String(firstMonth), max: String(lastMonth),
          value: String(lastMonth), "aria-label": "Month shown" });
        var allButton = el("button", { type: "button", class: "kpmap-button", text: "All dates" });
        var label = el("span", { class: "kpmap-timeline-label" });
        var allText = "All dates: " + dayText(first) + " – " + dayText(last) + " (" + n(config.count) + ")";
        function showAll() {
          label.textContent = allText;
          return source.show(null);
        }
        function showMonth(month) {
          label.textContent = monthText(month) + ": …";
          return source.show(monthBounds(month)).then(function (count) {
            if (Number(slider.value) !== month) return;
            label.textContent = monthText(month) + ": " + n(count) + (count === 1 ? " event" : " events");
          }).catch(showError);
        }
        function stop() { if (timer) { clearInterval(timer); timer = null; play.textContent = "▶"; } }
        slider.addEventListener("input", function () { stop(); showMonth(Number(slider.value)); });
        allButton.addEventListener("click", function () { stop(); slider.value = String(lastMonth); showAll(); });
        play.addEventListener("click", function () {
          if (timer) { stop(); return; }
          var month = Number(slider.value) >= lastMonth ? firstMonth : Number(slider.value) + 1;
          play.textContent = "❚❚";
          slider.value = String(month);
          showMonth(month);
          timer = setInterval(function () {
            if (Number(slider.value) >= lastMonth) { stop(); return; }
            slider.value = String(Number(slider.value) + 1);
            showMonth(Number(slider.value));
          }, 900);
        });
        label.textContent = allText;
        var box = el("div", { class: "kpmap-timeline leaflet-bar" }, [play, slider, allButton, label]);
        L.DomEvent.disableClickPropagation(box);
        L.DomEvent.disableScrollPropagation(box);
        return box;
      };
      control.addTo(map);
    }

    /* Share / embed: the link and the <iframe> snippet follow the view. */
    function layerKeys() {
      var names = { districts: "districts", tehsils: "tehsils", border: "durand_line", attacks: "attacks", heat: "heat",
        bands: "bands" };
      return Object.keys(names).filter(function (key) { return map.hasLayer(layers[key]); })
        .map(function (key) { return names[key]; });
    }
    function viewQuery() {
      var params = new URLSearchParams(config.query);
      if (config.metric !== "attacks") params.set("metric", config.metric);
      var keys = layerKeys().join(",");
      if (keys !== "districts,durand_line,attacks") params.set("layers", keys || "none");
      var c = map.getCenter();
      params.set("center", c.lat.toFixed(4) + "," + c.lng.toFixed(4));
      params.set("zoom", String(map.getZoom()));
      return params;
    }
    function updateShare() {
      var params = viewQuery(), origin = window.location.origin;
      var link = document.getElementById("kpmap-share-link");
      var snippet = document.getElementById("kpmap-share-iframe");
      if (link) link.value = origin + config.urls.page + "?" + params.toString();
      if (snippet) {
        var src = origin + config.urls.embed + "?" + params.toString();
        snippet.value = '<iframe src="' + src.replace(/&/g, "&amp;").replace(/"/g, "&quot;") +
          '" width="100%" height="480" style="border:0" loading="lazy" ' +
          'title="kpmap: attacks in Khyber Pakhtunkhwa"></iframe>';
      }
      var form = document.getElementById("kpmap-filters");
      if (form) {
        form.elements.center.value = params.get("center");
        form.elements.zoom.value = params.get("zoom");
        form.elements.layers.value = params.get("layers") || "";
      }
    }
    map.on("moveend overlayadd overlayremove", updateShare);

    Promise.all([districtsDrawn, borderDrawn, attacksDrawn]).then(function () {
      layers.border.bringToFront && layers.border.bringToFront();
      updateShare();
      stats.ms.ready = Math.round(performance.now());
      window.kpmapReady = true;
      document.documentElement.setAttribute("data-kpmap-ready", "true");
    }).catch(showError);
  }

  /* The legend (rendered, escaped, by the server) becomes a map control. */
  function addLegend(map) {
    var legend = document.getElementById("kpmap-legend");
    if (!legend) return;
    var control = L.control({ position: "bottomright" });
    control.onAdd = function () {
      L.DomEvent.disableScrollPropagation(legend);
      return legend;
    };
    control.addTo(map);
  }

  /* The filter form: copy buttons, and empty fields left out of the URL. */
  function setUpPage() {
    var form = document.getElementById("kpmap-filters");
    if (form) {
      form.addEventListener("submit", function () {
        Array.prototype.forEach.call(form.elements, function (field) {
          if (field.name && field.type !== "checkbox" && field.type !== "select-multiple" && !field.value) {
            field.disabled = true;
          }
        });
      });
    }
    Array.prototype.forEach.call(document.querySelectorAll("[data-kpmap-copy]"), function (button) {
      button.addEventListener("click", function () {
        var target = document.getElementById(button.getAttribute("data-kpmap-copy"));
        target.select();
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(target.value).catch(function () { document.execCommand("copy"); });
        } else {
          document.execCommand("copy");
        }
        button.textContent = "Copied";
      });
    });
  }
  document.addEventListener("DOMContentLoaded", setUpPage);

  window.kpmap = { start: start, fetchEarly: fetchEarly };
})();
