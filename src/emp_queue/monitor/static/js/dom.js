// Small DOM helpers: element creation, a windowed list, and formatting.
// Text always goes in through textContent (never innerHTML), so job payloads, log lines and
// error messages cannot inject markup into the page.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "style") el.style.cssText = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function progressBar(percent, label) {
  const value = Math.max(0, Math.min(100, Number(percent) || 0));
  const bar = h("div", { class: "bar", role: "progressbar", "aria-valuemin": "0",
    "aria-valuemax": "100", "aria-valuenow": value.toFixed(0) },
    h("div", { class: "fill", style: `transform:scaleX(${value / 100})` }),
    h("span", { class: "bar-label" }, label ?? `${value.toFixed(0)}%`));
  return bar;
}

export function setProgress(bar, percent, label) {
  const value = Math.max(0, Math.min(100, Number(percent) || 0));
  bar.setAttribute("aria-valuenow", value.toFixed(0));
  // A transform, not a width: moving a bar then costs no layout, only compositing.
  bar.firstChild.style.transform = `scaleX(${value / 100})`;
  const text = label ?? `${value.toFixed(0)}%`;
  if (bar.lastChild.textContent !== text) bar.lastChild.textContent = text;
}

export function badge(text, kind) {
  return h("span", { class: `badge ${kind || text}` }, text);
}

// A list that only keeps the rows in view (plus a margin) in the DOM: 10,000 rows cost as
// much as 30. Rows have one fixed height; `render(item, index)` builds a row element.
export class VirtualList {
  constructor({ rowHeight = 32, render, className = "", overscan = 8, onNearEnd = null }) {
    this.rowHeight = rowHeight;
    this.renderRow = render;
    this.overscan = overscan;
    this.onNearEnd = onNearEnd;
    this.items = [];
    this.el = h("div", { class: `vlist ${className}` });
    this.spacer = h("div", { class: "vlist-spacer" });
    this.el.append(this.spacer);
    this.rows = new Map(); // index -> element
    // Scroll position and height are read when the browser has them laid out already
    // (scroll and resize callbacks), never in draw(): reading them after the DOM changed
    // would force a synchronous layout of the whole page on every frame.
    this.scrollTop = 0;
    this.viewHeight = 0;
    this.el.addEventListener("scroll", () => {
      this.scrollTop = this.el.scrollTop;
      this.schedule();
    }, { passive: true });
    new ResizeObserver((entries) => {
      this.viewHeight = entries[0].contentRect.height;
      this.schedule();
    }).observe(this.el);
    this.pending = false;
    this.stale = false; // the rows shown are of the previous items until the next draw
    // A click is a press and a release on the same row. Rows replaced in between (a rebuild
    // on new events, several a second under load) would send the click to the list instead,
    // and the click would be lost: items set during a press wait for its release.
    this.pressed = false;
    this.waiting = null;
    this.el.addEventListener("pointerdown", () => this.press());
  }

  setItems(items) {
    if (this.pressed) { this.waiting = items; return; }
    this.waiting = null;
    this.items = items;
    this.spacer.style.height = `${items.length * this.rowHeight}px`;
    // The old rows stay until the new ones are drawn in the same frame: never a frame with
    // no rows, where a click would land on nothing.
    this.stale = true;
    this.schedule();
  }

  press() {
    this.pressed = true;
    const done = new AbortController();
    const release = () => {
      done.abort();
      this.pressed = false;
      // After the click that follows this release (same input task), not before it.
      setTimeout(() => { if (this.waiting && !this.pressed) this.setItems(this.waiting); }, 0);
    };
    window.addEventListener("pointerup", release, { signal: done.signal });
    window.addEventListener("pointercancel", release, { signal: done.signal });
  }

  // Re-render the visible rows (after their items changed in place).
  refresh() {
    if (this.pressed) { this.waiting ??= this.items; return; }
    this.stale = true;
    this.draw();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  draw() {
    if (this.stale) {
      for (const row of this.rows.values()) row.remove();
      this.rows.clear();
      this.stale = false;
    }
    const height = this.viewHeight || 600;
    const first = Math.max(0, Math.floor(this.scrollTop / this.rowHeight) - this.overscan);
    const last = Math.min(this.items.length,
      Math.ceil((this.scrollTop + height) / this.rowHeight) + this.overscan);
    for (const [index, row] of this.rows) {
      if (index < first || index >= last) { row.remove(); this.rows.delete(index); }
    }
    for (let index = first; index < last; index++) {
      if (this.rows.has(index)) continue;
      const row = this.renderRow(this.items[index], index);
      row.classList.add("vrow");
      row.style.top = `${index * this.rowHeight}px`;
      row.style.height = `${this.rowHeight}px`;
      this.el.append(row);
      this.rows.set(index, row);
    }
    if (this.onNearEnd && last >= this.items.length - this.overscan) this.onNearEnd();
  }
}

export function ago(ms) {
  if (ms === null || ms === undefined) return "—";
  return duration(Date.now() - ms) + " ago";
}

// Rounded once, to the unit shown last, before it is split: rounding the remainder after
// flooring the larger unit printed "6 min 60 s" for 359.6 s.
export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 999.5) return `${Math.round(ms)} ms`;
  if (ms < 59_950) return `${(ms / 1000).toFixed(1)} s`;
  const seconds = Math.round(ms / 1000);
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  const minutes = Math.round(ms / 60_000);
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

// A list's placeholder when it has nothing to show: says what is empty, takes one line.
export function emptyNote(text) {
  return h("p", { class: "empty", role: "status" }, text);
}

export function clock(ms) {
  if (!ms) return "—";
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

export function dateTime(ms) {
  if (!ms) return "—";
  const d = new Date(ms);
  return `${d.toLocaleDateString()} ${d.toLocaleTimeString([], { hour12: false })}`;
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
