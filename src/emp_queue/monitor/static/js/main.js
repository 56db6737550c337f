// Boot: log in, open the monitor socket, route between views (#/machines, #/jobs, ...).

import { Api, ApiError } from "./api.js";
import { LiveSocket } from "./live.js";
import { Store } from "./store.js";
import { MachinesView } from "./views/machines.js";
import { JobsView } from "./views/jobs.js";
import { JobDetailView } from "./views/job_detail.js";
import { SubmitView } from "./views/submit.js";
import { LogsView } from "./views/logs.js";
import { ChartsView } from "./views/charts.js";
import { AuditView } from "./views/audit.js";
import { CustomersView } from "./views/customers.js";
import { WebhooksView } from "./views/webhooks.js";

const KEY_ITEM = "emp-monitor-key";
const $ = (id) => document.getElementById(id);

function showLogin(message) {
  sessionStorage.removeItem(KEY_ITEM);
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("login-key").focus();
}

// An admin-only route tells a wrong key (401) from a key that is not an admin's (403).
async function checkKey(key) {
  const api = new Api(key);
  try {
    await api.get("/api/dead-letters", { limit: 1 });
    return null;
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    if (error.status === 401) return "This key is not valid (unknown or revoked).";
    if (error.status === 403) return "This key is not an admin key: the monitor needs one.";
    return `The API refused the key: ${error.message}`;
  }
}

class Monitor {
  constructor(key) {
    this.store = new Store();
    this.api = new Api(key, { onUnauthorized: () => this.logout("The key was refused.") });
    this.socket = new LiveSocket({
      key, store: this.store,
      onStatus: (state) => { $("connection").dataset.state = state; $("connection").textContent = state; },
      onUnauthorized: (reason) => this.logout(reason || "The monitor socket refused the key."),
      onOpened: () => this.loadMachines(),
      onReconnected: () => this.refreshLists(),
    });
    this.view = null;
    this.timers = [];
    this.arrived = {}; // when the first machines and snapshot came (performance.now())
    this.workerLists = 0; // worker lists applied
  }

  async start() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").onclick = () => this.logout("");
    this.store.subscribe((topics) => this.onChange(topics));
    window.addEventListener("hashchange", () => this.route());
    this.route();
    // The snapshot brings workers and queue depths; machines (asked for as the socket opens,
    // alongside the snapshot) and the full list of running jobs come next, so the first render
    // waits for one round trip after the socket opens.
    this.socket.connect();
    this.socket.firstSnapshot.then(() => {
      this.arrived.snapshot = performance.now();
      this.loadActive();
    });
    this.timers.push(setInterval(() => this.refreshQueues(), 2000));
  }

  // Read only once the socket is open (events after that reach the page), and merged with
  // the events that arrived while the list was on its way: they are newer than it.
  async loadMachines() {
    const since = this.store.machineEvents;
    const body = await this.api.get("/api/machines");
    this.arrived.machines ??= performance.now();
    this.store.setMachines(body.machines, since);
  }

  // Merged as the machines are: a worker that left while the list was on its way stays gone.
  async loadWorkers() {
    const since = this.store.workerEvents;
    const body = await this.api.get("/api/workers");
    this.store.setWorkers(body.workers, since);
    this.workerLists += 1;
  }

  async refreshLists() {
    await Promise.all([this.loadMachines(), this.loadWorkers()]);
    await this.loadActive();
  }

  // Every running job, not only the snapshot's newest: pages of 500 from the server.
  async loadActive() {
    for (const status of ["assigned", "in_progress"]) {
      let cursor = null;
      for (let page = 0; page < 4; page++) {
        const body = await this.api.get("/api/jobs", { status, limit: 500, cursor });
        for (const job of body.jobs) this.store.trackActive(job);
        cursor = body.next_cursor;
        if (!cursor) break;
      }
    }
    this.store.mark("active", "workers");
  }

  async refreshQueues() {
    if (document.hidden) return;
    try {
      this.store.setQueues((await this.api.get("/api/queues")).queues);
    } catch (error) {
      console.warn("queues refresh failed", error);
    }
  }

  refreshWorkersSoon() {
    if (this.workersTimer) return;
    this.workersTimer = setTimeout(() => {
      this.workersTimer = null;
      this.loadWorkers();
    }, 1000);
  }

  onChange(topics) {
    if (topics.has("workers_stale")) this.refreshWorkersSoon();
    this.renderSummary();
    this.view?.update(topics);
  }

  renderSummary() {
    let pending = 0;
    for (const q of this.store.queues) pending += q.counts.pending || 0;
    $("summary").textContent = `${this.store.machines.size} machines · ${this.store.workers.size} `
      + `workers · ${this.store.active.size} running · ${pending} pending`;
  }

  route() {
    const hash = location.hash.replace(/^#\/?/, "") || "machines";
    const [path, query] = hash.split("?");
    const parts = path.split("/");
    const params = new URLSearchParams(query || "");
    this.view?.unmount();
    const ctx = { api: this.api, store: this.store, params, navigate: (to) => { location.hash = to; } };
    let view;
    if (parts[0] === "jobs" && parts[1]) view = new JobDetailView(ctx, decodeURIComponent(parts[1]));
    else view = new ({ machines: MachinesView, jobs: JobsView, submit: SubmitView,
      logs: LogsView, charts: ChartsView, audit: AuditView, webhooks: WebhooksView,
      customers: CustomersView }[parts[0]]
      || MachinesView)(ctx);
    for (const link of document.querySelectorAll("#nav a")) {
      link.classList.toggle("active", link.dataset.view === parts[0]);
    }
    this.view = view;
    const container = $("view");
    container.replaceChildren();
    view.mount(container);
    this.renderSummary();
  }

  logout(message) {
    this.socket.close();
    for (const timer of this.timers) clearInterval(timer);
    this.view?.unmount();
    showLogin(message);
    // A fresh page leaves no state of the old session behind (timers, listeners, blobs).
    if (!message) location.reload();
  }
}

// A key typed in is checked first, to answer a wrong one at once; a key from this tab's
// storage was checked when typed: the socket refuses it if it was revoked since.
async function login(key, checked = false) {
  const problem = checked ? null : await checkKey(key);
  if (problem) { showLogin(problem); return; }
  sessionStorage.setItem(KEY_ITEM, key);
  const monitor = new Monitor(key);
  // Figures for tests and bench/monitor_bench.py: counts only, nothing secret.
  window.empMonitorStats = () => ({ eventsSeen: monitor.store.eventsSeen,
    active: monitor.store.active.size, workers: monitor.store.workers.size,
    machines: monitor.store.machines.size, workersRemoved: monitor.store.workersRemoved.size,
    workerLists: monitor.workerLists, arrived: { ...monitor.arrived } });
  await monitor.start();
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("login-key").value.trim();
  $("login-error").textContent = "Checking…";
  login(key).catch((error) => showLogin(`Could not log in: ${error.message}`));
});

const saved = sessionStorage.getItem(KEY_ITEM);
if (saved) login(saved, true).catch((error) => showLogin(`Could not log in: ${error.message}`));
else showLogin("");
