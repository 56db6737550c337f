// A webhook delivery log (the job page's and a subscription's): one row per delivery with
// its state, attempts, last answer, latency and next retry; its attempts on demand; and
// manual redelivery (same webhook-id, a fresh retry window).

import { badge, clear, dateTime, emptyNote, h } from "../dom.js";

const STATUS_KIND = { delivered: "ok", failed: "bad", pending: "pending" };

function lastAnswer(delivery) {
  if (delivery.last_status_code !== null) return `HTTP ${delivery.last_status_code}`;
  return delivery.last_error || "—";
}

function latency(ms) {
  return ms === null || ms === undefined ? "—" : `${ms.toFixed(1)} ms`;
}

function nextStep(delivery) {
  if (delivery.status === "delivered") return `delivered ${dateTime(delivery.delivered_at)}`;
  if (delivery.status === "failed") return "given up";
  return delivery.next_at ? `retry ${dateTime(delivery.next_at)}` : "due now";
}

export class DeliveryLog {
  // `load()` answers the deliveries to show; `showJob` links each row to its job.
  constructor(api, { load, showJob = true, id = "webhook-deliveries" }) {
    this.api = api;
    this.loadDeliveries = load;
    this.showJob = showJob;
    this.rows = h("tbody");
    this.status = h("div", { role: "status" });
    const headings = ["event", showJob ? "job" : null, "url", "status", "attempts",
      "last answer", "latency", "next", ""].filter((t) => t !== null);
    this.el = h("div", { id, class: "delivery-log" },
      h("div", { class: "table-scroll" }, h("table", { class: "deliveries" },
        h("thead", {}, h("tr", {}, headings.map((t) => h("th", {}, t)))), this.rows)),
      this.status);
  }

  async refresh() {
    let deliveries;
    try {
      deliveries = await this.loadDeliveries();
    } catch (error) {
      clear(this.status, h("p", { class: "error" }, `Could not read the deliveries: ${error.message}`));
      return;
    }
    clear(this.rows, deliveries.map((delivery) => this.row(delivery)));
    clear(this.status, deliveries.length ? null : emptyNote("No webhook delivery yet."));
  }

  row(delivery) {
    const attempts = h("td", { class: "attempt-log", colspan: "9", hidden: true });
    const cells = [
      h("td", {}, delivery.event),
      this.showJob ? h("td", { class: "mono" }, delivery.job_id
        ? h("a", { href: `#/jobs/${encodeURIComponent(delivery.job_id)}` }, delivery.job_id) : "—") : null,
      h("td", { class: "mono" }, delivery.url),
      h("td", {}, badge(delivery.status, STATUS_KIND[delivery.status])),
      h("td", {}, h("button", { type: "button", class: "ghost",
        title: "Show every attempt", onclick: () => this.showAttempts(delivery.id, attempts) },
        String(delivery.attempts))),
      h("td", {}, lastAnswer(delivery)),
      h("td", {}, latency(delivery.last_latency_ms)),
      h("td", { class: "muted" }, nextStep(delivery)),
      h("td", {}, h("button", { type: "button", class: "redeliver",
        onclick: () => this.redeliver(delivery.id) }, "Redeliver")),
    ];
    return [h("tr", { dataset: { delivery: delivery.id, status: delivery.status } }, cells),
      h("tr", { class: "attempts-row" }, attempts)];
  }

  async showAttempts(deliveryId, cell) {
    if (!cell.hidden) { cell.hidden = true; return; }
    cell.hidden = false;
    clear(cell, "…");
    try {
      const detail = await this.api.get(`/api/webhook-deliveries/${encodeURIComponent(deliveryId)}`);
      clear(cell, h("ol", {}, (detail.attempt_log || []).map((a) => h("li", {},
        `${dateTime(a.at)} — ${a.status_code !== null ? `HTTP ${a.status_code}` : a.error} `
        + `in ${latency(a.latency_ms)}`))),
        h("details", {}, h("summary", {}, `Payload (webhook-id ${deliveryId})`),
          h("pre", { class: "json" }, JSON.stringify(detail.payload, null, 2))));
    } catch (error) {
      clear(cell, h("p", { class: "error" }, error.message));
    }
  }

  async redeliver(deliveryId) {
    try {
      const delivery = await this.api.post(
        `/api/webhook-deliveries/${encodeURIComponent(deliveryId)}/redeliver`);
      clear(this.status, h("p", { class: "notice" }, `${deliveryId} is ${delivery.status} again.`));
    } catch (error) {
      clear(this.status, h("p", { class: "error" }, `Redelivery failed: ${error.message}`));
      return;
    }
    const note = this.status.firstChild;
    await this.refresh();
    if (note && !this.status.firstChild) this.status.append(note);
  }
}
