// The API client of the page: every request carries the admin key as a Bearer header.
// The key is sent to this page's own origin only — never to an asset URL on another host.

export class ApiError extends Error {
  constructor(status, code, message, detail) {
    super(message);
    this.status = status;
    this.code = code;
    this.detail = detail || [];
  }
}

export class Api {
  constructor(key, { onUnauthorized = () => {} } = {}) {
    this.key = key;
    this.onUnauthorized = onUnauthorized;
  }

  headers(extra) {
    return { Authorization: `Bearer ${this.key}`, ...extra };
  }

  async request(method, path, { params, body, signal } = {}) {
    const url = new URL(path, location.origin);
    for (const [name, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
    }
    const init = { method, headers: this.headers(), signal };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, "network", `the API did not answer (${error.message})`);
    }
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) {
      if (response.status === 401) this.onUnauthorized();
      throw new ApiError(response.status, data?.error || "error",
        data?.message || `${method} ${path} answered ${response.status}`, data?.detail);
    }
    return data;
  }

  get(path, params, signal) { return this.request("GET", path, { params, signal }); }
  post(path, body) { return this.request("POST", path, { body }); }
  put(path, body) { return this.request("PUT", path, { body }); }
  del(path) { return this.request("DELETE", path); }

  // Where an output can be read: an object-store output names `download`, and the API signs
  // a short-lived URL of it (the bucket is private, its plain `url` reads nothing).
  async outputUrl(output) {
    if (!output.download) return output.url;
    const signed = await this.get(output.download, { redirect: "false" });
    return signed.url;
  }

  // An output's URL as something an <img> can show: assets on this origin need the key,
  // so they are fetched with it and shown from a blob URL; others are used as they are.
  async assetUrl(url) {
    const target = new URL(url, location.origin);
    if (target.origin !== location.origin) return { src: target.href, revoke: () => {} };
    const response = await fetch(target, { headers: this.headers() });
    if (!response.ok) throw new ApiError(response.status, "asset", `asset answered ${response.status}`);
    const blobUrl = URL.createObjectURL(await response.blob());
    return { src: blobUrl, revoke: () => URL.revokeObjectURL(blobUrl) };
  }

  async assetText(url, limit = 100_000) {
    const target = new URL(url, location.origin);
    const init = target.origin === location.origin ? { headers: this.headers() } : {};
    const response = await fetch(target, init);
    const text = await response.text();
    return text.length > limit ? `${text.slice(0, limit)}\n… (${text.length} characters)` : text;
  }

  // A job's events as Server-Sent Events read through fetch (EventSource cannot send the
  // key as a header). Calls onEvent for each; resolves when the stream ends or is aborted.
  async jobEvents(jobId, onEvent, signal) {
    const response = await fetch(new URL(`/api/jobs/${encodeURIComponent(jobId)}/events`,
      location.origin), { headers: this.headers({ Accept: "text/event-stream" }), signal });
    if (!response.ok) throw new ApiError(response.status, "events", `events answered ${response.status}`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let split;
        while ((split = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, split);
          buffer = buffer.slice(split + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data:"))
            .map((l) => l.slice(5).trimStart()).join("\n");
          if (data) onEvent(JSON.parse(data));
        }
      }
    } catch (error) {
      if (error.name !== "AbortError") throw error;
    }
  }
}
