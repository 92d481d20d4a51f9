// Line now: one card per camera, redrawn from each snapshot (first from the page, then live
// from /line/stream, server-sent events).
"use strict";
const COLOURS = {crazing: "#e6194b", inclusion: "#3cb44b", patches: "#4363d8", pitted_surface: "#f58231",
                 "rolled-in_scale": "#911eb4", scratches: "#008080"};
const colour = (c) => COLOURS[c] || "#f0c000";
const fmt = (v, d = 1, unit = "") => (v === null || v === undefined) ? "-" : Number(v).toFixed(d) + unit;

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function card(cam) {
  const c = el("section", {class: "camera", id: "cam-" + cam.camera});
  const h = el("h2");
  h.append(el("span", {}, cam.camera), el("small", {}, cam.coil ? "coil " + cam.coil : "no coil open"));
  c.append(h);
  const stats = el("div", {class: "stats"});
  const hbBad = cam.heartbeat_age_s === null || cam.heartbeat_age_s > 3;
  const items = [
    ["frames/s", fmt(cam.fps)], ["latency p50 / p99", fmt(cam.latency_ms.p50, 0) + " / " + fmt(cam.latency_ms.p99, 0, " ms")],
    ["rejects (last 10 s)", cam.reject_share === null ? "-" : (100 * cam.reject_share).toFixed(0) + " %"],
    ["heartbeat age", fmt(cam.heartbeat_age_s, 1, " s"), hbBad],
  ];
  for (const [label, value, bad] of items) {
    const d = el("div", bad ? {class: "bad"} : {});
    d.append(el("b", {}, value), el("span", {}, label));
    stats.append(d);
  }
  c.append(stats);
  const canvas = el("canvas", {class: "strip", width: "1080", height: "720"});
  c.append(canvas);
  drawStrip(canvas, cam.strip);
  const lists = el("div");
  if (cam.alarms.length) {
    const ul = el("ul");
    for (const a of cam.alarms) ul.append(el("li", {class: "alarm"},
      `${a.alarm || "alarm"}: ${a["class"] || ""} every ${fmt(a.pitch_m, 2, " m")} at ${fmt(a.cross_mm, 0, " mm")} (${a.repeats || "?"}×, ${a.state || ""})`));
    lists.append(ul);
  }
  const ul = el("ul");
  for (const u of cam.uninspected) ul.append(el("li", {},
    `uninspected: frames ${u.first_frame}..${u.last_frame} (${u.count}), ${fmt(u.start_m, 2)}..${fmt(u.end_m, 2)} m, ${u.reason}`));
  for (const g of cam.gaps) ul.append(el("li", {}, `gap: ${g.reason}, ${g.missing ?? "?"} messages`));
  if (!cam.uninspected.length && !cam.gaps.length) ul.append(el("li", {}, "nothing uninspected recently, no gaps"));
  lists.append(ul);
  c.append(lists);
  return c;
}

// The newest verdict at the top, each frame a band as tall as its share of the strip; defect
// boxes drawn in their class colour, reject frames with a red edge, uninspected ones missing.
function drawStrip(canvas, strip) {
  const g = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  g.fillStyle = "#2b3038"; g.fillRect(0, 0, W, H);
  if (!strip.length) { g.fillStyle = "#aaa"; g.font = "28px sans-serif"; g.fillText("no verdicts yet", 24, 48); return; }
  const band = H / strip.length;
  strip.forEach((v, i) => {
    const y0 = i * band;
    g.fillStyle = v.status === "reject" ? "#4a2f33" : "#39424e";
    g.fillRect(24, y0 + 1, W - 24, band - 2);
    g.fillStyle = v.status === "reject" ? "#e53935" : "#43a047";
    g.fillRect(0, y0 + 1, 18, band - 2);
    const sx = (W - 24) / (v.width || 1), sy = (band - 2) / (v.height || 1);
    for (const d of v.defects) {
      if (!d.box) continue;
      const [x1, y1, x2, y2] = d.box;
      const bx = 24 + x1 * sx, by = y0 + 1 + y1 * sy, bw = Math.max(4, (x2 - x1) * sx), bh = Math.max(4, (y2 - y1) * sy);
      g.globalAlpha = 0.45; g.fillStyle = colour(d["class"]); g.fillRect(bx, by, bw, bh); g.globalAlpha = 1;
      g.strokeStyle = colour(d["class"]); g.lineWidth = d.rejects ? 3 : 1.5;
      g.strokeRect(bx, by, bw, bh);
    }
    if (i % 2 === 0) { g.fillStyle = "#c9d1d9"; g.font = "16px sans-serif"; g.fillText(`${fmt(v.position_m, 1)} m`, W - 90, y0 + 18); }
  });
}

function render(snapshot) {
  const root = document.getElementById("cameras");
  root.replaceChildren(...snapshot.cameras.map(card));
  if (!snapshot.cameras.length) root.append(el("p", {class: "empty"}, "No camera has been heard from yet."));
  window.inspectdLineLast = snapshot;          // for the browser tests
}

render(JSON.parse(document.getElementById("snapshot").textContent));
const badge = document.getElementById("live");
const source = new EventSource("/line/stream");
source.onopen = () => { badge.textContent = "live"; badge.className = "badge live"; };
source.onmessage = (e) => render(JSON.parse(e.data));
source.onerror = () => { badge.textContent = "reconnecting…"; badge.className = "badge stale"; };
