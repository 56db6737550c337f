// What the page knows: workers, machines, queue depths and the active jobs, kept current by
// the monitor socket's events. Events are applied in batches, once per animation frame, and
// each batch marks which parts changed so only the views showing them redraw.

const TERMINAL_EVENTS = new Set(["complete_job", "job_cancelled"]);
const TERMINAL_STATUSES = new Set(["completed", "failed", "cancelled", "timeout", "expired"]);
const WAITING_STATUSES = new Set(["pending", "unworkable"]);
const FINISHED_MEMORY = 5000;

export function compareIds(a, b) {
  const [am, as] = a.split("-").map(Number);
  const [bm, bs] = b.split("-").map(Number);
  return am - bm || as - bs;
}

const PLACEMENTS_KEPT = 8; // placement decisions shown per machine

export class Store {
  constructor() {
    this.workers = new Map();
    this.machines = new Map();
    this.machineEvents = 0; // machine events applied so far
    this.machineTouched = new Map(); // machine id -> machineEvents when an event last changed it
    this.workerEvents = 0; // worker events applied so far
    this.workersRemoved = new Map(); // worker id -> workerEvents when its removal was applied
    this.placements = new Map(); // machine id -> its latest placement decisions (newest last)
    this.queues = [];
    this.active = new Map(); // job id -> {id, service, status, progress, message, worker_id, since}
    this.finished = new Set(); // recently finished job ids, so a late list cannot revive them
    this.snapshotJobs = {};
    this.snapshotId = null; // events at or before it are already in the snapshot
    this.eventsSeen = 0;
    this.pending = [];
    this.dirty = new Set();
    this.listeners = new Set();
    this.jobListeners = new Map(); // job id -> Set(fn)
    this.frameRequested = false;
  }

