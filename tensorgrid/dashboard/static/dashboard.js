// The tensorgrid dashboard: draws the master's snapshots (server-sent events from /api/events) as
// tables and SVG. No library, nothing fetched from outside the master.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
let selected = null;          // the step signature shown in the graph panel
let shownGraph = "";          // "signature@plan version" drawn now
let shownTrace = "";          // "signature@traced step" drawn now

function fmtBytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(Math.round(n))) + " " + units[i];
}

function fmtSeconds(s) {
  if (s < 1e-3) return (s * 1e6).toFixed(0) + " µs";
  if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 2 : 1) + " ms";
  return s.toFixed(2) + " s";
}

function fmtTime(t) { return new Date(t * 1000).toLocaleTimeString(); }

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fillRows(tbody, rows, width, emptyText) {
  tbody.replaceChildren();
  if (!rows.length) {
    const tr = tbody.insertRow();
    const td = cell(emptyText, "empty");
    td.colSpan = width;
    tr.appendChild(td);
    return;
  }
  for (const row of rows) {
    const tr = tbody.insertRow();
    for (const c of row) tr.appendChild(c instanceof Node ? c : cell(c));
  }
}

function svgEl(tag, attrs, parent) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function titled(e, text) { svgEl("title", {}, e).textContent = text; return e; }

function renderHeader(s) {
  $("master").textContent = "master " + s.master;
  const state = $("state");
  state.className = "state " + (s.live ? "live" : "recorded");
  state.textContent = s.live ? "live" : "recorded " + new Date(s.time * 1000).toLocaleString() + " (not live)";
  const t = s.totals;
  $("totals").textContent = `${t.started} steps started, ${t.finished} finished, ${t.failed} failed · ` +
    `${t.steps_per_s.toFixed(1)} steps/s`;
}

function renderWorkers(s) {
  const rows = s.workers.map((w) => {
    const health = document.createElement("td");
    const dot = document.createElement("span");
    const state = w.health !== "alive" ? "dead" : (w.reachable ? "alive" : "unreachable");
    dot.className = "dot " + state;
    health.append(dot, state === "dead" ? `dead: ${w.dead_reason}` : state);
    const cpu = document.createElement("td");
    if (w.reachable) {
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = Math.min(100, w.cpu_percent) * 0.6 + "px";
      cpu.append(bar, w.cpu_percent.toFixed(0) + "%");
    }
    const devices = w.devices.map((d) => d.name.split("/device:").pop() +
      (d.memory_bytes ? ` (${fmtBytes(d.memory_bytes)})` : "")).join(", ");
    return [w.name, w.address, health, devices, cpu, w.reachable ? fmtBytes(w.rss_bytes) : "",
      w.heartbeat_age_s.toFixed(1) + " s ago", w.reachable ? String(w.active_steps) : "",
      w.reachable ? String(w.registered_graphs) : "",
      w.reachable ? `${w.variables} (${fmtBytes(w.variable_bytes)})` : "",
      w.reachable ? String(w.run_graphs) : ""];
  });
  fillRows($("workers").tBodies[0], rows, 11, "no worker has registered yet");
}

function renderSessions(s) {
  fillRows($("sessions").tBodies[0], s.sessions.map((x) => [x.handle, String(x.nodes), String(x.plans),
    String(x.steps)]), 4, "no open session");
  fillRows($("running").tBodies[0], s.running.map((r) => [String(r.step_id || "(planning)"), r.session,
    r.label, fmtSeconds(r.seconds)]), 4, s.live ? "no step is running" : "(recorded)");
}

function percentile(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.round(p * (sorted.length - 1)))] : 0;
}

