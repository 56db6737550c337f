// The audit log (GET /api/audit): who did what to which job, worker, machine, service or key,
// when and from where, newest first; filtered by family, older pages on demand.

import { badge, clear, dateTime, emptyNote, h } from "../dom.js";

const FAMILIES = [["", "every action"], ["job.", "jobs"], ["worker.", "workers"],
  ["machine.", "machines"], ["service.", "services"], ["key.", "API keys"]];
const PAGE = 200;

export class AuditView {
  constructor(ctx) {
    this.ctx = ctx;
    this.cursor = null;
  }

  mount(container) {
    this.family = h("select", { id: "audit-action", "aria-label": "Actions",
      onchange: () => this.load(true) },
      FAMILIES.map(([value, label]) => h("option", { value }, label)));
    this.rows = h("tbody", { id: "audit-rows" });
    this.more = h("button", { type: "button", class: "ghost", id: "audit-more", hidden: true,
      onclick: () => this.load(false) }, "Older entries");
    this.status = h("div", { role: "status" });
    container.append(h("section", {}, h("h2", {}, "Audit log"),
      h("form", { class: "filters", onsubmit: (e) => e.preventDefault() }, this.family),
      h("div", { class: "table-scroll" }, h("table", { class: "audit" },
        h("thead", {}, h("tr", {}, ["when", "action", "target", "who", "from", "status"]
          .map((t) => h("th", {}, t)))),
        this.rows)),
      this.status, this.more));
    this.load(true);
  }

  unmount() {}
  update() {}

  async load(fresh) {
    if (fresh) { this.cursor = null; clear(this.rows); }
    const generation = this.generation = (this.generation || 0) + 1;
    let page;
    try {
      page = await this.ctx.api.get("/api/audit", { limit: PAGE, before: this.cursor || undefined,
        action: this.family.value || undefined });
    } catch (error) {
      clear(this.status, h("p", { class: "error" }, `Could not read the audit log: ${error.message}`));
      return;
    }
    if (generation !== this.generation) return;
    for (const entry of page.entries) this.rows.append(this.row(entry));
    this.cursor = page.next_cursor;
    this.more.hidden = !page.next_cursor;
    clear(this.status, this.rows.children.length ? null
      : emptyNote("No operator action has been recorded yet."));
  }

  row(entry) {
    const refused = entry.status !== null && entry.status >= 400;
    return h("tr", { dataset: { action: entry.action } },
      h("td", { class: "muted" }, dateTime(entry.ts)),
      h("td", {}, entry.action),
      h("td", { class: "mono" }, entry.target),
      h("td", {}, h("span", { class: "mono" }, entry.actor), entry.role ? ` (${entry.role})` : ""),
      h("td", { class: "muted" }, entry.source),
      h("td", {}, entry.status === null ? "" : badge(String(entry.status), refused ? "bad" : "ok")));
  }
}
