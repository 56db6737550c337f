// Charts of the last hour, per minute, from GET /api/stats/history: the waiting depth as a
// line and the completions (and failures) as bars. Inline SVG, redrawn every 10 s.

import { clear, clock, h } from "../dom.js";

const SVG = "http://www.w3.org/2000/svg";
const REFRESH_MS = 10_000;
export const WIDTH = 900;
export const HEIGHT = 220;
export const PAD = { left: 48, right: 12, top: 30, bottom: 28 };

export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, value);
  for (const child of children) if (child) el.append(child);
  return el;
}

export function niceMax(value) {
  if (value <= 5) return 5;
  const step = 10 ** Math.floor(Math.log10(value));
  return Math.ceil(value / step) * step;
}

export function axes(minutes, max, label) {
  const inner = HEIGHT - PAD.top - PAD.bottom;
  const parts = [];
  for (let i = 0; i <= 4; i++) {
    const y = PAD.top + inner - (inner * i) / 4;
    parts.push(svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y, class: "grid" }));
    const text = svg("text", { x: PAD.left - 6, y: y + 4, "text-anchor": "end", class: "tick" });
    text.textContent = String(Math.round((max * i) / 4));
    parts.push(text);
  }
  const span = (WIDTH - PAD.left - PAD.right) / Math.max(minutes.length, 1);
  minutes.forEach((m, i) => {
    if (i % 10 !== 0 && i !== minutes.length - 1) return;
    const text = svg("text", { x: PAD.left + span * (i + 0.5), y: HEIGHT - 8, "text-anchor": "middle", class: "tick" });
    text.textContent = clock(m.start_ms).slice(0, 5);
    parts.push(text);
  });
  const title = svg("text", { x: PAD.left, y: 18, class: "axis-title" });
  title.textContent = label;
  parts.push(title);
  return parts;
}

function lineChart(minutes, field, label) {
  const max = niceMax(Math.max(...minutes.map((m) => m[field]), 0));
  const inner = HEIGHT - PAD.top - PAD.bottom;
  const span = (WIDTH - PAD.left - PAD.right) / Math.max(minutes.length, 1);
  const points = minutes.map((m, i) =>
    `${(PAD.left + span * (i + 0.5)).toFixed(1)},${(PAD.top + inner - (inner * m[field]) / max).toFixed(1)}`);
  const base = PAD.top + inner;
  const area = `${PAD.left + span * 0.5},${base} ${points.join(" ")} ${PAD.left + span * (minutes.length - 0.5)},${base}`;
  return svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img", "aria-label": label },
    ...axes(minutes, max, label),
    svg("polygon", { points: area, class: "area" }),
    svg("polyline", { points: points.join(" "), class: "line" }));
}

function barChart(minutes, label) {
  const max = niceMax(Math.max(...minutes.map((m) => m.completed + m.failed), 0));
  const inner = HEIGHT - PAD.top - PAD.bottom;
  const span = (WIDTH - PAD.left - PAD.right) / Math.max(minutes.length, 1);
  const bars = [];
  minutes.forEach((m, i) => {
    const x = PAD.left + span * i + 1;
    const ok = (inner * m.completed) / max;
    const bad = (inner * m.failed) / max;
    const title = svg("title");
    title.textContent = `${clock(m.start_ms)}: ${m.completed} completed, ${m.failed} failed`;
    bars.push(svg("g", {}, title,
      svg("rect", { x, y: PAD.top + inner - ok, width: Math.max(span - 2, 1), height: ok, class: "bar-ok" }),
      svg("rect", { x, y: PAD.top + inner - ok - bad, width: Math.max(span - 2, 1), height: bad, class: "bar-bad" })));
  });
  return svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img", "aria-label": label },
    ...axes(minutes, max, label), ...bars);
}

export class ChartsView {
  constructor(ctx) {
    this.ctx = ctx;
  }

  mount(container) {
    this.body = h("div", { id: "charts" }, h("p", { class: "muted" }, "Loading…"));
    container.append(h("section", {}, h("h2", {}, "Last hour"), this.body));
    this.load();
  }

  unmount() { clearTimeout(this.timer); this.stopped = true; }
  update() {}

  async load() {
    try {
      const history = await this.ctx.api.get("/api/stats/history", { minutes: 60 });
      const m = history.minutes;
      const total = m.reduce((sum, x) => sum + x.completed, 0);
      clear(this.body,
        h("figure", {}, lineChart(m, "pending", "Jobs waiting (pending)"),
          h("figcaption", {}, `Now ${m[m.length - 1].pending} waiting.`)),
        h("figure", {}, barChart(m, "Completions per minute (red: failures)"),
          h("figcaption", {}, `${total} completed in the last hour.`)),
        history.complete ? null : h("p", { class: "muted" },
          "The event stream does not reach back over the whole hour (it is trimmed): early minutes undercount."));
    } catch (error) {
      clear(this.body, h("p", { class: "error" }, `Could not load the history: ${error.message}`));
    }
    if (!this.stopped) this.timer = setTimeout(() => this.load(), REFRESH_MS);
  }
}
