// Machines: the fleet as one windowed table (a row per machine: pool, GPUs, VRAM, services
// up, jobs running, state), searchable, filtered by state and pool, grouped by pool; the
// selected machine's card below it (startup steps, services with restart and logs, workers);
// every worker in a windowed table. 500 machines cost as much as the 30 rows in view.

import { VirtualList, ago, badge, clear, duration, emptyNote, h, progressBar, setProgress }
  from "../dom.js";
import { machineRows, filterRows, groupRows, STATES } from "./machine_rows.js";

const CARD_WORKERS = 8;

const plural = (n, noun) => `${n} ${noun}${n === 1 ? "" : "s"}`;
const REBUILD_MS = 400;

export class MachinesView {
  constructor(ctx) {
    this.ctx = ctx;
    this.bars = new Map(); // job id -> progress bars shown in the card
    this.lastBuild = 0;
    this.buildTimer = null;
    this.selected = ctx.params.get("machine");
    this.collapsed = new Set();
  }

  mount(container) {
    const params = this.ctx.params;
    this.message = h("p", { class: "notice", role: "status" });
    this.search = h("input", { id: "machines-search", type: "search", value: params.get("q") || "",
      placeholder: "machine, GPU, service, worker", "aria-label": "Search machines",
      oninput: () => this.build() });
    this.state = h("select", { id: "machines-state", "aria-label": "State",
      onchange: () => this.build() }, h("option", { value: "" }, "any state"),
      STATES.map((s) => h("option", { value: s, selected: s === params.get("state") }, s)));
    this.pool = h("select", { id: "machines-pool", "aria-label": "Pool",
      onchange: () => this.build() }, h("option", { value: "" }, "any pool"));
    this.group = h("input", { id: "machines-group", type: "checkbox",
      checked: params.get("group") !== "0", onchange: () => this.build() });
    this.count = h("span", { id: "machines-count", class: "muted", role: "status" });
    this.table = new VirtualList({ rowHeight: 34, className: "machines-table",
      render: (item) => item.group ? this.groupRow(item) : this.machineRow(item) });
    this.tableHeader = h("div", { class: "row header machines-header" }, ["machine", "pool",
      "GPUs", "VRAM", "services up", "jobs", "state", "updated"].map((t) => h("span", {}, t)));
    this.empty = h("div", {});
    this.detail = h("div", { id: "machine-detail" });
    this.workerList = new VirtualList({ rowHeight: 34, className: "workers",
      render: (worker) => this.workerRow(worker) });
    this.workersEmpty = h("div", {});
    this.pools = h("div", { id: "pools-table" });
    container.append(
      h("section", {}, h("h2", {}, "Machines ", this.count),
        h("form", { class: "filters", onsubmit: (e) => e.preventDefault() },
          this.search, this.state, this.pool,
          h("label", { class: "check" }, this.group, " group by pool")),
        this.message, this.tableHeader, this.table.el, this.empty, this.detail),
      h("section", {}, h("h2", {}, "Pools"), h("p", { class: "hint" },
        "Workers and waiting jobs per pool (a job's pool: its requirement, or its class's measured "
        + "run time); its jobs fall back to the pools listed, after the wait shown."), this.pools),
      h("section", {}, h("h2", {}, "Workers"),
        h("div", { class: "row header workers-header" },
          h("span", {}, "worker"), h("span", {}, "machine"), h("span", {}, "status"),
          h("span", {}, "services"), h("span", {}, "current job"), h("span", {}, "progress"),
          h("span", {}, "last seen")),
        this.workerList.el, this.workersEmpty));
    this.build();
    this.loadPools();
  }

  unmount() { clearTimeout(this.buildTimer); clearTimeout(this.poolsTimer); this.stopped = true; }

  async loadPools() {
    try {
      const { pools } = await this.ctx.api.get("/api/pools");
      clear(this.pools, pools.length ? h("div", { class: "table-scroll" }, h("table", { class: "pools" },
        h("thead", {}, h("tr", {}, ["pool", "workers", "idle", "waiting jobs", "by service", "falls back to"]
          .map((t) => h("th", {}, t)))),
        h("tbody", {}, pools.map((p) => h("tr", { dataset: { pool: p.pool } },
          h("td", {}, p.pool || "(none)"), h("td", {}, String(p.workers)), h("td", {}, String(p.idle_workers)),
          h("td", {}, String(p.waiting)),
          h("td", {}, Object.entries(p.waiting_by_service).map(([s, n]) => `${s} ${n}`).join(", ") || "—"),
          h("td", {}, p.falls_back_to.map((f) => `${f.pool} after ${duration(f.after_s * 1000)}`).join(", ") || "—"))))))
        : emptyNote("No worker and no waiting job yet."));
    } catch (error) {
      clear(this.pools, h("p", { class: "error" }, `Could not load the pools: ${error.message}`));
    }
    if (!this.stopped) this.poolsTimer = setTimeout(() => this.loadPools(), 5000);
  }

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