function renderLatency(s) {
  const svg = $("latency");
  svg.replaceChildren();
  const W = 640, H = 220, L = 52, B = 22, T = 8;
  const steps = s.steps;
  const ok = steps.filter((p) => !p[3]).map((p) => p[1]).sort((a, b) => a - b);
  $("latency-summary").textContent = ok.length ?
    `median ${fmtSeconds(percentile(ok, 0.5))}, p90 ${fmtSeconds(percentile(ok, 0.9))}, ` +
    `${steps.length} steps in the last ${Math.round(s.time - (steps.length ? steps[0][0] : s.time))} s` : "";
  if (!steps.length) {
    svgEl("text", {x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#9ca3af"}, svg).textContent =
      "no step has run yet";
    return;
  }
  const t1 = s.time, t0 = Math.min(steps[0][0], t1 - 10);
  const top = Math.max(percentile(ok.length ? ok : steps.map((p) => p[1]).sort((a, b) => a - b), 0.99) * 1.2, 1e-4);
  const x = (t) => L + (W - L - 8) * (t - t0) / Math.max(t1 - t0, 1e-9);
  const y = (v) => H - B - (H - B - T) * Math.min(v, top) / top;
  for (let i = 0; i <= 4; i++) {
    const v = top * i / 4;
    svgEl("line", {x1: L, x2: W - 8, y1: y(v), y2: y(v), stroke: "#e5e7eb"}, svg);
    svgEl("text", {x: L - 4, y: y(v) + 4, "text-anchor": "end", "font-size": 10, fill: "#6b7280"}, svg)
      .textContent = fmtSeconds(v);
  }
  svgEl("text", {x: L, y: H - 6, "font-size": 10, fill: "#6b7280"}, svg).textContent = fmtTime(t0);
  svgEl("text", {x: W - 8, y: H - 6, "font-size": 10, fill: "#6b7280", "text-anchor": "end"}, svg).textContent =
    fmtTime(t1);
  for (const [t, sec, sig, err] of steps) {
    const dot = svgEl("circle", {cx: x(t).toFixed(1), cy: y(sec).toFixed(1), r: err ? 3 : 1.8,
      fill: err ? "#dc2626" : (sig === selected ? "#2563eb" : "#93c5fd")}, svg);
    if (err) titled(dot, `${err} after ${fmtSeconds(sec)}`);
  }
}

function renderMatrix(s) {
  const table = $("matrix");
  table.replaceChildren();
  const m = s.matrix;
  if (!m.workers.length) return;
  let max = 0;
  for (const row of m.bytes) for (const v of row) max = Math.max(max, v);
  const head = table.createTHead().insertRow();
  head.appendChild(cell("from \\ to"));
  for (const w of m.workers) head.appendChild(cell(w));
  const body = table.createTBody();
  m.workers.forEach((from, i) => {
    const tr = body.insertRow();
    tr.appendChild(cell(from));
    m.workers.forEach((to, j) => {
      const v = m.bytes[i][j];
      const td = cell(i === j ? "–" : (v ? `${fmtBytes(v)} · ${fmtBytes(m.rate[i][j])}/s` : "0"), "cell");
      if (v && max) td.style.background = `rgba(37, 99, 235, ${(0.08 + 0.5 * Math.log1p(v) / Math.log1p(max)).toFixed(2)})`;
      tr.appendChild(td);
    });
  });
}

function renderErrors(s) {
  const tbody = $("errors").tBodies[0];
  fillRows(tbody, s.errors.map((e) => {
    const where = cell(e.location.split("/").pop());   // file:line; the full path on hover
    where.title = e.location;
    const device = cell(e.device.replace("/replica:0", "").replace("/device:", " "));
    device.title = e.device;
    return [fmtTime(e.time), e.error, e.node, device, where];
  }), 5, "no step has failed");
  // each error's message on a row of its own under it: the table stays narrow, the message whole
  Array.from(tbody.rows).forEach((row, i) => {
    if (i >= s.errors.length) return;
    const msg = document.createElement("tr");
    const td = cell(s.errors[i].message, "msg");
    td.colSpan = 5;
    msg.appendChild(td);
    row.after(msg);
  });
}

function renderSignatures(s) {
  const select = $("signature");
  const ids = s.signatures.map((g) => g.id);
  if (!selected || !ids.includes(selected)) {
    // the busiest signature: a training loop's step, not its one-off initializer
    const busiest = s.signatures.slice().sort((a, b) => b.steps - a.steps)[0];
    selected = busiest ? busiest.id : null;
  }
  const current = Array.from(select.options).map((o) => o.value).join("\n");
  if (current !== ids.join("\n")) {
    select.replaceChildren();
    for (const g of s.signatures) {
      const o = document.createElement("option");
      o.value = g.id;
      o.textContent = `${g.label} (${g.session})`;
      select.appendChild(o);
    }
  }
  if (selected) select.value = selected;
  const sig = s.signatures.find((g) => g.id === selected);
  if (!sig) {
    $("signature-info").textContent = "no step has been planned yet";
    $("graph").replaceChildren();
    return;
  }
  $("signature-info").textContent = `${sig.steps} steps, mean ${fmtSeconds(sig.mean_s)}, last ` +
    `${fmtSeconds(sig.last_s)} · ${sig.nodes} nodes on ${sig.devices.length} devices`;
  const graphKey = `${sig.id}@${sig.plan_version}`;
  if (graphKey !== shownGraph) {
    shownGraph = graphKey;
    fetch("/api/graph.svg?sig=" + encodeURIComponent(sig.id)).then((r) => r.ok ? r.text() : "")
      .then((svg) => { if (shownGraph === graphKey) $("graph").innerHTML = svg; });
  }
  const traceKey = `${sig.id}@${sig.trace_step}`;
  if (traceKey !== shownTrace) {
    shownTrace = traceKey;
    if (!sig.trace_step) {
      drawTimeline(null);
    } else {
      fetch("/api/trace?sig=" + encodeURIComponent(sig.id)).then((r) => r.ok ? r.json() : null)
        .then((trace) => { if (shownTrace === traceKey) drawTimeline(trace); });
    }
  }
}

function opColour(op) {
  if (op === "_Send" || op === "_Recv") return "#f87171";
  let h = 0;
  for (const ch of op) h = (h * 31 + ch.charCodeAt(0)) % 360;
  return `hsl(${h}, 55%, 68%)`;
}

function drawTimeline(trace) {
  const svg = $("timeline");
  svg.replaceChildren();
  if (!trace) {
    svg.setAttribute("viewBox", "0 0 900 40");
    svg.setAttribute("height", 40);
    svgEl("text", {x: 8, y: 24, fill: "#9ca3af"}, svg).textContent = "no traced step of this signature yet";
    $("trace-info").textContent = "";
    return;
  }
  const W = 900, lane = 26, label = 250, top = 18;
  let end = 1;
  for (const l of trace.lanes) for (const n of l.nodes) end = Math.max(end, n[2] + n[3]);
  const H = top + lane * trace.lanes.length + 6;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("height", H);
  $("trace-info").textContent = `step ${trace.step_id} at ${fmtTime(trace.time)}, ${fmtSeconds(end / 1e6)} ` +
    "from its first node to its last";
  const x = (us) => label + (W - label - 6) * us / end;
  for (let i = 0; i <= 4; i++) {
    const us = end * i / 4;
    svgEl("line", {x1: x(us), x2: x(us), y1: top - 4, y2: H, stroke: "#e5e7eb"}, svg);
    svgEl("text", {x: x(us), y: 11, "font-size": 10, fill: "#6b7280", "text-anchor": i ? "end" : "start"}, svg)
      .textContent = fmtSeconds(us / 1e6);
  }
  trace.lanes.forEach((l, i) => {
    const y = top + i * lane;
    svgEl("text", {x: 4, y: y + 16, "font-size": 11}, svg).textContent = l.device;
    for (const [name, op, start, dur] of l.nodes) {
      const r = svgEl("rect", {x: x(start).toFixed(1), y: y + 3, width: Math.max(1, x(start + dur) - x(start)).toFixed(1),
        height: lane - 8, fill: opColour(op), stroke: "#0003"}, svg);
      titled(r, `${name} = ${op}: ${fmtSeconds(dur / 1e6)} from +${fmtSeconds(start / 1e6)}`);
    }
  });
}

function render(s) {
  renderHeader(s);
  renderWorkers(s);
  renderSessions(s);
  renderSignatures(s);
  renderLatency(s);
  renderMatrix(s);
  renderErrors(s);
  document.body.dataset.version = String((Number(document.body.dataset.version) || 0) + 1);
}

$("signature").addEventListener("change", (e) => { selected = e.target.value; });

function connect() {
  const events = new EventSource("/api/events");
  events.onmessage = (e) => {
    const s = JSON.parse(e.data);
    render(s);
    if (!s.live) events.close();   // a recorded history does not change
  };
  events.onerror = () => {
    const state = $("state");
    if (!state.classList.contains("recorded")) {
      state.className = "state lost";
      state.textContent = "connection lost, retrying…";
    }
  };
}

connect();
