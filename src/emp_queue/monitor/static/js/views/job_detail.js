// One job: its fields, a timeline of its events (SSE), live progress, outputs (images
// inline, text), its error, why it is waiting, and the actions an operator may take.

import { ApiError } from "../api.js";
import { badge, bytes, clear, clock, dateTime, duration, h, progressBar, setProgress } from "../dom.js";
import { DeliveryLog } from "./deliveries.js";

const TERMINAL = new Set(["completed", "failed", "cancelled", "timeout", "expired"]);
const WAITING = new Set(["pending", "unworkable"]);

export class JobDetailView {
  constructor(ctx, jobId) {
    this.ctx = ctx;
    this.jobId = jobId;
    this.abort = new AbortController();
    this.revokers = [];
    this.seenEvents = new Set();
  }

  mount(container) {
    this.title = h("h2", {}, "Job ", h("span", { class: "mono" }, this.jobId));
    this.statusEl = h("span", { id: "job-status" });
    this.bar = progressBar(0);
    this.actions = h("div", { class: "actions" });
    this.message = h("p", { class: "notice", role: "status" });
    this.fields = h("dl", { class: "fields" });
    this.error = h("div", { id: "job-error" });
    this.explain = h("div", { id: "job-explain" });
    this.outputs = h("div", { id: "job-outputs", class: "outputs" });
    this.timeline = h("ol", { id: "job-timeline", class: "timeline" });
    this.payload = h("pre", { class: "json" });
    this.webhooks = new DeliveryLog(this.ctx.api, { showJob: false, id: "job-webhooks",
      load: async () => (await this.ctx.api.get(
        `/api/jobs/${encodeURIComponent(this.jobId)}/webhooks`)).deliveries });
    container.append(h("section", { class: "job-detail" },
      h("p", {}, h("a", { href: "#/jobs" }, "← Jobs")),
      this.title, h("div", { class: "status-line" }, this.statusEl, this.bar), this.actions,
      this.message, this.error, this.explain, this.outputs,
      h("div", { class: "columns" },
        h("div", {}, h("h3", {}, "Fields"), this.fields,
          h("h3", {}, "Payload"), this.payload),
        h("div", {}, h("h3", {}, "Timeline"), this.timeline)),
      h("h3", {}, "Webhook deliveries"), this.webhooks.el));
    this.unwatch = this.ctx.store.watchJob(this.jobId, (event) => this.onLiveEvent(event));
    this.load();
    this.followEvents();
  }

  unmount() {
    this.abort.abort();
    this.unwatch?.();
    for (const revoke of this.revokers) revoke();
  }

  update() {}

  async load() {
    try {
      this.job = await this.ctx.api.get(`/api/jobs/${encodeURIComponent(this.jobId)}`);
    } catch (error) {
      this.message.textContent = error instanceof ApiError && error.status === 404
        ? `No job ${this.jobId} (unknown, or expired after the retention period).`
        : `Could not load the job: ${error.message}`;
      return;
    }
    this.render();
  }

  render() {
    const job = this.job;
    clear(this.statusEl, badge(job.status), job.dead_lettered ? badge("dead letter", "bad") : null);
    setProgress(this.bar, job.status === "completed" ? 100 : job.progress,
      job.message ? `${Math.round(job.progress || 0)}% ${job.message}` : null);
    this.renderActions(job);
    clear(this.fields, this.fieldRows(job));
    this.payload.textContent = JSON.stringify(job.payload, null, 2);
    clear(this.error, job.error ? h("div", { class: "error-box" },
      h("strong", {}, `Failed: ${job.error.failure_class}`), h("p", {}, job.error.message),
      job.error.details && Object.keys(job.error.details).length
        ? h("pre", { class: "json" }, JSON.stringify(job.error.details, null, 2)) : null) : null);
    if (WAITING.has(job.status)) this.loadExplanation();
    else clear(this.explain);
    if (job.status === "completed") this.renderOutputs(job.result);
    this.webhooks.refresh();
  }

