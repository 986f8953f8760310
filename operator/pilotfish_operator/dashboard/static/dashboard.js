// Pilotfish dashboard: polls the JSON API and draws the service graph as SVG (a
// layered layout: callers left, services, then the workloads behind them), or one
// service's tables. No libraries: the control plane serves this file as is.
"use strict";

const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const COLORS = { ok: "#3b8e5a", warn: "#e09a1c", bad: "#d23b3b" };
const COLUMN = 260, ROW = 96, MARGIN = 70, RADIUS = 22;

function svg(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

const fmt = {
  rps: (x) => (x == null ? "–" : x >= 10 ? x.toFixed(0) : x.toFixed(1)) + " rps",
  pct: (x) => (x == null ? "–" : (x * 100).toFixed(x > 0 && x < 0.1 ? 1 : 0) + "%"),
  ms: (x) => (x == null ? "–" : x >= 10 ? x.toFixed(0) + " ms" : x.toFixed(1) + " ms"),
  num: (x) => (x == null ? "" : String(Math.round(x * 1000) / 1000)),
};

function showStatus(data) {
  const msg = document.getElementById("message");
  msg.hidden = !data.message;
  msg.textContent = data.message || "";
  const parts = [];
  if (data.source) parts.push("from " + data.source);
  if (data.window) parts.push("last " + data.window.toFixed(0) + " s");
  parts.push("updated " + new Date().toLocaleTimeString());
  document.getElementById("status").textContent = parts.join(" · ");
}

async function poll(url, render) {
  try {
    const response = await fetch(url, { cache: "no-store" });
    const data = await response.json();
    showStatus(data);
    render(data);
  } catch (err) {
    document.getElementById("status").textContent = "control plane unreachable: " + err;
  }
  setTimeout(() => poll(url, render), POLL_MS);
}

// ------------------------------------------------------------------ graph

// Column of each node: the longest path from a caller (cycles stop at the node count).
function layers(nodes, edges) {
  const depth = Object.fromEntries(nodes.map((n) => [n.id, 0]));
  for (let i = 0; i < nodes.length; i++) {
    let moved = false;
    for (const e of edges) {
      if (depth[e.target] < depth[e.source] + 1 && depth[e.source] + 1 < nodes.length) {
        depth[e.target] = depth[e.source] + 1;
        moved = true;
      }
    }
    if (!moved) break;
  }
  return depth;
}

// Order each column by where its neighbours sit (barycentres, a few sweeps each way),
// which keeps edges from crossing in the usual callers → services → workloads shape.
function order(columns, edges) {
  const index = {};
  const place = () => columns.forEach((c) => c && c.forEach((n, i) => (index[n.id] = i)));
  const sortBy = (column, ends) => {
    const weight = (n) => {
      const ys = ends(n.id).filter((id) => id in index).map((id) => index[id]);
      return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : index[n.id];
    };
    const w = Object.fromEntries(column.map((n) => [n.id, weight(n)]));
    column.sort((a, b) => w[a.id] - w[b.id]);
  };
  const preds = (id) => edges.filter((e) => e.target === id).map((e) => e.source);
  const succs = (id) => edges.filter((e) => e.source === id).map((e) => e.target);
  for (const c of columns) if (c) c.sort((a, b) => (a.namespace + a.name).localeCompare(b.namespace + b.name));
  place();
  for (let sweep = 0; sweep < 4; sweep++) {
    for (let x = 1; x < columns.length; x++) if (columns[x]) { sortBy(columns[x], preds); place(); }
    for (let x = columns.length - 2; x >= 0; x--) if (columns[x]) { sortBy(columns[x], succs); place(); }
  }
}

function layout(nodes, edges) {
  const depth = layers(nodes, edges);
  const columns = [];
  for (const n of nodes) (columns[depth[n.id]] = columns[depth[n.id]] || []).push(n);
  order(columns, edges);
  const tallest = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
  const height = tallest * ROW + 2 * MARGIN - ROW / 2;
  const at = {};
  columns.forEach((column, x) => {
    if (!column) return;
    const top = (height - (column.length - 1) * ROW) / 2;
    column.forEach((n, y) => (at[n.id] = { x: MARGIN + 40 + x * COLUMN, y: top + y * ROW }));
  });
  return { at, width: columns.length * COLUMN + 2 * MARGIN, height };
}

function padlock(parent, x, y) {
  const g = svg("g", { class: "padlock", "data-padlock": "mtls", transform: `translate(${x},${y})` }, parent);
  svg("path", { d: "M2 6 V4 a3 3 0 0 1 6 0 V6" }, g);
  svg("rect", { x: 0, y: 6, width: 10, height: 7, rx: 1.5 }, g);
  svg("title", {}, g).textContent = "mutual TLS";
}

function drawEdge(root, e, at, widest) {
  const a = at[e.source], b = at[e.target];
  const health = e.error_rate >= 0.05 ? "bad" : e.error_rate > 0 ? "warn" : "ok";
  const g = svg("g", {
    class: "edge " + health,
    "data-edge": e.id,
    "data-source": e.source,
    "data-target": e.target,
    "data-rps": fmt.num(e.rps),
    "data-error-rate": fmt.num(e.error_rate),
    "data-p99": fmt.num(e.p99),
    "data-mtls": e.mtls == null ? "unknown" : String(e.mtls),
    "data-share": fmt.num(e.share),
  }, root);
  const x1 = a.x + RADIUS, x2 = b.x - RADIUS - 6, mid = (x1 + x2) / 2;
  svg("path", {
    class: "line",
    d: `M${x1},${a.y} C${mid},${a.y} ${mid},${b.y} ${x2},${b.y}`,
    "stroke-width": (1.5 + 5 * Math.sqrt(e.rps / widest)).toFixed(2),
    "marker-end": `url(#arrow-${health})`,
  }, g);
  svg("title", {}, g).textContent =
    `${e.source} → ${e.target}\n${fmt.rps(e.rps)}, ${fmt.pct(e.error_rate)} 5xx, ` +
    `p50 ${fmt.ms(e.p50)}, p99 ${fmt.ms(e.p99)}` +
    (e.mtls_share == null ? "" : `, ${fmt.pct(e.mtls_share)} mutual TLS`);
  const lines = [
    (e.share != null ? fmt.pct(e.share) + " · " : "") + fmt.rps(e.rps),
    `${fmt.pct(e.error_rate)} err · p99 ${fmt.ms(e.p99)}`,
  ];
  const lx = mid, ly = (a.y + b.y) / 2;
  svg("rect", { class: "label", x: lx - 58, y: ly - 14, width: 116, height: 30, rx: 3 }, g);
  lines.forEach((text, i) => {
    const t = svg("text", { x: lx, y: ly - 1 + i * 13, "text-anchor": "middle", "data-label": i }, g);
    t.textContent = text;
  });
  if (e.mtls) padlock(g, lx + 60, ly - 12);
}

function drawNode(root, n, at) {
  const { x, y } = at[n.id];
  const g = svg("g", {
    class: "node " + n.kind,
    "data-node": n.id,
    "data-kind": n.kind,
    "data-version": n.version || "",
    "data-rps": fmt.num(n.rps),
  }, root);
  let parent = g;
  if (n.kind === "service" && n.namespace) {
    parent = svg("a", { href: `/dashboard/service/${n.namespace}/${n.name}` }, g);
  }
  if (n.kind === "service") {
    svg("rect", { class: "node-shape service", x: x - RADIUS, y: y - RADIUS, width: 2 * RADIUS, height: 2 * RADIUS, rx: 7 }, parent);
  } else {
    svg("circle", { class: "node-shape " + n.kind, cx: x, cy: y, r: RADIUS }, parent);
  }
  const name = svg("text", { x, y: y + RADIUS + 15, "text-anchor": "middle" }, parent);
  name.textContent = n.kind === "unknown" ? "unknown (no sidecar)" : n.name;
  const sub = svg("text", { x, y: y + RADIUS + 28, "text-anchor": "middle", class: "sub" }, parent);
  sub.textContent = [n.kind === "unknown" ? "" : n.namespace, n.version && n.version !== "unknown" ? n.version : ""]
    .filter(Boolean).join(" · ");
  const icon = svg("text", { x, y: y + 4, "text-anchor": "middle", class: "sub" }, parent);
  icon.textContent = n.kind === "service" ? "svc" : n.kind === "unknown" ? "?" : "";
}

function drawGraph(data) {
  const root = document.getElementById("graph");
  const nodes = data.nodes || [], edges = data.edges || [];
  const { at, width, height } = layout(nodes, edges);
  root.replaceChildren();
  root.setAttribute("width", Math.max(width, 800));
  root.setAttribute("height", Math.max(height, 200));
  const defs = svg("defs", {}, root);
  for (const [health, color] of Object.entries(COLORS)) {
    const m = svg("marker", {
      id: "arrow-" + health, viewBox: "0 0 10 10", refX: 8, refY: 5, markerUnits: "userSpaceOnUse",
      markerWidth: 11, markerHeight: 11, orient: "auto-start-reverse",
    }, defs);
    svg("path", { d: "M0,0 L10,5 L0,10 z", fill: color }, m);
  }
  const widest = Math.max(0.001, ...edges.map((e) => e.rps));
  const edgeLayer = svg("g", { class: "edges" }, root);
  const nodeLayer = svg("g", { class: "nodes" }, root);
  for (const e of edges) drawEdge(edgeLayer, e, at, widest);
  for (const n of nodes) drawNode(nodeLayer, n, at);
  if (!nodes.length && !data.message) {
    const t = svg("text", { x: 40, y: 60, class: "empty" }, root);
    t.textContent = "No requests in the window.";
  }
}

// ------------------------------------------------------------------ service page

function cells(row, values) {
  for (const v of values) row.insertCell().textContent = v;
}

function drawService(data) {
  const s = data.summary || {};
  const cards = [
    ["success", fmt.pct(s.success)], ["requests/s", fmt.rps(s.rps).replace(" rps", "")],
    ["p50", fmt.ms(s.p50)], ["p95", fmt.ms(s.p95)], ["p99", fmt.ms(s.p99)],
  ];
  const summary = document.getElementById("summary");
  summary.replaceChildren();
  for (const [label, value] of cards) {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.metric = label;
    card.innerHTML = "<b></b><span></span>";
    card.firstChild.textContent = value;
    card.lastChild.textContent = label;
    summary.appendChild(card);
  }
  const total = s.requests || 0;
  const rows = (id, items, key, first) => {
    const body = document.querySelector(`#${id} tbody`);
    body.replaceChildren();
    for (const item of items || []) {
      const row = body.insertRow();
      row.dataset.row = key(item);
      row.dataset.rps = fmt.num(item.rps);
      row.dataset.success = fmt.num(item.success);
      cells(row, [
        ...first(item), fmt.pct(total ? item.requests / total : null), fmt.pct(item.success),
        fmt.rps(item.rps).replace(" rps", ""), fmt.ms(item.p50), fmt.ms(item.p95),
        fmt.ms(item.p99), fmt.pct(item.mtls),
      ]);
    }
  };
  rows("versions", data.versions, (v) => v.workload, (v) => [v.workload, v.version]);
  const caller = (id) => (id === "unknown" ? "unknown (no sidecar)" : id.replace(/^workload:(.*)\/(.*)$/, "$2.$1"));
  rows("callers", data.callers, (c) => c.caller, (c) => [caller(c.caller)]);
}

const page = document.body.dataset.page;
if (page === "graph") {
  poll("/dashboard/api/graph", drawGraph);
} else {
  const [ns, name] = location.pathname.split("/").slice(-2).map(decodeURIComponent);
  document.getElementById("title").textContent = `${name}.${ns}`;
  document.title = `Pilotfish · ${name}.${ns}`;
  poll(`/dashboard/api/service/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`, drawService);
}
