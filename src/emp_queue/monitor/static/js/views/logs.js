// The log viewer: lines across machines and services, filtered by machine, service, level,
// text and time range; the live tail polls for lines newer than the last one shown. A line
// reads time, level, service, message; a structlog JSON line shows its event as the message
// and the rest (machine, every key-value, the raw line) when it is clicked.

import { VirtualList, badge, clear, clock, dateTime, h } from "../dom.js";

const TAIL_MS = 1500;
const KEEP_LINES = 5000;
const LEVELS = ["debug", "info", "warning", "error", "critical"];

function localInputToMs(value) {
  return value ? new Date(value).getTime() : undefined;
}

const STRUCTLOG_KEYS = new Set(["event", "level", "timestamp", "logger", "log_level"]);

// {message, fields}: a structlog JSON line's event and its other key-values; any other line
// as it came.
export function readLine(text) {
  if (!text.startsWith("{")) return { message: text, fields: [] };
  let parsed;
  try { parsed = JSON.parse(text); } catch { return { message: text, fields: [] }; }
  if (!parsed || typeof parsed !== "object" || typeof parsed.event !== "string") {
    return { message: text, fields: [] };
  }
  const fields = Object.entries(parsed).filter(([key]) => !STRUCTLOG_KEYS.has(key))
    .map(([key, value]) => [key, typeof value === "string" ? value : JSON.stringify(value)]);
  return { message: parsed.event, fields };
}

export class LogsView {
  constructor(ctx) {
    this.ctx = ctx;
    this.lines = [];
    this.ids = new Set();
    this.timer = null;
  }

  mount(container) {
    const params = this.ctx.params;
    const machines = [...this.ctx.store.machines.keys()].sort();
    const services = new Set();
    for (const m of this.ctx.store.machines.values()) for (const s of m.services || []) services.add(s.name);
    this.machine = h("select", { id: "logs-machine" }, h("option", { value: "" }, "all machines"),
      machines.map((m) => h("option", { value: m, selected: m === params.get("machine") }, m)));
    this.service = h("input", { id: "logs-service", list: "log-services", placeholder: "all services",
      value: params.get("service") || "" });
    this.level = h("select", { id: "logs-level" }, h("option", { value: "" }, "any level"),
      LEVELS.map((l) => h("option", { value: l }, `${l} and above`)));
    this.text = h("input", { id: "logs-text", type: "search", placeholder: "text to find",
      value: params.get("q") || "" });
    this.since = h("input", { id: "logs-since", type: "datetime-local", title: "from" });
    this.until = h("input", { id: "logs-until", type: "datetime-local", title: "until" });
    this.tail = h("input", { id: "logs-tail", type: "checkbox", checked: true,
      onchange: () => this.schedule() });
    this.status = h("p", { class: "muted", role: "status", id: "logs-status" });
    this.list = new VirtualList({ rowHeight: 26, className: "log-lines",
      render: (line) => this.row(line) });
    this.detail = h("div", { id: "log-detail" });
    const form = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); this.search(); } },
      h("datalist", { id: "log-services" }, [...services].sort().map((s) => h("option", { value: s }))),
      this.machine, this.service, this.level, this.text, this.since, this.until,
      h("label", { class: "check" }, this.tail, " live tail"),
      h("button", { type: "submit", id: "logs-search" }, "Search"));
    container.append(h("section", { class: "logs" }, h("h2", {}, "Logs"), form, this.status,
      h("div", { class: "row header log-header" }, ["time", "level", "service", "message"]
        .map((t) => h("span", {}, t))),
      this.list.el, this.detail));
    this.search();
  }

  unmount() { clearTimeout(this.timer); this.stopped = true; }

  row(line) {
    const { message, fields } = line.read || (line.read = readLine(line.message));
    const key = `${line.machine_id}/${line.id}`;
    return h("div", { class: `row log-row level-${line.level}${key === this.opened ? " selected" : ""}`,
      role: "button", tabindex: "0", title: "Show the whole line", dataset: { line: key },
      onclick: () => this.open(line, key) },
      h("span", { class: "muted" }, clock(line.ts)),
      h("span", {}, badge(line.level, `lvl-${line.level}`)),
      h("span", {}, line.service),
      h("span", { class: "message" }, message,
        fields.length ? h("span", { class: "muted" }, ` +${fields.length}`) : null));
  }

  open(line, key) {
    this.opened = this.opened === key ? null : key;
    this.list.refresh();
    if (!this.opened) { clear(this.detail); return; }
    const { message, fields } = line.read;
    clear(this.detail, h("div", { class: "card log-detail" },
      h("dl", { class: "fields" },
        h("dt", {}, "time"), h("dd", {}, dateTime(line.ts)),
        h("dt", {}, "machine"), h("dd", {}, line.machine_id),
        h("dt", {}, "service"), h("dd", {}, line.service),
        h("dt", {}, "level"), h("dd", {}, line.level),
        h("dt", {}, "message"), h("dd", {}, message),
        fields.map(([k, v]) => [h("dt", {}, k), h("dd", { class: "mono" }, v)])),
      fields.length || message !== line.message
        ? h("details", {}, h("summary", {}, "raw line"), h("pre", { class: "json" }, line.message))
        : null));
  }
  update() {}

  filters() {
    return {
      machine: this.machine.value, service: this.service.value.trim(), level: this.level.value,
      q: this.text.value.trim(), since_ms: localInputToMs(this.since.value),
      until_ms: localInputToMs(this.until.value),
    };
  }

  async search() {
    clearTimeout(this.timer);
    this.generation = (this.generation || 0) + 1;
    this.lines = [];
    this.ids.clear();
    this.list.setItems([]);
    await this.fetch({ ...this.filters(), limit: 1000 }, this.generation);
    this.schedule();
  }

  schedule() {
    clearTimeout(this.timer);
    if (this.stopped || !this.tail.checked || this.until.value) return;
    this.timer = setTimeout(async () => {
      const last = this.lines.length ? this.lines[this.lines.length - 1].ts : Date.now() - 60_000;
      const filters = this.filters();
      await this.fetch({ ...filters, since_ms: Math.max(last, filters.since_ms || 0), limit: 500 },
        this.generation);
      this.schedule();
    }, TAIL_MS);
  }

  async fetch(params, generation) {
    let body;
    try {
      body = await this.ctx.api.get("/api/logs", params);
    } catch (error) {
      this.status.textContent = `Could not read logs: ${error.message}`;
      return;
    }
    if (generation !== this.generation) return;
    // since_ms is inclusive: lines at the last timestamp come again and are skipped by id.
    const fresh = body.lines.filter((line) => !this.ids.has(`${line.machine_id}/${line.id}`));
    if (fresh.length || !this.lines.length) {
      const el = this.list.el;
      const atBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - 30;
      for (const line of fresh) this.ids.add(`${line.machine_id}/${line.id}`);
      this.lines = this.lines.concat(fresh).slice(-KEEP_LINES);
      this.list.setItems(this.lines);
      if (atBottom) el.scrollTop = el.scrollHeight;
    }
    this.status.textContent = this.lines.length ? `${this.lines.length} lines`
      + (this.tail.checked && !this.until.value ? " · following" : "") : "No line matches.";
  }
}
