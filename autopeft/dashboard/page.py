"""The dashboard page: the plot data drawn (figures, tables) as one JSON payload, and the HTML around it.

The same page serves both uses. Written to a file (`--html`, and the search's dashboard.html) it
inlines plotly.js and the payload, so it opens offline. Served (`autopeft dashboard RUN`) it loads
plotly.js from the server and polls it for a new payload whenever a run's files change.

After each drawing, the page writes what it drew into `#render-report` (points drawn in the SVG,
markers in the data, when each plot was done): the browser test reads it.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from plotly.utils import PlotlyJSONEncoder

from autopeft.dashboard.data import DashboardData, RunPlot, Unfinished
from autopeft.dashboard.figures import figures
from autopeft.files import write_atomically

POLL_SECONDS = 2.0
WEBGL_TRACES = frozenset({"scatter3d", "parcoords"})  # drawn when scrolled near: slow to start without a GPU


def _table_html(run: RunPlot, single: bool) -> str:
    if not run.table:
        return ""
    head = "" if single else f" of {html.escape(run.name)}"
    rows = []
    for r in run.table:
        pct = f"{r.trainable_pct:.3f}%" if r.trainable_pct is not None else ""
        rows.append(
            f"<tr><td>{r.trial}</td><td>{r.accuracy:.4f}</td><td>{r.trainable_params:,}</td><td>{pct}</td>"
            f"<td>{r.peak_memory_mib:,.1f}</td><td>{html.escape(r.configuration)}</td>"
            f"<td><code>{html.escape(r.export_command)}</code></td></tr>")
    return (f"<h3>Pareto set{head} ({len(run.table)} trials, most accurate first)</h3>"
            "<table class='front'><thead><tr><th>trial</th><th>accuracy</th><th>trainable params</th>"
            "<th>% of model</th><th>peak memory (MiB)</th><th>configuration</th><th>export it</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _unfinished_html(run: RunPlot, what: str, trials: Unfinished, single: bool) -> str:
    if not len(trials):
        return ""
    head = "" if single else f" of {html.escape(run.name)}"
    why = "<th>reason</th>" if what == "failed" else ""
    rows = "".join(
        f"<tr><td>{t}</td>" + (f"<td>{html.escape(reason)}</td>" if what == "failed" else "")
        + f"<td>{html.escape(conf)}</td></tr>"
        for t, conf, reason in zip(trials.trials, trials.configurations, trials.reasons, strict=True))
    # Folded away once there is a front to look at; open while these trials are all there is.
    fold = "" if run.completed else " open"
    return (f"<details{fold}><summary>{what.capitalize()} trials{head} ({len(trials)})</summary>"
            f"<table class='{what}'><thead><tr><th>trial</th>{why}<th>configuration</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></details>")


def payload(data: DashboardData, version: str = "static", live: bool = False) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data."""
    single = len(data.runs) == 1
    counts = f"{data.completed} completed, {data.failed} failed"
    if data.running:
        counts += f", {data.running} running"
    subtitle = counts if single else counts + " — " + "; ".join(f"{r.name}: {r.title}" for r in data.runs)
    drawn = []
    for f in figures(data):
        # uirevision keeps the reader's zoom, rotation and legend choices across live refreshes.
        f.figure.update_layout(uirevision="keep")
        lazy = any(trace.type in WEBGL_TRACES for trace in f.figure.data)
        drawn.append({"id": f.id, "heading": f.heading, "lazy": lazy, "figure": f.figure.to_plotly_json()})
    tables = "".join(_table_html(r, single) for r in data.runs)
    tables += "".join(_unfinished_html(r, "running", r.running, single) for r in data.runs)
    tables += "".join(_unfinished_html(r, "failed", r.failed, single) for r in data.runs)
    return {
        "version": version,
        "live": live,
        "title": data.title,
        "subtitle": subtitle,
        "message": data.message,
        "notes": [n for r in data.runs for n in r.notes] if not data.message else [],
        "figures": drawn,
        "tables": tables,
    }


def payload_json(data: DashboardData, version: str = "static", live: bool = False) -> str:
    return json.dumps(payload(data, version, live), cls=PlotlyJSONEncoder, separators=(",", ":"))


