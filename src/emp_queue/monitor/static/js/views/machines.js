// Machines as cards (phase, hardware, startup steps, services, workers) and every worker in
// a windowed table. Cards are rebuilt at most twice a second; progress bars move in place.

import { VirtualList, ago, badge, clear, duration, h, progressBar, setProgress } from "../dom.js";

const CARD_WORKERS = 8;
const REBUILD_MS = 400;

export class MachinesView {
  constructor(ctx) {
    this.ctx = ctx;
    this.bars = new Map(); // job id -> progress bars shown in cards
    this.lastBuild = 0;
    this.buildTimer = null;
  }

  mount(container) {
    this.message = h("p", { class: "notice", role: "status" });
    this.cards = h("div", { class: "cards", id: "machine-cards" });
    this.workerList = new VirtualList({ rowHeight: 34, className: "workers",
      render: (worker) => this.workerRow(worker) });
    container.append(
      h("section", {}, h("h2", {}, "Machines"), this.message, this.cards),
      h("section", {}, h("h2", {}, "Workers"),
        h("div", { class: "row header workers-header" },
          h("span", {}, "worker"), h("span", {}, "machine"), h("span", {}, "status"),
          h("span", {}, "services"), h("span", {}, "current job"), h("span", {}, "progress"),
          h("span", {}, "last seen")),
        this.workerList.el));
    this.build();
  }

  unmount() { clearTimeout(this.buildTimer); }

  update(topics) {
    if (topics.has("machines") || topics.has("workers") || topics.has("active")) this.scheduleBuild();
    else if (topics.has("progress")) this.moveBars();
  }

  scheduleBuild() {
    const wait = this.lastBuild + REBUILD_MS - performance.now();
    if (wait <= 0) { this.build(); return; }
    if (!this.buildTimer) {
      this.buildTimer = setTimeout(() => { this.buildTimer = null; this.build(); }, wait);
    }
  }

  // Only the cards whose content changed are rebuilt: under a steady stream of events most
  // machines look the same from one build to the next.
  build() {
    const { store } = this.ctx;
    // The first builds with data are immediate; the throttle is for the stream after them.
    if (store.machines.size && store.workers.size) this.lastBuild = performance.now();
    const machines = [...store.machines.values()];
    this.message.textContent = machines.length ? "" : "No machine has reported yet.";
    this.byMachine = new Map();
    for (const w of store.workers.values()) {
      if (!w.machine_id) continue;
      if (!this.byMachine.has(w.machine_id)) this.byMachine.set(w.machine_id, []);
      this.byMachine.get(w.machine_id).push(w.worker_id);
    }
    const built = new Map();
    const cards = machines.map((m) => {
      const signature = this.signature(m);
      const known = this.built?.get(m.machine_id);
      const entry = known && known.signature === signature
        ? known : { signature, el: this.card(m, signature) };
      built.set(m.machine_id, entry);
      return entry.el;
    });
    this.built = built;
    this.bars = new Map([...this.bars]
      .map(([jobId, bars]) => [jobId, bars.filter((bar) => bar.isConnected)])
      .filter(([jobId, bars]) => bars.length && store.active.has(jobId)));
    const shown = this.cards.children;
    if (cards.length !== shown.length) clear(this.cards, cards);
    else cards.forEach((card, i) => { if (shown[i] !== card) shown[i].replaceWith(card); });
    const workers = [...store.workers.values()].sort((a, b) => a.worker_id.localeCompare(b.worker_id));
    this.workerList.setItems(workers);
  }

  moveBars() {
    for (const [jobId, bars] of this.bars) {
      const job = this.ctx.store.active.get(jobId);
      if (job) for (const bar of bars) setProgress(bar, job.progress);
    }
    this.workerList.refresh();
  }

  trackBar(jobId, bar) {
    if (!this.bars.has(jobId)) this.bars.set(jobId, []);
    this.bars.get(jobId).push(bar);
    return bar;
  }

  signature(machine) {
    const { store } = this.ctx;
    const workers = this.workerIds(machine).slice(0, CARD_WORKERS).map((id) => {
      const worker = store.workers.get(id);
      return worker ? `${id}:${worker.status}:${store.workerJob(worker)?.id ?? ""}` : id;
    });
    return `${machine.updated_at}|${machine.online}|${machine.phase}|${workers.join(",")}`;
  }

  workerIds(machine) {
    const ids = new Set([...(machine.workers || []), ...(this.byMachine.get(machine.machine_id) || [])]);
    return [...ids].sort();
  }

  card(machine) {
    const hw = machine.hardware || {};
    const gpus = (hw.gpus || []).map((g) => `GPU ${g.index}: ${g.name} (${g.memory_gb} GB)`);
    return h("article", { class: `card machine ${machine.online ? "" : "offline"}`,
      dataset: { machine: machine.machine_id } },
      h("header", {},
        h("h3", {}, machine.machine_id),
        badge(machine.phase, `phase-${machine.phase}`),
        badge(machine.online ? "online" : "offline", machine.online ? "ok" : "bad"),
        !machine.online && h("button", { class: "danger small", type: "button",
          onclick: () => this.remove(machine) }, "Remove")),
      h("p", { class: "hardware" },
        gpus.length ? gpus.join(" · ") : "no GPU",
        ` · ${hw.cpu_cores || "?"} CPU cores · ${hw.ram_gb || "?"} GB RAM`,
        machine.startup_ms ? ` · started in ${duration(machine.startup_ms)}` : "",
        ` · updated ${ago(machine.updated_at)}`),
      this.steps(machine),
      this.services(machine),
      this.workers(machine));
  }

