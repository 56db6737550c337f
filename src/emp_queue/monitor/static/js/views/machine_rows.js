// The machines table's rows: one summary per machine, computed from the store, then filtered
// and grouped. Pure functions of their arguments, so the table and its tests agree.

export const STATES = ["ready", "starting", "draining", "failed", "stopped", "offline"];
export const NO_POOL = "no pool";

function gb(value) {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

// A machine's pool is its workers' (``EMP_POOL``): the one most of them name.
function poolOf(workers) {
  const counts = new Map();
  for (const w of workers) {
    const pool = w.capabilities?.pool;
    if (pool) counts.set(pool, (counts.get(pool) || 0) + 1);
  }
  let best = NO_POOL;
  let most = 0;
  for (const [pool, n] of counts) if (n > most || (n === most && pool < best)) { best = pool; most = n; }
  return best;
}

function gpuSummary(gpus) {
  if (!gpus.length) return { gpuText: "no GPU", gpuNames: "" };
  const names = [...new Set(gpus.map((g) => g.name))];
  const text = names.length === 1 ? `${gpus.length} × ${names[0].replace(/^NVIDIA /, "")}`
    : `${gpus.length} GPUs (mixed)`;
  return { gpuText: text, gpuNames: names.join(", ") };
}

// VRAM in use and the GPUs' mean utilisation, where NVML gave them (mock GPUs have neither).
function vramText(gpus) {
  if (!gpus.length) return "—";
  const total = gpus.reduce((sum, g) => sum + (g.memory_gb || 0), 0);
  const known = gpus.every((g) => g.memory_used_gb !== null && g.memory_used_gb !== undefined);
  const memory = known
    ? `${gb(gpus.reduce((sum, g) => sum + g.memory_used_gb, 0))} / ${gb(total)} GB`
    : `${gb(total)} GB`;
  const busy = gpus.filter((g) => g.utilization_percent !== null && g.utilization_percent !== undefined);
  if (!busy.length) return memory;
  const mean = busy.reduce((sum, g) => sum + g.utilization_percent, 0) / busy.length;
  return `${memory} · ${Math.round(mean)}% busy`;
}

export function machineRows(store) {
  const byMachine = new Map();
  for (const w of store.workers.values()) {
    if (!w.machine_id) continue;
    if (!byMachine.has(w.machine_id)) byMachine.set(w.machine_id, []);
    byMachine.get(w.machine_id).push(w);
  }
  const rows = [];
  for (const m of store.machines.values()) {
    const workers = byMachine.get(m.machine_id) || [];
    const gpus = m.hardware?.gpus || [];
    const services = m.services || [];
    const up = services.filter((s) => s.status === "running").length;
    const jobs = workers.reduce((sum, w) => sum + (w.running?.length || 0), 0);
    // A failed or stopped machine is offline too: its phase says more than "offline".
    const ended = m.phase === "failed" || m.phase === "stopped";
    const state = m.online || ended ? m.phase : "offline";
    rows.push({
      id: m.machine_id, pool: poolOf(workers), ...gpuSummary(gpus), gpus: gpus.length,
      vramText: vramText(gpus), servicesText: services.length ? `${up}/${services.length}` : "—",
      servicesDown: services.length - up, jobs, state, online: m.online, updatedAt: m.updated_at,
      // What the search box looks in: the id, GPU names, services and workers.
      haystack: [m.machine_id, ...gpus.map((g) => g.name), ...services.map((s) => s.name),
        ...workers.map((w) => w.worker_id)].join(" ").toLowerCase(),
    });
  }
  return rows.sort((a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }));
}

export function filterRows(rows, { text = "", state = "", pool = "" }) {
  const words = text.toLowerCase().split(/\s+/).filter(Boolean);
  return rows.filter((r) => (!state || r.state === state) && (!pool || r.pool === pool)
    && words.every((w) => r.haystack.includes(w)));
}

// Rows with a header before each pool's machines; a collapsed pool keeps only its header.
export function groupRows(rows, collapsed) {
  const pools = new Map();
  for (const r of rows) {
    if (!pools.has(r.pool)) pools.set(r.pool, []);
    pools.get(r.pool).push(r);
  }
  const items = [];
  for (const pool of [...pools.keys()].sort((a, b) => (a === NO_POOL) - (b === NO_POOL) || a.localeCompare(b))) {
    const members = pools.get(pool);
    items.push({ group: true, pool, count: members.length,
      gpus: members.reduce((sum, r) => sum + r.gpus, 0),
      jobs: members.reduce((sum, r) => sum + r.jobs, 0),
      down: members.filter((r) => r.state !== "ready").length });
    if (!collapsed.has(pool)) items.push(...members);
  }
  return items;
}
