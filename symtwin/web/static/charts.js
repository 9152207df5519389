// Time-series charts drawn as SVG: trends (raw line or aggregated mean with min-max band) and plan vs actual.
import { el, clear, fmt, hhmm } from "./svg.js";

const M = { l: 46, r: 10, t: 18, b: 22 };

// Sizes are read once per chart (and again after a window resize): reading clientWidth after the frame's
// DOM writes would force a synchronous layout of the whole page, 1,000-row table included.
let generation = 0;
window.addEventListener("resize", () => { generation++; });

function frame(svg) {
  if (!svg.__size || svg.__size.gen !== generation) {
    svg.__size = { w: svg.clientWidth || 480, h: svg.clientHeight || 200, gen: generation };
  }
  const { w, h } = svg.__size;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  clear(svg);
  return { w, h };
}

function scales(w, h, t0, t1, lo, hi) {
  if (!(hi > lo)) { hi = lo + 1; lo -= 1; }
  const pad = (hi - lo) * 0.08;
  lo -= pad; hi += pad;
  if (!(t1 > t0)) t1 = t0 + 1;
  const x = (t) => M.l + ((t - t0) / (t1 - t0)) * (w - M.l - M.r);
  const y = (v) => h - M.b - ((v - lo) / (hi - lo)) * (h - M.t - M.b);
  return { x, y, lo, hi, t0, t1 };
}

function axes(svg, s, w, h, unit) {
  el("line", { class: "axis", x1: M.l, y1: h - M.b, x2: w - M.r, y2: h - M.b }, svg);
  el("line", { class: "axis", x1: M.l, y1: M.t, x2: M.l, y2: h - M.b }, svg);
  for (let i = 0; i <= 4; i++) {
    const v = s.lo + ((s.hi - s.lo) * i) / 4;
    const t = el("text", { x: M.l - 4, y: s.y(v) + 3, "text-anchor": "end" }, svg);
    t.textContent = fmt(v, 2);
    const tt = s.t0 + ((s.t1 - s.t0) * i) / 4;
    const anchor = i === 0 ? "start" : i === 4 ? "end" : "middle";
    const xl = el("text", { x: s.x(tt), y: h - 6, "text-anchor": anchor }, svg);
    xl.textContent = hhmm(tt);
  }
  const u = el("text", { x: 4, y: 11 }, svg);
  u.textContent = unit || "";
}

function path(points, s) {
  let d = "";
  for (const [t, v] of points) {
    if (v === null || v === undefined) continue;
    d += `${d ? "L" : "M"}${s.x(t).toFixed(1)},${s.y(v).toFixed(1)}`;
  }
  return d;
}

// trend: {resolution: "raw", points: [[t, v]]} or {resolution: "aggregated", points: [[t_end, mean, min, max]]}
export function drawTrend(svg, trend) {
  const { w, h } = frame(svg);
  const pts = trend.points || [];
  if (!pts.length) {
    const t = el("text", { x: w / 2, y: h / 2, "text-anchor": "middle" }, svg);
    t.textContent = "no history in this range";
    return;
  }
  const vals = pts.flatMap((p) => p.slice(1)).filter((v) => v !== null);
  const s = scales(w, h, pts[0][0], pts[pts.length - 1][0], Math.min(...vals), Math.max(...vals));
  axes(svg, s, w, h, trend.eng_unit);
  if (trend.resolution === "aggregated") {
    const up = pts.map((p) => `${s.x(p[0]).toFixed(1)},${s.y(p[3]).toFixed(1)}`);
    const down = pts.slice().reverse().map((p) => `${s.x(p[0]).toFixed(1)},${s.y(p[2]).toFixed(1)}`);
    el("polygon", { class: "band", points: [...up, ...down].join(" ") }, svg);
    el("path", { class: "line", d: path(pts.map((p) => [p[0], p[1]]), s) }, svg);
  } else {
    el("path", { class: "line", d: path(pts, s) }, svg);
  }
}

// plan: {times, planned, actual_times, actual}; now: plant time [s]
export function drawPlan(svg, plan, now, unit) {
  const { w, h } = frame(svg);
  const all = [...plan.planned, ...plan.actual].filter((v) => v !== null);
  const times = [...plan.times, ...plan.actual_times];
  if (!times.length || !all.length) return;
  const s = scales(w, h, Math.min(...times), Math.max(...times), Math.min(...all), Math.max(...all));
  axes(svg, s, w, h, unit);
  // planned setpoints are held over each step: draw as a step line
  let d = "";
  plan.times.forEach((t, i) => {
    const v = plan.planned[i];
    if (v === null) return;
    const x = s.x(t).toFixed(1);
    const y = s.y(v).toFixed(1);
    d += d ? `H${x}V${y}` : `M${x},${y}`;
  });
  el("path", { class: "planned", d }, svg);
  el("path", { class: "actual", d: path(plan.actual_times.map((t, i) => [t, plan.actual[i]]), s) }, svg);
  if (now >= s.t0 && now <= s.t1) el("line", { class: "now", x1: s.x(now), x2: s.x(now), y1: M.t, y2: h - M.b }, svg);
}

// tank layers: {layer_01_t_k: K, ...} top (01) to bottom
export function drawTank(svg, states) {
  clear(svg);
  const keys = Object.keys(states).filter((k) => k.startsWith("layer_")).sort();
  const w = 120, h = 180;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const lh = (h - 4) / Math.max(1, keys.length);
  keys.forEach((k, i) => {
    const c = states[k] - 273.15;
    const f = Math.max(0, Math.min(1, (c - 40) / 50)); // 40 °C blue .. 90 °C red
    const r = Math.round(40 + 200 * f), b = Math.round(220 - 180 * f);
    el("rect", { x: 10, y: 2 + i * lh, width: w - 20, height: lh - 1, fill: `rgb(${r},70,${b})` }, svg);
    const t = el("text", { x: w / 2, y: 2 + i * lh + lh / 2 + 3, "text-anchor": "middle" }, svg);
    t.textContent = `${fmt(c, 1)} °C`;
  });
}
