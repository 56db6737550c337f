// Submit jobs: service, priority, a JSON payload checked as it is typed, a builder for
// requirements (must have / must not have), a batch count, and workflow steps.

import { clear, h } from "../dom.js";

const EXAMPLE = { steps: 20, step_delay_s: 0.1, image: { width: 64, height: 64 } };
const MAX_BATCH = 1000;

// A value typed in the builder: JSON when it parses (numbers, booleans, lists), else text.
function parseValue(text) {
  const trimmed = text.trim();
  try { return JSON.parse(trimmed); } catch { return trimmed; }
}

export class SubmitView {
  constructor(ctx) {
    this.ctx = ctx;
  }

  mount(container) {
    const services = new Set();
    for (const w of this.ctx.store.workers.values()) for (const s of w.capabilities?.services || []) services.add(s);
    for (const q of this.ctx.store.queues) services.add(q.service);
    this.service = h("input", { id: "submit-service", name: "service", required: true,
      list: "known-services", placeholder: "simulation", value: services.has("simulation") ? "simulation" : "" });
    this.priority = h("input", { id: "submit-priority", type: "number", min: 0, max: 100, value: 50 });
    this.payload = h("textarea", { id: "submit-payload", rows: 8, spellcheck: false,
      oninput: () => this.validate() });
    this.payload.value = JSON.stringify(EXAMPLE, null, 2);
    this.payloadStatus = h("p", { id: "payload-status", class: "hint" });
    this.requirements = h("div", { id: "requirements" });
    this.models = h("input", { id: "submit-models", placeholder: "sdxl.safetensors, lora-x",
      oninput: () => this.validate() });
    this.gpuMemory = h("input", { id: "submit-gpu-memory", type: "number", min: 0, step: "any",
      placeholder: "GB", oninput: () => this.validate() });
    this.count = h("input", { id: "submit-count", type: "number", min: 1, max: MAX_BATCH, value: 1 });
    this.workflow = h("input", { id: "submit-workflow", type: "checkbox",
      onchange: () => this.validate() });
    this.preview = h("pre", { class: "json", id: "requirements-preview" });
    this.submitButton = h("button", { type: "submit", id: "submit-button" }, "Submit");
    this.result = h("div", { id: "submit-result", role: "status" });
    const form = h("form", { class: "card submit-form", onsubmit: (e) => { e.preventDefault(); this.submit(); } },
      h("datalist", { id: "known-services" }, [...services].sort().map((s) => h("option", { value: s }))),
      h("label", { for: "submit-service" }, "Service"), this.service,
      h("label", { for: "submit-priority" }, "Priority (0–100, higher runs first)"), this.priority,
      h("label", { for: "submit-payload" }, "Payload (JSON object, sent to the service)"),
      this.payload, this.payloadStatus,
      h("fieldset", {}, h("legend", {}, "Requirements"),
        h("label", { for: "submit-models" }, "Models (all must be installed)"), this.models,
        h("label", { for: "submit-gpu-memory" }, "GPU memory at least"), this.gpuMemory,
        h("p", { class: "hint" }, "Labels: a value is read as JSON when it parses (24, true, [\"a\",\"b\"]), else as text."),
        this.requirements,
        h("button", { type: "button", class: "ghost small", id: "add-requirement",
          onclick: () => this.addRequirement() }, "+ label rule"),
        this.preview),
      h("div", { class: "inline" },
        h("label", { for: "submit-count" }, "How many"), this.count,
        h("label", { class: "check" }, this.workflow, " as the steps of one workflow")),
      this.submitButton, this.result);
    container.append(h("section", {}, h("h2", {}, "Submit jobs"), form));
    this.validate();
  }

  unmount() {}
  update() {}

  addRequirement() {
    const row = h("div", { class: "requirement-row" },
      h("select", { class: "req-kind", onchange: () => this.validate() },
        h("option", { value: "positive" }, "must have"), h("option", { value: "negative" }, "must not have")),
      h("input", { class: "req-key", placeholder: "label (e.g. region)", oninput: () => this.validate() }),
      h("input", { class: "req-value", placeholder: "value (e.g. eu)", oninput: () => this.validate() }),
      h("button", { type: "button", class: "ghost small", title: "Remove",
        onclick: () => { row.remove(); this.validate(); } }, "×"));
    this.requirements.append(row);
    this.validate();
  }

  buildRequirements() {
    const requirements = {};
    const models = this.models.value.split(",").map((m) => m.trim()).filter(Boolean);
    if (models.length) requirements.models = models;
    if (this.gpuMemory.value !== "") requirements.hardware = { gpu_memory_gb: Number(this.gpuMemory.value) };
    for (const row of this.requirements.children) {
      const key = row.querySelector(".req-key").value.trim();
      const raw = row.querySelector(".req-value").value;
      if (!key) continue;
      const kind = `${row.querySelector(".req-kind").value}_requirements`;
      requirements[kind] = { ...(requirements[kind] || {}), [key]: parseValue(raw) };
    }
    return requirements;
  }

  validate() {
    let payload = null;
    let problem = null;
    try {
      payload = JSON.parse(this.payload.value || "{}");
      if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
        problem = "The payload must be a JSON object ({…}).";
      }
    } catch (error) {
      problem = `Invalid JSON: ${error.message}`;
    }
    this.payloadStatus.textContent = problem || "Valid JSON object.";
    this.payloadStatus.className = problem ? "hint error" : "hint ok";
    this.payload.setAttribute("aria-invalid", problem ? "true" : "false");
    this.submitButton.disabled = Boolean(problem);
    this.preview.textContent = JSON.stringify(this.buildRequirements(), null, 2);
    return problem ? null : payload;
  }

  specs(payload) {
    const count = Math.max(1, Math.min(MAX_BATCH, Number(this.count.value) || 1));
    const base = {
      service_required: this.service.value.trim(),
      priority: Number(this.priority.value),
      payload,
      requirements: this.buildRequirements(),
    };
    if (!this.workflow.checked) return Array.from({ length: count }, () => ({ ...base }));
    const workflowId = `wf-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    return Array.from({ length: count }, (_, i) => ({
      ...base, workflow_id: workflowId, current_step: i + 1, total_steps: count }));
  }

  async submit() {
    const payload = this.validate();
    if (payload === null) return;
    const specs = this.specs(payload);
    this.submitButton.disabled = true;
    clear(this.result, "Submitting…");
    try {
      const jobs = specs.length === 1
        ? [await this.ctx.api.post("/api/jobs", specs[0])]
        : (await this.ctx.api.post("/api/jobs/batch", { jobs: specs })).jobs;
      clear(this.result, h("p", { class: "ok" }, `Submitted ${jobs.length} job${jobs.length > 1 ? "s" : ""}:`),
        h("ul", { class: "submitted" }, jobs.slice(0, 20).map((job) => h("li", {},
          h("a", { class: "mono", href: `#/jobs/${encodeURIComponent(job.id)}` }, job.id), ` ${job.status}`))));
    } catch (error) {
      clear(this.result, h("div", { class: "error-box" }, h("strong", {}, error.message),
        error.detail?.length ? h("ul", {}, error.detail.map((d) => h("li", {}, `${d.field}: ${d.problem}`))) : null));
    } finally {
      this.submitButton.disabled = false;
    }
  }
}
