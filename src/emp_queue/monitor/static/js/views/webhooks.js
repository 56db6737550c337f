// Webhooks: every subscription (GET /api/webhooks) and the delivery log of the one picked,
// with each delivery's attempts and manual redelivery. Job webhooks show on the job's page.

import { clear, dateTime, emptyNote, h } from "../dom.js";
import { DeliveryLog } from "./deliveries.js";

const REFRESH_MS = 5000;

export class WebhooksView {
  constructor(ctx) {
    this.ctx = ctx;
    this.selected = ctx.params.get("subscription");
  }

  mount(container) {
    this.rows = h("tbody", { id: "subscription-rows" });
    this.status = h("div", { role: "status" });
    this.logTitle = h("h3", {});
    this.log = h("div", { id: "subscription-log" });
    container.append(h("section", {}, h("h2", {}, "Webhooks"),
      h("p", { class: "muted" }, "Subscriptions send job events to a URL, signed (Standard "
        + "Webhooks). A job's own webhook shows on the job's page."),
      h("div", { class: "table-scroll" }, h("table", { class: "subscriptions" },
        h("thead", {}, h("tr", {}, ["id", "customer", "url", "events", "created", ""]
          .map((t) => h("th", {}, t)))),
        this.rows)),
      this.status, this.logTitle, this.log));
    this.load();
    this.timer = setInterval(() => { if (!document.hidden) this.deliveries?.refresh(); }, REFRESH_MS);
  }

  unmount() { clearInterval(this.timer); }
  update() {}

  async load() {
    let body;
    try {
      body = await this.ctx.api.get("/api/webhooks");
    } catch (error) {
      clear(this.status, h("p", { class: "error" }, `Could not read the subscriptions: ${error.message}`));
      return;
    }
    const subscriptions = body.subscriptions;
    clear(this.rows, subscriptions.map((s) => h("tr", {
      dataset: { subscription: s.id }, class: s.id === this.selected ? "selected" : null },
      h("td", { class: "mono" }, s.id),
      h("td", {}, s.customer_id || "every customer"),
      h("td", { class: "mono" }, s.url),
      h("td", {}, s.events.join(", ")),
      h("td", { class: "muted" }, dateTime(s.created_at)),
      h("td", {}, h("button", { type: "button", class: "ghost",
        onclick: () => this.ctx.navigate(`/webhooks?subscription=${encodeURIComponent(s.id)}`) },
        "Deliveries")))));
    clear(this.status, subscriptions.length ? null : emptyNote(
      "No subscription yet: create one with emp webhooks add or POST /api/webhooks."));
    if (!this.selected && subscriptions.length) this.selected = subscriptions[0].id;
    if (this.selected) this.showLog(this.selected);
  }

  showLog(subscriptionId) {
    this.logTitle.textContent = `Deliveries of ${subscriptionId}, newest first`;
    this.deliveries = new DeliveryLog(this.ctx.api, { load: async () => (await this.ctx.api.get(
      `/api/webhooks/${encodeURIComponent(subscriptionId)}/deliveries`, { limit: 200 })).deliveries });
    clear(this.log, this.deliveries.el);
    this.deliveries.refresh();
  }
}