  build() {
    const { store } = this.ctx;
    // The first builds with data are immediate; the throttle is for the stream after them.
    if (store.machines.size && store.workers.size) this.lastBuild = performance.now();
    const rows = machineRows(store);
    this.fillPools(rows);
    const shown = filterRows(rows, { text: this.search.value, state: this.state.value,
      pool: this.pool.value });
    const items = this.group.checked ? groupRows(shown, this.collapsed) : shown;
    this.count.textContent = shown.length === rows.length ? `(${rows.length})`
      : `(${shown.length} of ${rows.length})`;
    this.table.setItems(items);
    const nothing = !rows.length ? "No machine has reported yet."
      : !shown.length ? "No machine matches the search and filters." : "";
    this.table.el.hidden = this.tableHeader.hidden = Boolean(nothing);
    clear(this.empty, nothing ? emptyNote(nothing) : null);
    if (rows.length === 1) this.selected = rows[0].id;
    this.buildDetail();
    const workers = [...store.workers.values()].sort((a, b) => a.worker_id.localeCompare(b.worker_id));
    this.workerList.setItems(workers);
    this.workerList.el.hidden = !workers.length;
    clear(this.workersEmpty, workers.length ? null : emptyNote("No worker is registered."));
  }

  fillPools(rows) {
    const pools = [...new Set(rows.map((r) => r.pool))].sort();
    const key = pools.join("\n");
    if (key === this.poolsKey) return;
    this.poolsKey = key;
    const current = this.pool.value || this.ctx.params.get("pool") || "";
    clear(this.pool, h("option", { value: "" }, "any pool"),
      pools.map((p) => h("option", { value: p, selected: p === current }, p)));
  }

  groupRow(group) {
    const open = !this.collapsed.has(group.pool);
    return h("div", { class: "row group-row", dataset: { pool: group.pool }, role: "button",
      tabindex: "0", "aria-expanded": String(open),
      onclick: () => { this.toggle(group.pool); } },
      h("span", {}, `${open ? "▾" : "▸"} ${group.pool}`),
      h("span", { class: "muted" }, `${plural(group.count, "machine")} · `
        + `${plural(group.gpus, "GPU")} · ${plural(group.jobs, "job")} running`
        + (group.down ? ` · ${group.down} not ready` : "")));
  }

  toggle(pool) {
    if (this.collapsed.has(pool)) this.collapsed.delete(pool);
    else this.collapsed.add(pool);
    this.build();
  }

  machineRow(row) {
    return h("div", { class: `row machine-row${row.id === this.selected ? " selected" : ""}`,
      dataset: { machine: row.id }, role: "button", tabindex: "0",
      onclick: () => this.select(row.id) },
      h("span", { class: "mono" }, row.id),
      h("span", {}, row.pool),
      h("span", { title: row.gpuNames }, row.gpuText),
      h("span", {}, row.vramText),
      h("span", { class: row.servicesDown ? "error-text" : "" }, row.servicesText),
      h("span", { class: "num" }, String(row.jobs)),
      h("span", {}, badge(row.state, row.state === "offline" ? "bad" : `phase-${row.state}`)),
      h("span", { class: "muted" }, ago(row.updatedAt)));
  }

  select(machineId) {
    this.selected = this.selected === machineId && this.ctx.store.machines.size > 1 ? null : machineId;
    this.built = null;
    this.build();
    if (this.selected) this.detail.scrollIntoView({ block: "nearest" });
  }

  // The card is rebuilt only when what it shows changed: under a steady stream of events the
  // selected machine mostly looks the same from one build to the next.
  buildDetail() {
    const machine = this.selected ? this.ctx.store.machines.get(this.selected) : null;
    if (!machine) {
      this.built = null;
      clear(this.detail, this.ctx.store.machines.size
        ? h("p", { class: "muted" }, "Select a machine for its services, startup steps and workers.")
        : null);
      return;
    }
    this.byMachine = new Map();
    for (const w of this.ctx.store.workers.values()) {
      if (!w.machine_id) continue;
      if (!this.byMachine.has(w.machine_id)) this.byMachine.set(w.machine_id, []);
      this.byMachine.get(w.machine_id).push(w.worker_id);
    }
    const signature = this.signature(machine);
    if (this.built?.id === machine.machine_id && this.built.signature === signature) return;
    this.bars = new Map();
    this.built = { id: machine.machine_id, signature };
    clear(this.detail, this.card(machine));
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
    const placed = (store.placements.get(machine.machine_id) || []).length;
    return `${machine.updated_at}|${machine.online}|${machine.phase}|${placed}|${workers.join(",")}`;
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
      this.placement(machine),
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

  // Predictive placement (machine/placement_loop.py): what the agent fetched, loaded or
  // evicted for the fleet's model demand, and why.
  placement(machine) {
    const decisions = this.ctx.store.placements.get(machine.machine_id) || [];
    if (!decisions.length) return null;
    return h("details", { class: "steps placement" },
      h("summary", {}, `Model placement (${decisions.length} latest)`),
      h("ol", {}, decisions.map((d) => h("li", {},
        badge(d.status, d.status === "done" ? "ok" : d.status === "started" ? "" : "bad"),
        ` ${d.action} ${d.model} `, h("span", { class: "muted" }, `(${d.service}) ${d.reason}`),
        d.detail ? h("span", { class: "muted" }, ` — ${d.detail}`) : ""))));
  }

  services(machine) {
    if (!machine.services?.length) return emptyNote("This machine runs no service yet.");
    return h("div", { class: "table-scroll" }, h("table", { class: "services" },
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
              + `&service=${encodeURIComponent(s.name)}` }, "Logs")))))));
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
      this.selected = null;
      this.build();
    } catch (error) {
      this.message.textContent = `Remove failed: ${error.message}`;
    }
  }
}
