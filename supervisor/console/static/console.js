// The console's pages, kept up to date without reloading (docs/console.md).
//
// A page names its live stream (server-sent events), the fragment of itself to fetch again
// when actors change, and where its chart samples come from, in data-* attributes of <body>.
// Everything shown from the server's data goes through textContent or setAttribute, or is a
// fragment the server rendered with its own escaping: nothing here builds HTML from data.
"use strict";

(function () {
  const body = document.body;
  const RING = 150;

  // ---- the part of the page that lists actors, fetched again when they change ----
  let busy = false;
  let again = false;
  async function refresh() {
    if (!body.dataset.fragment) return;
    if (busy) { again = true; return; }
    busy = true;
    try {
      do {
        again = false;
        const r = await fetch(body.dataset.fragment, { credentials: "same-origin" });
        const target = document.getElementById(body.dataset.target);
        if (r.ok) {
          target.innerHTML = await r.text();      // rendered (and escaped) by the server's templates
        } else if (r.status === 404) {
          const status = document.getElementById("status");
          if (status) status.textContent = "stopped (no longer running; its chain stays)";
          target.classList.add("gone");
          return;
        }
      } while (again);
    } catch (e) {
      // the server is away; the stream reconnects and the next change fetches again
    } finally {
      busy = false;
    }
  }

  // ---- small charts of memory, CPU and events/s ----
  const charts = [];
  document.querySelectorAll("figure.chart").forEach((fig) => {
    charts.push({ fig: fig, metric: fig.dataset.metric, points: [] });
  });

  function shown(metric, v) {
    if (v === null || v === undefined) return "–";
    if (metric === "rss") return (v / 1048576).toFixed(1) + " MiB";
    if (metric === "cpu_percent") return v.toFixed(1) + " %";
    return v.toFixed(1) + "/s";
  }

  function draw(c) {
    const known = c.points.filter((p) => p[1] !== null && p[1] !== undefined);
    const line = c.fig.querySelector("polyline");
    const label = c.fig.querySelector(".value");
    if (!known.length) { line.setAttribute("points", ""); return; }
    const last = known[known.length - 1][0];
    const span = 300;                                   // seconds across the chart
    const top = Math.max(...known.map((p) => p[1]), c.metric === "cpu_percent" ? 5 : 1);
    line.setAttribute("points", known.map((p) =>
      ((p[0] - last + span) * 300 / span).toFixed(1) + "," + (58 - (p[1] / top) * 56).toFixed(1)).join(" "));
    label.textContent = shown(c.metric, known[known.length - 1][1]) + " (top " + shown(c.metric, top) + ")";
  }

  function addSample(p) {
    if (!p) return;
    for (const c of charts) {
      if (c.points.length && c.points[c.points.length - 1][0] >= p.t) continue;
      c.points.push([p.t, p[c.metric]]);
      if (c.points.length > RING) c.points.shift();
      draw(c);
    }
  }

  // ---- an actor's latest events, as they are stored ----
  function addEvents(d) {
    const tbody = document.querySelector("#latest tbody");
    if (!tbody) return;
    for (const ev of d.events) {
      if (document.getElementById("e" + ev.seq)) continue;
      const tr = document.createElement("tr");
      tr.id = "e" + ev.seq;
      tr.className = "new";
      const when = new Date(ev.time_ns / 1e6).toISOString().replace("T", " ");
      for (const text of [String(ev.seq), when, ev.type]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      const td = document.createElement("td");
      const code = document.createElement("code");
      code.className = "data";
      code.textContent = JSON.stringify(ev.body);
      td.appendChild(code);
      tr.appendChild(td);
      tbody.insertBefore(tr, tbody.firstChild);
    }
    while (tbody.rows.length > 50) tbody.deleteRow(-1);
    if (d.skipped) {
      const note = document.getElementById("skipped");
      note.hidden = false;
      note.textContent = "Events arrive faster than shown: " + d.skipped + " more were stored (the chain has them all).";
    }
  }

  // ---- the live stream ----
  function connect() {
    if (!body.dataset.stream) return;
    const live = document.getElementById("live");
    const es = new EventSource(body.dataset.stream);
    es.onopen = () => live.classList.add("on");
    es.onerror = () => live.classList.remove("on");
    es.addEventListener("actors", () => refresh());
    es.addEventListener("sample", (e) => addSample(JSON.parse(e.data)));
    es.addEventListener("events", (e) => addEvents(JSON.parse(e.data)));
    es.addEventListener("missed", () => refresh());
  }

  if (body.dataset.samples) {
    fetch(body.dataset.samples, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : { samples: [] }))
      .then((d) => d.samples.forEach(addSample))
      .catch(() => {})
      .finally(connect);
  } else {
    connect();
  }
})();
