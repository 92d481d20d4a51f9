// Coil map: the coil's length down, its width across; each defect a mark coloured by class and
// sized by area; uninspected stretches shaded, reject frames marked on the left edge, periodic
// alarms as dashed lines. Click a mark for its crop and details (/defects/ID, /crops/ID).
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const F = Object.fromEntries(data.fields.map((f, i) => [f, i]));
// camera, class and branch come as numbers into data.names (a smaller page).
for (const d of data.defects) for (const k of [F.camera, F["class"], F.branch]) d[k] = data.names[d[k]];
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const fmt = (v, d = 2) => (v === null || v === undefined) ? "-" : Number(v).toFixed(d);

const M = {left: 64, right: 12, top: 28, bottom: 12};
const plotW = 520;
const length = Math.max(data.length_m || 0, 0.001), width = Math.max(data.width_mm || 0, 1);
const plotH = Math.min(3000, Math.max(520, length * 20));
const sx = plotW / width, sy = plotH / length;
const X = (mm) => M.left + mm * sx, Y = (m) => M.top + m * sy;

function niceStep(span, px, minPx) {
  for (const s of [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]) {
    if (s * px / span >= minPx) return s;
  }
  return span;
}

function draw() {
  const parts = [];
  const W = M.left + plotW + M.right, H = M.top + plotH + M.bottom;
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" id="coilsvg">`);
  parts.push(`<defs><pattern id="hatch" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">` +
             `<rect width="8" height="8" fill="#9aa3ad" opacity=".35"/><line x1="0" y1="0" x2="0" y2="8" stroke="#6b7480" stroke-width="3"/></pattern></defs>`);
  parts.push(`<rect x="${M.left}" y="${M.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#9aa3ad"/>`);
  // Axes: metres down the left, millimetres across the top.
  const ys = niceStep(length, plotH, 40);
  for (let m = 0; m <= length + 1e-9; m += ys) {
    parts.push(`<line x1="${M.left - 4}" x2="${M.left + plotW}" y1="${Y(m)}" y2="${Y(m)}" stroke="#d8dde3"/>` +
               `<text x="${M.left - 24}" y="${Y(m) + 4}" font-size="11" text-anchor="end" fill="#6b7480">${+m.toFixed(2)} m</text>`);
  }
  const xs = niceStep(width, plotW, 60);
  for (let mm = 0; mm <= width + 1e-9; mm += xs) {
    parts.push(`<text x="${X(mm)}" y="${M.top - 8}" font-size="11" text-anchor="middle" fill="#6b7480">${+mm.toFixed(0)}</text>`);
  }
  parts.push(`<text x="${M.left + plotW}" y="${M.top - 18}" font-size="10" text-anchor="end" fill="#6b7480">across, mm</text>`);
  parts.push(`<g id="uninspected">`);
  for (const u of data.uninspected) {
    if (u.start_m === null || u.end_m === null) continue;
    parts.push(`<rect class="uninspected" x="${M.left}" y="${Y(u.start_m)}" width="${plotW}" height="${Math.max(2, (u.end_m - u.start_m) * sy)}" fill="url(#hatch)"><title>uninspected ${fmt(u.start_m)}..${fmt(u.end_m)} m (${esc(u.reason)}, ${u.count} frames, ${esc(u.camera)})</title></rect>`);
  }
  parts.push(`</g><g id="rejects">`);
  for (const [cam, pos, len] of data.rejects) {
    if (pos === null) continue;
    parts.push(`<rect class="reject" x="${M.left - 16}" y="${Y(pos)}" width="8" height="${Math.max(1.5, (len || 0) * sy)}" fill="#c62828"/>`);
  }
  parts.push(`</g><g id="alarms">`);
  for (const a of data.alarms) {
    const y1 = a.first && a.first.coil_position_m !== undefined ? a.first.coil_position_m : null;
    const y2 = a.latest && a.latest.coil_position_m !== undefined ? a.latest.coil_position_m : null;
    if (a.cross_mm === undefined || y1 === null || y2 === null) continue;
    parts.push(`<line x1="${X(a.cross_mm)}" x2="${X(a.cross_mm)}" y1="${Y(y1)}" y2="${Y(y2)}" stroke="#c62828" stroke-width="2" stroke-dasharray="6 4"><title>periodic ${esc(a["class"])}: every ${fmt(a.pitch_m)} m, ${a.repeats}×</title></line>`);
  }
  parts.push(`</g>`);
  // Marks are drawn on a canvas under the SVG (10,000 SVG elements take the browser
  // longer to lay out than the whole page budget); a click finds the nearest mark.
  parts.push(`<circle id="selmark" r="0" fill="none" stroke="#000" stroke-width="3"/>`);
  parts.push(`</svg>`);
  const box = document.getElementById("map");
  box.style.position = "relative";
  box.innerHTML = `<canvas id="marks" width="${W}" height="${H}" style="position:absolute;left:0;top:0"></canvas>` + parts.join("");
  const svg = document.getElementById("coilsvg");
  svg.style.position = "relative";
  for (const d of data.defects) {
    const x = ((d[F.x1_mm] ?? 0) + (d[F.x2_mm] ?? 0)) / 2;
    const y = ((d[F.pos_m] ?? 0) + (d[F.pos_end_m] ?? d[F.pos_m] ?? 0)) / 2;
    marks.push({x: X(x), y: Y(y), r: Math.min(14, Math.max(2.5, Math.sqrt(d[F.area_mm2] || 0) * sx)), d});
  }
  paint();

  const legend = document.getElementById("legend");
  const counts = {};
  for (const d of data.defects) counts[d[F["class"]]] = (counts[d[F["class"]]] || 0) + 1;
  legend.innerHTML = Object.keys(counts).sort().map((c) =>
    `<label><input type="checkbox" checked data-class="${esc(c)}"><span class="dot" style="background:${data.colours[c]}"></span>${esc(c)} (${counts[c]})</label>`
  ).join("") + `<span><span class="dot" style="background:#c62828;border-radius:0"></span>reject frame</span>` +
    `<span><span class="dot" style="background:#9aa3ad;border-radius:0"></span>uninspected</span>` +
    `<span><span class="dot" style="background:#fff;border:1.5px solid #000"></span>rejecting defect</span>`;
  // Several cameras (top and bottom surface): each can be shown alone.
  const cameras = [...new Set(data.defects.map((d) => d[F.camera]))].sort();
  if (cameras.length > 1) {
    legend.insertAdjacentHTML("beforeend", cameras.map((c) =>
      `<label><input type="checkbox" checked data-camera="${esc(c)}">camera ${esc(c)}</label>`).join(""));
  }
  legend.addEventListener("change", (e) => {
    const set = e.target.dataset.camera !== undefined ? hiddenCameras : hidden;
    const key = e.target.dataset.camera ?? e.target.dataset.class;
    if (e.target.checked) set.delete(key); else set.add(key);
    paint();
  });
  svg.addEventListener("click", (e) => {
    const r = svg.getBoundingClientRect();
    const i = nearest(e.clientX - r.left, e.clientY - r.top);
    if (i >= 0) show(i);
  });
}