def _script_safe(text: str) -> str:
    """JSON or JS inside a <script> element must not contain the sequence that closes the element."""
    return text.replace("</", "<\\/")


def page_html(payload_text: str, plotly_js: str | None) -> str:
    """The page; `plotly_js` None loads plotly.js from the serving dashboard instead of inlining it."""
    script = f"<script>{_script_safe(plotly_js)}</script>" if plotly_js is not None else \
        "<script src='plotly.min.js'></script>"
    return (_TEMPLATE.replace("{{PLOTLY}}", script)
            .replace("{{PAYLOAD}}", _script_safe(payload_text))
            .replace("{{POLL_MS}}", str(int(POLL_SECONDS * 1000))))


def write_static_html(data: DashboardData, path: Path) -> None:
    """One self-contained file (plotly.js inlined); written beside and renamed, so readers never see half."""
    from plotly.offline import get_plotlyjs

    text = page_html(payload_json(data), get_plotlyjs())
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>autopeft dashboard</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.2em 2em; color: #222; }
  h1 { font-size: 1.4em; margin-bottom: 0.1em; }
  #subtitle { color: #555; margin-top: 0; }
  #status { float: right; color: #777; font-size: 0.85em; }
  #message { white-space: pre-line; font-size: 1.3em; padding: 2em; background: #f4f6f8; border-radius: 6px;
             margin: 1em 0; }
  #notes li { color: #8a5300; }
  #details { position: sticky; top: 0; background: #fffbe6; border: 1px solid #e6d98c; padding: 0.6em 1em;
             margin: 0.8em 0; border-radius: 4px; z-index: 10; }
  #details code, table code { font-size: 0.85em; background: #f4f4f4; padding: 0 0.2em; }
  table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
  th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
  table.front td:nth-child(-n+5) { text-align: right; white-space: nowrap; }
  summary { font-weight: bold; margin: 0.8em 0 0.3em; cursor: pointer; }
  #render-report { display: none; }
</style>
{{PLOTLY}}
<script>window.plotlyReadyMs = performance.now();</script>
</head>
<body>
<div id="status"></div>
<h1 id="title"></h1>
<p id="subtitle"></p>
<ul id="notes"></ul>
<div id="message" hidden></div>
<div id="details" hidden></div>
<div id="figures"><div id="tables"></div></div>
<pre id="render-report"></pre>
<script type="application/json" id="payload">{{PAYLOAD}}</script>
<script>
"use strict";
const POLL_MS = {{POLL_MS}};
let version = null;

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                                                 "'": "&#39;"}[c]));
}

function showDetails(point) {
  // Hover texts are built (and escaped) by autopeft; the export command is plain text.
  const box = document.getElementById("details");
  let body = point.hovertext || point.text || "";  // baselines: text is the label, hovertext the details
  if (point.customdata) body += "<br>export it: <code>" + escapeHtml(point.customdata) + "</code>";
  box.innerHTML = body;
  box.hidden = !body;
}

function countMarkers(trace) {
  return trace.mode && trace.mode.includes("markers") && trace.x ? trace.x.length : 0;
}

// What the page drew, for the browser test and for anyone curious: points in the SVG against
// markers in the data, per plot, and when each plot was done (ms since navigation started).
function report() {
  // plotly_ready_ms: when plotly.js had loaded and compiled (its 4.8 MB are most of a first draw's time).
  const out = {version: version, plotly_ready_ms: Math.round(window.plotlyReadyMs || -1), figures: {}};
  for (const div of document.querySelectorAll("#figures .plot")) {
    const entry = {drawn: div.dataset.drawn === version, lazy: div.dataset.lazy === "1",
                   done_ms: Number(div.dataset.doneMs || -1), render_ms: Number(div.dataset.renderMs || -1),
                   traces: 0, svg_points: div.querySelectorAll(".scatterlayer path.point").length, markers: 0,
                   markers_3d: 0, parcoords_lines: 0, parcoords_axes: 0, webgl: div.querySelector("canvas") !== null};
    for (const t of div.data || []) {
      entry.traces += 1;
      if (t.type === "scatter3d") entry.markers_3d += countMarkers(t);
      else if (t.type === "parcoords") {
        entry.parcoords_lines += t.dimensions[0].values.length;
        entry.parcoords_axes = div.querySelectorAll(".y-axis").length;
      } else entry.markers += countMarkers(t);
    }
    out.figures[div.id.replace(/^fig-/, "")] = entry;
  }
  out.all_drawn = Object.values(out.figures).every(f => f.drawn);
  document.getElementById("render-report").textContent = JSON.stringify(out);
  document.documentElement.dataset.allDrawn = String(out.all_drawn);
}