  steps(machine) {
    if (!machine.steps?.length) return null;
    return h("details", { class: "steps", open: machine.phase === "starting" },
      h("summary", {}, `Startup steps (${machine.steps.length})`),
      h("ol", {}, machine.steps.map((s) => h("li", {},
        badge(s.status, `step-${s.status}`), ` ${s.name} `,
        h("span", { class: "muted" }, s.duration_ms !== null ? duration(s.duration_ms) : ""),
        s.detail ? h("span", { class: "muted" }, ` — ${s.detail}`) : ""))));
  }

  services(machine) {
    if (!machine.services?.length) return h("p", { class: "muted" }, "No services.");
    return h("table", { class: "services" },
      h("thead", {}, h("tr", {}, ["service", "kind", "status", "restarts", "where", ""]
        .map((t) => h("th", {}, t)))),
      h("tbody", {}, machine.services.map((s) => h("tr", { dataset: { service: s.name } },
        h("td", {}, s.name), h("td", {}, s.kind),
        h("td", {}, badge(s.status, `svc-${s.status}`)),
        h("td", {}, String(s.restarts)),
        h("td", { class: "muted" }, [s.port ? `:${s.port}` : "", s.gpu !== null && s.gpu !== undefined
          ? ` gpu ${s.gpu}` : "", s.pid ? ` pid ${s.pid}` : ""].join("")),
        h("td", { class: "actions" },
          h("button", { type: "button", class: "small", title: `Restart ${s.name}`,
            onclick: (e) => this.restart(machine, s, e.target) }, "Restart"),
          h("a", { class: "button small ghost",
            href: `#/logs?machine=${encodeURIComponent(machine.machine_id)}`
              + `&service=${encodeURIComponent(s.name)}` }, "Logs"))))));
  }

  workers(machine) {
    const { store } = this.ctx;
    const ids = this.workerIds(machine);
    if (!ids.length) return null;
    const shown = ids.slice(0, CARD_WORKERS);
    return h("div", { class: "card-workers" },
      h("h4", {}, `Workers (${ids.length})`),
      shown.map((id) => {
        const worker = store.workers.get(id);
        const job = worker ? store.workerJob(worker) : null;
        return h("div", { class: "card-worker", dataset: { worker: id } },
          h("span", { class: "mono" }, id),
          badge(worker ? worker.status : "gone", worker ? `w-${worker.status}` : "bad"),
          job ? h("a", { class: "mono", href: `#/jobs/${encodeURIComponent(job.id)}` }, job.id) : h("span", { class: "muted" }, "idle"),
          job ? this.trackBar(job.id, progressBar(job.progress)) : null);
      }),
      ids.length > CARD_WORKERS ? h("p", { class: "muted" }, `+${ids.length - CARD_WORKERS} more below`) : null);
  }

  workerRow(worker) {
    const job = this.ctx.store.workerJob(worker);
    return h("div", { class: "row workers-row", dataset: { worker: worker.worker_id } },
      h("span", { class: "mono" }, worker.worker_id),
      h("span", {}, worker.machine_id || "—"),
      h("span", {}, badge(worker.status, `w-${worker.status}`)),
      h("span", {}, (worker.capabilities?.services || []).join(", ")),
      job ? h("a", { class: "mono", href: `#/jobs/${encodeURIComponent(job.id)}` }, job.id)
        : h("span", { class: "muted" }, "idle"),
      job ? progressBar(job.progress) : h("span", {}),
      h("span", { class: "muted" }, ago(worker.last_seen_ms)));
  }

  async restart(machine, service, button) {
    button.disabled = true;
    try {
      const sent = await this.ctx.api.post(
        `/api/machines/${encodeURIComponent(machine.machine_id)}/services/${encodeURIComponent(service.name)}/restart`);
      this.message.textContent = sent.delivered
        ? `Restart of ${service.name} sent to ${machine.machine_id}.`
        : `No agent on ${machine.machine_id} heard the restart of ${service.name}.`;
    } catch (error) {
      this.message.textContent = `Restart failed: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  }

  async remove(machine) {
    if (!confirm(`Remove ${machine.machine_id}? Its workers' jobs go back to the queue.`)) return;
    try {
      const removed = await this.ctx.api.del(`/api/machines/${encodeURIComponent(machine.machine_id)}`);
      this.ctx.store.machines.delete(machine.machine_id);
      this.message.textContent = `Removed ${machine.machine_id}; ${removed.requeued} jobs requeued.`;
      this.build();
    } catch (error) {
      this.message.textContent = `Remove failed: ${error.message}`;
    }
  }
}
