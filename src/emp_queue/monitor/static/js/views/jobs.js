// Jobs: waiting depth per service, the running jobs with live progress, and the finished
// ones paged from the server (cursor pages, loaded as the windowed list scrolls).

import { VirtualList, ago, badge, clear, duration, emptyNote, h, progressBar } from "../dom.js";

const LISTS = {
  pending: "Pending",
  scheduled: "Scheduled",
  blocked: "Blocked",
  completed: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
  timeout: "Timed out",
  unworkable: "Unworkable",
  dead: "Dead letters",
};
// Every status GET /api/queues counts, as `emp queues` prints them: the table and the CLI agree.
const QUEUE_COLUMNS = [
  ["pending", "pending"], ["scheduled", "scheduled"], ["blocked", "blocked"],
  ["unworkable", "unworkable"], ["assigned", "assigned"],
  ["in_progress", "running"], ["completed", "completed"], ["failed", "failed"],
  ["cancelled", "cancelled"], ["timeout", "timed out"], ["expired", "expired"],
];
const PAGE = 100;
const RELOAD_MS = 3000;

export class JobsView {
  constructor(ctx) {
    this.ctx = ctx;
    this.list = ctx.params.get("list") || "completed";
    this.loading = false;
    this.lastReload = 0;
  }

  mount(container) {
    this.queues = h("tbody", { id: "queues" });
    this.activeCount = h("span", { class: "muted" });
    this.active = new VirtualList({ rowHeight: 34, className: "active-jobs",
      render: (job) => this.activeRow(job) });
    this.activeHeader = h("div", { class: "row header active-header" }, ["job", "service",
      "worker", "status", "progress"].map((t) => h("span", {}, t)));
    this.activeEmpty = h("div", { id: "running-empty" });
    this.finishedHeader = h("div", { class: "row header finished-header" }, ["job", "service",
      "status", "priority", "created", "took", "error"].map((t) => h("span", {}, t)));
    this.tabs = h("div", { class: "tabs", role: "tablist" },
      Object.entries(LISTS).map(([name, label]) => h("button", {
        type: "button", role: "tab", dataset: { list: name },
        class: name === this.list ? "active" : "", onclick: () => this.show(name) }, label)));
    this.finished = new VirtualList({ rowHeight: 34, className: "finished-jobs",
      render: (job) => this.finishedRow(job), onNearEnd: () => this.loadMore() });
    this.listStatus = h("p", { class: "muted", role: "status" });
    container.append(
      h("section", {}, h("h2", {}, "Jobs per service"),
        h("div", { class: "table-scroll" }, h("table", { class: "queues" },
          h("thead", {}, h("tr", {}, ["service", ...QUEUE_COLUMNS.map(([, label]) => label),
            "oldest wait"].map((t) => h("th", {}, t)))),
          this.queues))),
      h("section", {}, h("h2", {}, "Running ", this.activeCount),
        this.activeHeader, this.active.el, this.activeEmpty),
      h("section", {}, h("h2", {}, "Jobs"), this.tabs,
        this.finishedHeader, this.finished.el, this.listStatus));
    this.renderQueues();
    this.renderActive();
    this.show(this.list);
  }

  unmount() {}

  update(topics) {
    if (topics.has("queues")) this.renderQueues();
    if (topics.has("active")) this.renderActive();
    else if (topics.has("progress")) this.active.refresh();
    if (topics.has("jobs") && this.finished.scrollTop === 0
        && performance.now() - this.lastReload > RELOAD_MS) this.show(this.list, true);
  }

  renderQueues() {
    const queues = this.ctx.store.queues;
    if (!queues.length) {
      clear(this.queues, h("tr", {}, h("td", { colspan: QUEUE_COLUMNS.length + 2, class: "muted" },
        "No job has been submitted yet.")));
      return;
    }
    // A paused or draining queue (queue control) is named in the service cell: operators scan
    // for it, and `emp queues` prints the same state.
    clear(this.queues, queues.map((q) => h("tr",
      { dataset: { service: q.service, state: q.state || "open" } },
      h("td", {}, q.service, q.state && q.state !== "open" ? [" ", badge(q.state)] : []),
      QUEUE_COLUMNS.map(([status]) =>
        h("td", { class: "num", dataset: { status } }, String(q.counts[status] || 0))),
      h("td", {}, q.oldest_wait_ms === null ? "—" : duration(q.oldest_wait_ms)))));
  }

  renderActive() {
    const jobs = [...this.ctx.store.active.values()].sort((a, b) => a.since - b.since);
    this.activeCount.textContent = `(${jobs.length})`;
    this.active.setItems(jobs);
    this.active.el.hidden = this.activeHeader.hidden = !jobs.length;
    clear(this.activeEmpty, jobs.length ? null
      : emptyNote("No job is running: nothing is assigned to a worker right now."));
  }

  activeRow(job) {
    return h("div", { class: "row active-row", dataset: { job: job.id } },
      h("a", { class: "mono", href: `#/jobs/${encodeURIComponent(job.id)}` }, job.id),
      h("span", {}, job.service || "—"),
      h("span", { class: "mono" }, job.worker_id || "—"),
      h("span", {}, badge(job.status)),
      progressBar(job.progress, job.message ? `${Math.round(job.progress || 0)}% ${job.message}` : null));
  }

  finishedRow(job) {
    const took = job.finished_at && job.created_at ? duration(job.finished_at - job.created_at) : "—";
    return h("div", { class: "row finished-row", dataset: { job: job.id } },
      h("a", { class: "mono", href: `#/jobs/${encodeURIComponent(job.id)}` }, job.id),
      h("span", {}, job.service_required),
      h("span", {}, badge(job.status), job.dead_lettered ? badge("dead", "bad") : null),
      h("span", { class: "num" }, String(job.priority)),
      h("span", { class: "muted" }, ago(job.created_at)),
      h("span", {}, took),
      h("span", { class: "error-text" }, job.error ? `${job.error.failure_class}: ${job.error.message}` : ""));
  }

  async show(name, quiet = false) {
    this.list = name;
    this.lastReload = performance.now();
    for (const tab of this.tabs.children) tab.classList.toggle("active", tab.dataset.list === name);
    this.items = [];
    this.cursor = null;
    this.offset = 0;
    this.done = false;
    this.generation = (this.generation || 0) + 1;
    if (!quiet) this.finished.setItems([]);
    await this.loadMore(true);
  }

  async loadMore(replace = false) {
    if (!replace && (this.loading || this.done)) return;
    this.loading = true;
    const generation = this.generation;
    try {
      let jobs;
      if (this.list === "dead") {
        jobs = (await this.ctx.api.get("/api/dead-letters", { offset: this.offset, limit: PAGE })).jobs;
        this.offset += jobs.length;
        this.done = jobs.length < PAGE;
      } else {
        const page = await this.ctx.api.get("/api/jobs", { status: this.list, limit: PAGE, cursor: this.cursor });
        jobs = page.jobs;
        this.cursor = page.next_cursor;
        this.done = !page.next_cursor;
      }
      if (generation !== this.generation) return;
      this.items = this.items.concat(jobs);
      this.finished.setItems(this.items);
      this.finished.el.hidden = this.finishedHeader.hidden = !this.items.length;
      this.listStatus.textContent = this.items.length
        ? `${this.items.length}${this.done ? "" : "+"} jobs` : `No ${LISTS[this.list].toLowerCase()} job.`;
    } catch (error) {
      this.listStatus.textContent = `Could not load: ${error.message}`;
    } finally {
      if (generation === this.generation) this.loading = false;
    }
  }
}