const specs = new Map();  // plot element id -> its latest figure

async function draw(div) {
  const f = specs.get(div.id);
  if (!f || div.dataset.drawn === version) return;
  const started = performance.now();
  await Plotly.react(div, f.figure.data, f.figure.layout, {responsive: true, displaylogo: false});
  div.dataset.renderMs = String(Math.round(performance.now() - started));
  div.dataset.doneMs = String(Math.round(performance.now()));
  div.dataset.drawn = version;
  if (!div.dataset.clicks) { div.on("plotly_click", e => showDetails(e.points[0])); div.dataset.clicks = "1"; }
  report();
}

// WebGL plots (3-D, parallel coordinates) are slow to start where there is no GPU: they are drawn
// when scrolled near, so that the fronts, the table and the progress plot appear at once.
const nearby = new IntersectionObserver(entries => {
  for (const e of entries) {
    e.target.dataset.near = e.isIntersecting ? "1" : "";
    if (e.isIntersecting) draw(e.target);
  }
}, {rootMargin: "300px"});

async function render(p) {
  version = p.version;
  document.title = p.title;
  document.getElementById("title").textContent = p.title;
  document.getElementById("subtitle").textContent = p.subtitle;
  document.getElementById("notes").innerHTML = p.notes.map(n => "<li>" + escapeHtml(n) + "</li>").join("");
  const message = document.getElementById("message");
  message.textContent = p.message || "";
  message.hidden = !p.message;
  const holder = document.getElementById("figures");
  const wanted = new Set(p.figures.map(f => "fig-" + f.id));
  for (const section of [...holder.querySelectorAll("section[data-plot]")]) {
    if (!wanted.has(section.dataset.plot)) {
      const old = section.querySelector(".plot");
      nearby.unobserve(old); specs.delete(old.id); Plotly.purge(old); section.remove();
    }
  }
  // The Pareto table (with the export commands) goes right under the first plot, the fronts.
  const tables = document.getElementById("tables");
  tables.innerHTML = p.tables;
  const eager = [];
  for (const f of p.figures) {
    let div = document.getElementById("fig-" + f.id);
    if (!div) {
      const section = document.createElement("section");
      section.dataset.plot = "fig-" + f.id;
      section.innerHTML = "<h2></h2>";
      section.querySelector("h2").textContent = f.heading;
      div = document.createElement("div");
      div.id = "fig-" + f.id;
      div.className = "plot";
      div.dataset.lazy = f.lazy ? "1" : "";
      div.style.minHeight = (f.figure.layout.height || 450) + "px";
      section.appendChild(div);
      holder.appendChild(section);
      if (f.lazy) nearby.observe(div);
    }
    specs.set(div.id, f);
    if (!f.lazy || div.dataset.near === "1") eager.push(div);
  }
  const firstPlot = holder.querySelector("section[data-plot]");
  holder.insertBefore(tables, firstPlot ? firstPlot.nextSibling : null);
  for (const div of eager) await draw(div);
  report();
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const now = await (await fetch("api/version", {cache: "no-store"})).json();
    if (now.version !== version) await render(await (await fetch("api/dashboard", {cache: "no-store"})).json());
    status.textContent = "live: checked " + new Date().toLocaleTimeString();
  } catch (err) {
    status.textContent = "live updates paused: the dashboard server is not answering";
  }
}

const first = JSON.parse(document.getElementById("payload").textContent);
render(first).then(() => { if (first.live) setInterval(poll, POLL_MS); });
</script>
</body>
</html>
"""
