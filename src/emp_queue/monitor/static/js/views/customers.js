// Customers: each policy (weight, running caps overall and per service, waiting cap) with
// its live counts, a form to set or remove one (PUT/DELETE /api/customers/{id}), and usage
// from GET /api/usage: a chart of the last 24 hours per customer (stacked bars per hour) for
// a measure chosen in a select, and the totals per customer, service and pool.

import { clear, clock, h } from "../dom.js";
import { svg, niceMax, axes, WIDTH, HEIGHT, PAD } from "./charts.js";

const MEASURES = { run_s: "run seconds", gpu_s: "GPU seconds", jobs: "attempts",
  wait_s: "wait seconds", model_load_s: "model-load seconds", tokens_in: "tokens in",
  tokens_out: "tokens out", output_bytes: "output bytes" };
const COLORS = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#64748b"];
const HOUR_MS = 3600_000;

// "comfyui=2, ollama=1" <-> {comfyui: 2, ollama: 1}
function parseCaps(text) {
  const caps = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const [service, value] = part.split("=").map((x) => x?.trim());
    if (!service || !/^\d+$/.test(value || "")) throw new Error(`"${part}" is not SERVICE=NUMBER`);
    caps[service] = Number(value);
  }
  return caps;
}
const capsText = (caps) => Object.entries(caps || {}).map(([s, n]) => `${s}=${n}`).join(", ");
const limit = (value) => (value === null || value === undefined ? "—" : String(value));

function usageChart(rows, measure, fromMs) {
  const hours = Array.from({ length: 24 }, (_, i) => fromMs + i * HOUR_MS);
  const customers = [...new Set(rows.map((r) => r.customer_id || "(none)"))].sort();
  const totals = hours.map((start) => {
    const per = {};
    for (const r of rows) {
      if (r.start_ms !== start) continue;
      const c = r.customer_id || "(none)";
      per[c] = (per[c] || 0) + r[measure];
    }
    return per;
  });
  const max = niceMax(Math.max(0, ...totals.map((per) => Object.values(per).reduce((a, b) => a + b, 0))));
  const inner = HEIGHT - PAD.top - PAD.bottom;
  const span = (WIDTH - PAD.left - PAD.right) / hours.length;
  const bars = [];
  totals.forEach((per, i) => {
    let base = PAD.top + inner;
    customers.forEach((c, k) => {
      const value = per[c] || 0;
      if (!value) return;
      const height = (inner * value) / max;
      base -= height;
      const title = svg("title");
      title.textContent = `${clock(hours[i])}: ${c} ${value.toFixed(measure === "jobs" ? 0 : 1)} ${MEASURES[measure]}`;
      bars.push(svg("rect", { x: PAD.left + span * i + 1, y: base, width: Math.max(span - 2, 1), height,
        fill: COLORS[k % COLORS.length], class: "usage-bar", "data-customer": c }, title));
    });
  });
  const minutes = hours.map((start_ms) => ({ start_ms }));
  const label = `${MEASURES[measure]} per hour, by customer`;
  return svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img", "aria-label": label,
    id: "usage-chart" }, ...axes(minutes, max, label), ...bars);
}

export class CustomersView {
  constructor(ctx) { this.ctx = ctx; }

  mount(container) {
    this.table = h("div", { id: "customers-table" }, h("p", { class: "muted" }, "Loading…"));
    this.id = h("input", { id: "policy-customer", required: true, pattern: "[A-Za-z0-9_\\-][A-Za-z0-9_.\\-]{0,63}",
      placeholder: "acme" });
    this.weight = h("input", { id: "policy-weight", type: "number", min: "0.001", max: 1000, step: "any", value: 1 });
    this.maxRunning = h("input", { id: "policy-max-running", type: "number", min: 0, placeholder: "no limit" });
    this.byService = h("input", { id: "policy-by-service", placeholder: "comfyui=2, ollama=1" });
    this.maxPending = h("input", { id: "policy-max-pending", type: "number", min: 0, placeholder: "no limit" });
    this.result = h("p", { id: "policy-result", role: "status" });
    const form = h("form", { class: "card submit-form", id: "policy-form",
      onsubmit: (e) => { e.preventDefault(); this.save(); } },
      h("label", { for: "policy-customer" }, "Customer"), this.id,
      h("label", { for: "policy-weight" }, "Weight (share relative to others; 1 = default)"), this.weight,
      h("label", { for: "policy-max-running" }, "Most jobs running at once"), this.maxRunning,
      h("label", { for: "policy-by-service" }, "Most running per service"), this.byService,
      h("label", { for: "policy-max-pending" }, "Most jobs waiting (a submit beyond gets 429)"), this.maxPending,
      h("div", { class: "inline" },
        h("button", { type: "submit", id: "policy-save" }, "Save policy"),
        h("button", { type: "button", class: "ghost", id: "policy-delete", onclick: () => this.remove() },
          "Remove policy")),
      this.result);
    this.measure = h("select", { id: "usage-measure", "aria-label": "Measure", onchange: () => this.drawUsage() },
      Object.entries(MEASURES).map(([value, text]) => h("option", { value }, text)));
    this.usage = h("div", { id: "usage" }, h("p", { class: "muted" }, "Loading…"));
    container.append(
      h("section", {}, h("h2", {}, "Customers"), this.table, h("h3", {}, "Set a policy"), form),
      h("section", {}, h("h2", {}, "Usage, last 24 hours ", this.measure), this.usage));
    this.load();
    this.loadUsage();
  }