const marks = [];
const hidden = new Set();            // classes not shown
const hiddenCameras = new Set();
const shown = (d) => !hidden.has(d[F["class"]]) && !hiddenCameras.has(d[F.camera]);

function paint() {
  const canvas = document.getElementById("marks");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  g.fillStyle = "#eef1f4";
  g.fillRect(M.left, M.top, plotW, plotH);
  g.globalAlpha = 0.75;
  for (const m of marks) {
    const cls = m.d[F["class"]];
    if (!shown(m.d)) continue;
    g.beginPath();
    g.arc(m.x, m.y, m.r, 0, 2 * Math.PI);
    g.fillStyle = data.colours[cls] || "#f0c000";
    g.fill();
    if (m.d[F.rejects]) { g.globalAlpha = 1; g.lineWidth = 1.2; g.strokeStyle = "#000"; g.stroke(); g.globalAlpha = 0.75; }
  }
}

function nearest(x, y) {
  let best = -1, bestD = Infinity;
  marks.forEach((m, i) => {
    if (!shown(m.d)) return;
    const dd = Math.hypot(m.x - x, m.y - y);
    if (dd <= m.r + 3 && dd < bestD) { best = i; bestD = dd; }
  });
  return best;
}

async function show(i) {
  const m = marks[i], sel = document.getElementById("selmark");
  sel.setAttribute("cx", m.x); sel.setAttribute("cy", m.y); sel.setAttribute("r", m.r + 3);
  const d = data.defects[i];
  const panel = document.getElementById("panel");
  const rows = [["class", d[F["class"]]], ["score", fmt(d[F.score])], ["position", `${fmt(d[F.pos_m], 3)} .. ${fmt(d[F.pos_end_m], 3)} m`],
                ["across", `${fmt(d[F.x1_mm], 0)} .. ${fmt(d[F.x2_mm], 0)} mm`], ["area", `${fmt(d[F.area_mm2], 0)} mm²`],
                ["branch", d[F.branch]], ["rejects", d[F.rejects] ? "yes" : "no"], ["camera", d[F.camera]], ["frame", d[F.frame]]];
  panel.innerHTML = (d[F.crop] ? `<img id="crop" src="/crops/${d[F.id]}" alt="crop">` : `<p class="empty">no crop stored</p>`) +
    `<table id="detail">${rows.map(([k, v]) => `<tr><th>${k}</th><td>${esc(v)}</td></tr>`).join("")}</table>`;
  const r = await fetch(`/defects/${d[F.id]}`);
  if (r.ok) {
    const full = await r.json();
    panel.insertAdjacentHTML("beforeend", `<p class="empty">seen ${esc(full.capture_time)}</p>`);
  }
}

draw();
// For the browser tests: how many marks, when drawn, and where mark i is on the screen.
window.inspectdMap = {
  marks: marks.length, drawnMs: performance.now(),
  hidden: () => [...hidden, ...[...hiddenCameras].map((c) => "camera " + c)],
  at: (i) => { const r = document.getElementById("coilsvg").getBoundingClientRect(); return [r.left + marks[i].x, r.top + marks[i].y]; },
};
requestAnimationFrame(() => requestAnimationFrame(() => { window.inspectdMap.paintedMs = performance.now(); }));