  fieldRows(job) {
    const rows = [
      ["service", job.service_required], ["priority", job.priority],
      ["customer", job.customer_id], ["workflow", job.workflow_id &&
        `${job.workflow_id} (step ${job.current_step ?? "?"} of ${job.total_steps ?? "?"})`],
      ["attempt", `${job.attempt} of ${job.max_attempts} (${job.failures} failures)`],
      ["worker", job.worker_id], ["requirements", JSON.stringify(job.requirements)],
      ["created", dateTime(job.created_at)], ["assigned", dateTime(job.assigned_at)],
      ["started", dateTime(job.started_at)], ["finished", dateTime(job.finished_at)],
      ["took", job.finished_at ? duration(job.finished_at - job.created_at) : "—"],
      ["timeout", job.timeout_s ? `${job.timeout_s} s` : "none"],
    ];
    return rows.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]);
  }

  renderActions(job) {
    const buttons = [];
    if (!TERMINAL.has(job.status)) {
      buttons.push(h("button", { type: "button", class: "danger", id: "cancel-job",
        onclick: () => this.act("cancel", `/api/jobs/${encodeURIComponent(job.id)}/cancel`,
          { reason: "cancelled from the monitor" }) }, "Cancel"));
    }
    if (job.dead_lettered) {
      buttons.push(h("button", { type: "button", id: "requeue-job",
        onclick: () => this.act("requeue", `/api/dead-letters/${encodeURIComponent(job.id)}/requeue`) },
        "Requeue"));
    } else if (TERMINAL.has(job.status) && job.status !== "completed") {
      buttons.push(h("button", { type: "button", id: "retry-job",
        onclick: () => this.act("retry", `/api/jobs/${encodeURIComponent(job.id)}/retry`) }, "Retry"));
    }
    clear(this.actions, buttons);
  }

  async act(name, path, body) {
    try {
      this.job = await this.ctx.api.post(path, body);
      this.message.textContent = `${name}: the job is now ${this.job.status}.`;
      this.render();
    } catch (error) {
      this.message.textContent = `${name} failed: ${error.message}`;
    }
  }

  async loadExplanation() {
    try {
      const why = await this.ctx.api.get(`/api/jobs/${encodeURIComponent(this.jobId)}/explain`);
      const lines = [
        `${why.live_workers} live workers; ${why.serving_service} serve ${this.job.service_required}; `
          + `${why.matching_workers} can run this job.`,
        why.service_down_workers ? `${why.service_down_workers} of them cannot reach their service (service_down): `
          + "the job waits, without spending attempts, until a service answers again." : null,
        ...why.requirements.map((r) => `${r.requirement}: satisfied by ${r.satisfied_by}`),
        why.nearest_miss ? `Nearest miss: ${why.nearest_miss.worker_id} — ${why.nearest_miss.reasons.join("; ")}` : null,
        why.position !== null ? `Position: ${why.position === 0 ? "next" : `${why.position} jobs ahead`} among jobs those workers can run.` : null,
        why.estimated_start_s != null ? `Expected to start in ${duration(why.estimated_start_s * 1000)} (${why.estimate_basis}).` : null,
        why.pool ? `Pool: ${why.pool.summary}.` : null,
        Object.keys(why.derived_requirements || {}).length ? `Read from the payload: ${Object.entries(why.derived_requirements).map(([k, v]) => `${k} ${v.join(", ")}`).join("; ")}.` : null,
      ].filter(Boolean);
      clear(this.explain, h("div", { class: "explain-box" }, h("h3", {}, "Why is it waiting?"),
        h("ul", {}, lines.map((line) => h("li", {}, line)))));
    } catch (error) {
      clear(this.explain, h("p", { class: "muted" }, `No explanation: ${error.message}`));
    }
  }

  async renderOutputs(result) {
    if (this.outputsShown) return;
    this.outputsShown = true;
    const items = [];
    for (const output of result?.outputs || []) {
      const type = output.content_type || "";
      const caption = h("figcaption", {}, `${type} · ${bytes(output.size)} · `,
        h("span", { class: "mono" }, (output.sha256 || "").slice(0, 12)));
      if (type.startsWith("image/")) {
        const img = h("img", { alt: `output ${output.key || output.url}`, class: "output-image" });
        items.push(h("figure", {}, img, caption));
        this.ctx.api.outputUrl(output).then((url) => this.ctx.api.assetUrl(url)).then(({ src, revoke }) => {
          this.revokers.push(revoke);
          img.src = src;
        }).catch((error) => img.replaceWith(h("p", { class: "error" }, error.message)));
      } else if (type.startsWith("text/") || type === "application/json") {
        const pre = h("pre", { class: "output-text" }, "…");
        items.push(h("figure", {}, pre, caption));
        this.ctx.api.outputUrl(output).then((url) => this.ctx.api.assetText(url))
          .then((t) => { pre.textContent = t; })
          .catch((error) => { pre.textContent = error.message; });
      } else {
        items.push(h("figure", {}, h("p", {}, output.url), caption));
      }
    }
    if (typeof result?.text === "string") items.push(h("pre", { class: "output-text" }, result.text));
    clear(this.outputs, items.length ? h("h3", {}, "Outputs") : null, items,
      h("details", {}, h("summary", {}, "Result (JSON)"),
        h("pre", { class: "json" }, JSON.stringify(result, null, 2))));
  }

  async followEvents() {
    try {
      await this.ctx.api.jobEvents(this.jobId, (event) => this.addTimeline(event), this.abort.signal);
    } catch (error) {
      this.timeline.append(h("li", { class: "muted" }, `Timeline unavailable: ${error.message}`));
    }
  }

  addTimeline(event) {
    if (this.seenEvents.has(event.id)) return;
    this.seenEvents.add(event.id);
    const data = { ...event.data };
    const ts = data.ts;
    delete data.ts;
    const detail = Object.entries(data).filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
    this.timeline.append(h("li", { dataset: { type: event.type } },
      h("span", { class: "muted" }, clock(ts)), " ", h("strong", {}, event.type), " ",
      h("span", { class: "detail" }, detail)));
  }

  // The monitor socket's events for this job: move the bar now, reload on a change of state.
  onLiveEvent(event) {
    if (!this.job) return;
    if (event.type === "update_job_progress") {
      if (event.progress !== undefined && event.progress !== null) this.job.progress = event.progress;
      if (event.message) this.job.message = event.message;
      setProgress(this.bar, this.job.progress,
        this.job.message ? `${Math.round(this.job.progress || 0)}% ${this.job.message}` : null);
      if (this.job.status === "assigned") { this.job.status = "in_progress"; clear(this.statusEl, badge("in_progress")); }
    } else {
      this.load();
    }
  }
}
