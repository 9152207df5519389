// Sankey of the park's exchanges, drawn by hand as SVG.
// Layout: parties in layers (suppliers left, receivers right, by longest supply path), each party's units
// stacked in its column; a link's width is proportional to its heat flow [MW]; colour by medium.
import { el, clear, fmt } from "./svg.js";

export const MEDIUM_COLOURS = { steam: "#c0392b", hot_water: "#e67e22", waste_heat: "#8e44ad" };
const PARTY_COLOURS = ["#4c78a8", "#54a24b", "#b279a2", "#f58518", "#72b7b2", "#9d755d", "#e45756", "#79706e"];
const NODE_W = 16;
const PAD = 30;

export class Sankey {
  constructor(svg, onUnitClick) {
    this.svg = svg;
    this.onUnitClick = onUnitClick;
    this.links = new Map(); // exchange id -> {ex, path, label}
    this.nodes = new Map(); // unit id -> {x, y, h, party}
    this.scale = null; // px per MW, fixed after the first frame with flows so widths stay comparable
  }

  setMeta(meta) {
    clear(this.svg);
    this.links.clear();
    this.nodes.clear();
    this.scale = null;
    const w = this.svg.clientWidth || 900;
    const h = this.svg.clientHeight || 420;
    this.w = w; this.h = h;
    this.svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    const exs = meta.exchanges;
    // party layers: longest path from a pure supplier
    const parties = [...new Set(exs.flatMap((e) => [e.supplier, e.receiver]))];
    const layer = Object.fromEntries(parties.map((p) => [p, 0]));
    for (let it = 0; it < parties.length; it++) {
      for (const e of exs) if (e.supplier !== e.receiver && layer[e.receiver] < layer[e.supplier] + 1) layer[e.receiver] = layer[e.supplier] + 1;
    }
    const nLayers = Math.max(1, ...Object.values(layer).map((l) => l + 1));
    const colX = (l) => PAD + (nLayers === 1 ? 0 : (l * (w - 2 * PAD - NODE_W - 120)) / (nLayers - 1));
    const partyColour = Object.fromEntries(meta.parties.map((p, i) => [p.id, PARTY_COLOURS[i % PARTY_COLOURS.length]]));
    const unitOwner = Object.fromEntries(meta.units.map((u) => [u.id, u.owner]));
    this.linkLayer = el("g", {}, this.svg);
    const nodeLayer = el("g", {}, this.svg);
    for (let l = 0; l < nLayers; l++) {
      const colParties = parties.filter((p) => layer[p] === l);
      const units = [];
      for (const p of colParties) {
        const us = [...new Set(exs.flatMap((e) => [e.source_unit, e.target_unit]))].filter((u) => unitOwner[u] === p);
        units.push(...us.map((u) => ({ u, p })));
      }
      const slot = (h - 2 * PAD) / Math.max(1, units.length);
      let lastParty = null;
      units.forEach(({ u, p }, i) => {
        const y = PAD + i * slot + slot * 0.1;
        const nh = slot * 0.8;
        const x = colX(l);
        this.nodes.set(u, { x, y, h: nh, party: p, inOff: 0, outOff: 0 });
        if (p !== lastParty) {
          const last = l === nLayers - 1 && nLayers > 1;
          const t = el("text", { class: "party-label", x: last ? x + NODE_W : x, y: y - 6, "text-anchor": last ? "end" : "start" }, nodeLayer);
          t.textContent = (meta.parties.find((q) => q.id === p) || { name: p }).name;
          lastParty = p;
        }
        const g = el("g", { class: "node", "data-unit": u }, nodeLayer);
        el("rect", { x, y, width: NODE_W, height: nh, fill: partyColour[p] || "#888" }, g);
        const label = el("text", { x: x + NODE_W + 4, y: y + nh / 2 + 4 }, g);
        label.textContent = u;
        g.addEventListener("click", () => this.onUnitClick(u));
      });
    }
    this.labelLayer = el("g", {}, this.svg);
    for (const e of exs) {
      const p = el("path", { class: "link", stroke: MEDIUM_COLOURS[e.medium] || "#888", "data-exchange": e.id }, this.linkLayer);
      const title = el("title", {}, p);
      title.textContent = `${e.id}: ${e.supplier} → ${e.receiver} (${e.medium})`;
      const label = el("text", { class: "flow-label", "text-anchor": "middle", "data-exchange": e.id }, this.labelLayer);
      this.links.set(e.id, { ex: e, path: p, label, title });
    }
  }

  update(flows) {
    const byId = new Map(flows.map((f) => [f[0], f]));
    if (this.scale === null) {
      // px per MW: the busiest node's throughput fills most of its slot
      const through = new Map();
      for (const { ex } of this.links.values()) {
        const f = byId.get(ex.id);
        const mw = f && f[1] !== null ? f[1] : 0;
        through.set(ex.source_unit, (through.get(ex.source_unit) || 0) + mw);
        through.set(ex.target_unit, (through.get(ex.target_unit) || 0) + mw);
      }
      let s = Infinity;
      for (const [u, mw] of through) {
        const n = this.nodes.get(u);
        if (n && mw > 0) s = Math.min(s, (0.6 * n.h) / mw);
      }
      this.scale = Number.isFinite(s) ? s : 4;
    }
    for (const n of this.nodes.values()) { n.inOff = 0; n.outOff = 0; }
    for (const { ex, path, label } of this.links.values()) {
      const f = byId.get(ex.id);
      const a = this.nodes.get(ex.source_unit);
      const b = this.nodes.get(ex.target_unit);
      if (!a || !b) continue;
      const mw = f ? f[1] : null;
      const wpx = mw === null ? 2 : Math.max(1.5, mw * this.scale);
      const y0 = a.y + a.outOff + wpx / 2 + 2;
      const y1 = b.y + b.inOff + wpx / 2 + 2;
      a.outOff += wpx + 1; b.inOff += wpx + 1;
      const x0 = a.x + NODE_W, x1 = b.x;
      const xm = (x0 + x1) / 2;
      path.setAttribute("d", `M${x0},${y0.toFixed(1)}C${xm},${y0.toFixed(1)} ${xm},${y1.toFixed(1)} ${x1},${y1.toFixed(1)}`);
      path.setAttribute("stroke-width", wpx.toFixed(1));
      path.classList.toggle("hidden-value", mw === null);
      label.setAttribute("x", xm.toFixed(1));
      label.setAttribute("y", ((y0 + y1) / 2 - wpx / 2 - 3).toFixed(1));
      label.textContent = mw === null ? "not shared" : `${fmt(mw, 2)} MW${f[2] !== null ? ` · ${fmt(f[2], 1)} t/h` : ""}`;
    }
  }
}

export function legend(div) {
  clear(div);
  for (const [m, c] of Object.entries(MEDIUM_COLOURS)) {
    const s = document.createElement("span");
    const i = document.createElement("i");
    i.style.background = c;
    s.appendChild(i);
    s.appendChild(document.createTextNode(m.replace("_", " ")));
    div.appendChild(s);
  }
}