  unmount() {}
  update() {}

  async load() {
    try {
      const customers = await this.ctx.api.get("/api/customers");
      clear(this.table, customers.length ? h("div", { class: "table-scroll" }, h("table", { class: "customers" },
        h("thead", {}, h("tr", {}, ["customer", "weight", "max running", "per service", "max waiting",
          "running", "waiting", "recent claims", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, customers.map((c) => h("tr", { dataset: { customer: c.customer_id } },
          h("td", {}, c.customer_id), h("td", {}, String(c.policy.weight)),
          h("td", {}, limit(c.policy.max_running)), h("td", {}, capsText(c.policy.max_running_by_service) || "—"),
          h("td", {}, limit(c.policy.max_pending)), h("td", {}, String(c.running)),
          h("td", {}, String(c.waiting)), h("td", {}, c.recent_claims.toFixed(1)),
          h("td", {}, h("button", { type: "button", class: "ghost small", onclick: () => this.edit(c) }, "Edit")))))))
        : h("p", { class: "muted" }, "No customer has a policy: every customer has weight 1 and no caps."));
    } catch (error) {
      clear(this.table, h("p", { class: "error" }, `Could not load the customers: ${error.message}`));
    }
  }

  edit(c) {
    this.id.value = c.customer_id;
    this.weight.value = c.policy.weight;
    this.maxRunning.value = c.policy.max_running ?? "";
    this.byService.value = capsText(c.policy.max_running_by_service);
    this.maxPending.value = c.policy.max_pending ?? "";
  }

  async save() {
    const number = (input) => (input.value === "" ? null : Number(input.value));
    try {
      const policy = { weight: Number(this.weight.value), max_running: number(this.maxRunning),
        max_running_by_service: parseCaps(this.byService.value), max_pending: number(this.maxPending) };
      const view = await this.ctx.api.put(`/api/customers/${encodeURIComponent(this.id.value.trim())}`, policy);
      this.result.textContent = `Saved: ${view.customer_id} has weight ${view.policy.weight}.`;
      this.result.className = "";
      await this.load();
    } catch (error) {
      this.result.textContent = `Not saved: ${error.message}`;
      this.result.className = "error";
    }
  }

  async remove() {
    try {
      const view = await this.ctx.api.del(`/api/customers/${encodeURIComponent(this.id.value.trim())}`);
      this.result.textContent = `Removed: ${view.customer_id} is back to weight 1, no caps.`;
      await this.load();
    } catch (error) {
      this.result.textContent = `Not removed: ${error.message}`;
    }
  }

  async loadUsage() {
    const to = Math.ceil(Date.now() / HOUR_MS) * HOUR_MS;
    this.fromMs = to - 24 * HOUR_MS;
    try {
      this.rows = (await this.ctx.api.get("/api/usage", { from: this.fromMs, to, granularity: "hour" })).rows;
      this.drawUsage();
    } catch (error) {
      clear(this.usage, h("p", { class: "error" }, `Could not load the usage: ${error.message}`));
    }
  }

  drawUsage() {
    if (!this.rows) return;
    const measure = this.measure.value;
    const totals = new Map();
    for (const r of this.rows) {
      const key = `${r.customer_id || "(none)"}|${r.service}|${r.pool || "—"}`;
      const t = totals.get(key) || { jobs: 0, completed: 0, run_s: 0, gpu_s: 0, wait_s: 0, model_load_s: 0,
        tokens_in: 0, tokens_out: 0, output_bytes: 0 };
      for (const m of Object.keys(t)) t[m] += r[m];
      totals.set(key, t);
    }
    clear(this.usage,
      this.rows.length ? h("figure", {}, usageChart(this.rows, measure, this.fromMs)) : null,
      this.rows.length ? h("div", { class: "table-scroll" }, h("table", { class: "usage", id: "usage-table" },
        h("thead", {}, h("tr", {}, ["customer", "service", "pool", "attempts", "completed", "run s", "GPU s",
          "wait s", "load s", "tokens in", "tokens out", "output bytes"].map((t) => h("th", {}, t)))),
        h("tbody", {}, [...totals.entries()].sort().map(([key, t]) => h("tr", {},
          key.split("|").map((part) => h("td", {}, part)),
          [t.jobs, t.completed, t.run_s.toFixed(1), t.gpu_s.toFixed(1), t.wait_s.toFixed(1),
            t.model_load_s.toFixed(1), t.tokens_in, t.tokens_out, t.output_bytes]
            .map((v) => h("td", {}, String(v))))))))
        : h("p", { class: "muted" }, "No job ended in the last 24 hours."));
  }
}