  subscribe(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); }

  watchJob(jobId, fn) {
    if (!this.jobListeners.has(jobId)) this.jobListeners.set(jobId, new Set());
    this.jobListeners.get(jobId).add(fn);
    return () => this.jobListeners.get(jobId)?.delete(fn);
  }

  mark(...topics) {
    for (const topic of topics) this.dirty.add(topic);
    this.requestFrame();
  }

  push(event) {
    this.pending.push(event);
    this.requestFrame();
  }

  requestFrame() {
    if (this.frameRequested) return;
    this.frameRequested = true;
    // A hidden tab gets no animation frames: fall back to a timer so events do not pile up.
    const run = () => { this.frameRequested = false; this.flush(); };
    if (document.hidden) setTimeout(run, 250);
    else requestAnimationFrame(run);
  }

  flush() {
    const batch = this.pending;
    this.pending = [];
    for (const event of batch) this.apply(event);
    if (this.dirty.size === 0) return;
    const topics = this.dirty;
    this.dirty = new Set();
    for (const fn of this.listeners) fn(topics);
  }

  applySnapshot(data) {
    this.snapshotId = data.last_event_id;
    this.workers = new Map(data.workers.map((w) => [w.worker_id, w]));
    this.queues = data.queues;
    this.snapshotJobs = data.jobs;
    for (const status of ["assigned", "in_progress"]) {
      for (const job of data.jobs[status] || []) this.trackActive(job);
    }
    this.mark("workers", "queues", "active", "jobs", "machines");
  }

  // A machine list asked for when `since` machine events had been applied: where an event
  // changed a machine after that, the event wins (the list may have been read before it).
  setMachines(records, since) {
    const listed = new Map(records.map((m) => [m.machine_id, m]));
    for (const [id, touched] of this.machineTouched) {
      if (touched <= since) continue;
      const known = this.machines.get(id);
      const fromList = listed.get(id);
      if (!known) listed.delete(id); // removed since
      else if (!fromList || known.updated_at >= fromList.updated_at) listed.set(id, known);
    }
    this.machines = listed;
    this.mark("machines");
  }

  // A worker list asked for when `since` worker events had been applied: a worker removed by
  // an event after that stays removed (the list may have been read before it left).
  setWorkers(workers, since) {
    const listed = new Map(workers.map((w) => [w.worker_id, w]));
    for (const [id, removed] of this.workersRemoved) {
      if (removed > since) listed.delete(id);
    }
    this.workers = listed;
    this.mark("workers", "machines");
  }

  setQueues(queues) {
    this.queues = queues;
    this.mark("queues");
  }

  trackActive(job) {
    if (this.finished.has(job.id) || TERMINAL_STATUSES.has(job.status)) return;
    const known = this.active.get(job.id);
    this.active.set(job.id, {
      id: job.id, service: job.service_required ?? known?.service, status: job.status,
      progress: job.progress ?? known?.progress ?? 0, message: job.message ?? known?.message,
      worker_id: job.worker_id ?? known?.worker_id, since: job.assigned_at ?? Date.now(),
    });
  }

  rememberFinished(jobId) {
    this.finished.add(jobId);
    if (this.finished.size > FINISHED_MEMORY) {
      this.finished.delete(this.finished.values().next().value);
    }
  }

  apply(event) {
    if (this.snapshotId && compareIds(event.event_id, this.snapshotId) <= 0) return;
    this.eventsSeen += 1;
    const type = event.type;
    if (event.job_id) this.applyJobEvent(event);
    else if (type.startsWith("worker_")) this.applyWorkerEvent(event);
    else if (type.startsWith("machine_")) this.applyMachineEvent(event);
    if (event.job_id) {
      for (const fn of this.jobListeners.get(event.job_id) || []) fn(event);
    }
  }

  applyJobEvent(event) {
    const id = event.job_id;
    const job = this.active.get(id);
    const status = event.status;
    if (event.type === "job_assigned") {
      this.active.set(id, { id, service: event.service ?? job?.service, status: "assigned", progress: 0,
        worker_id: event.worker_id, since: event.timestamp });
      this.setWorkerJob(event.worker_id, id, true);
      this.mark("active", "workers");
    } else if (event.type === "update_job_progress" && job) {
      if (event.progress !== undefined && event.progress !== null) job.progress = event.progress;
      if (event.message) job.message = event.message;
      job.status = "in_progress";
      this.mark("progress");
    } else if (TERMINAL_EVENTS.has(event.type) || TERMINAL_STATUSES.has(status)
               || WAITING_STATUSES.has(status)) {
      if (job) {
        this.active.delete(id);
        this.setWorkerJob(job.worker_id, id, false);
        this.mark("active", "workers");
      }
      if (!WAITING_STATUSES.has(status)) this.rememberFinished(id);
      this.mark("jobs");
    } else if (event.type === "job_status_changed" && job && status) {
      job.status = status;
      this.mark("progress");
    } else if (event.type === "job_submitted") {
      this.mark("jobs");
    }
  }

  setWorkerJob(workerId, jobId, running) {
    const worker = this.workers.get(workerId);
    if (!worker) return;
    const others = worker.running.filter((j) => j !== jobId);
    worker.running = running ? [...others, jobId] : others;
  }

  applyWorkerEvent(event) {
    const worker = this.workers.get(event.worker_id);
    this.workerEvents += 1;
    if (event.type === "worker_disconnected") {
      this.workers.delete(event.worker_id);
      this.workersRemoved.set(event.worker_id, this.workerEvents);
    } else if (event.type === "worker_status_changed" && worker) {
      worker.status = event.status;
      worker.last_seen_ms = event.timestamp;
    } else {
      this.workersRemoved.delete(event.worker_id); // (back under the same id)
      this.mark("workers_stale"); // a new worker: its capabilities come from a refetch
    }
    this.mark("workers", "machines");
  }

  applyMachineEvent(event) {
    const id = event.machine ? event.machine.machine_id : event.machine_id;
    if (event.type === "machine_placement" && event.machine && event.status !== "progress") {
      const list = (this.placements.get(id) || []).concat([{ action: event.action,
        model: event.model, service: event.service, status: event.status,
        reason: event.reason, detail: event.detail || "" }]);
      this.placements.set(id, list.slice(-PLACEMENTS_KEPT));
    }
    const known = this.machines.get(id);
    if (event.machine && !(known && known.updated_at > event.machine.updated_at)) {
      // (an older record, replayed after a reconnect, never replaces a newer one)
      this.machines.set(id, { ...event.machine, online: event.type !== "machine_shutdown" });
    } else if (!event.machine && event.type === "machine_shutdown" && event.reason === "removed") {
      this.machines.delete(id);
    }
    this.machineTouched.set(id, ++this.machineEvents);
    this.mark("machines");
  }

  workerJob(worker) {
    const jobId = worker.running[worker.running.length - 1];
    return jobId ? this.active.get(jobId) || { id: jobId, progress: null } : null;
  }
}
