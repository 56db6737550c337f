// The monitor WebSocket: the full state once, then every event, resumed after a reconnect
// from the last event id seen (the server replays what was missed, without duplicates).

export class LiveSocket {
  constructor({ key, store, onStatus, onUnauthorized, onOpened, onReconnected }) {
    this.key = key;
    this.store = store;
    this.onStatus = onStatus;
    this.onUnauthorized = onUnauthorized;
    this.onOpened = onOpened;
    this.onReconnected = onReconnected;
    this.monitorId = `monitor-${Math.random().toString(36).slice(2, 10)}`;
    this.lastEventId = null;
    this.retryMs = 500;
    this.closed = false;
    this.snapshotWaiters = [];
    this.firstSnapshot = new Promise((resolve) => this.snapshotWaiters.push(resolve));
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = new URL(`${scheme}//${location.host}/ws/monitor/${this.monitorId}`);
    if (this.lastEventId) url.searchParams.set("last_event_id", this.lastEventId);
    return url;
  }

  connect() {
    const resuming = this.lastEventId !== null;
    // The key travels as a subprotocol, never in the URL (URLs end up in logs).
    const socket = new WebSocket(this.url(), ["emp", `bearer.${this.key}`]);
    this.socket = socket;
    socket.onopen = () => {
      performance.mark("emp:socket-open");
      this.retryMs = 500;
      this.onStatus("live");
      // The server fixes where the events start before it accepts the socket, so a list
      // read from now on misses nothing: whatever changes after it comes as an event.
      if (!resuming) {
        this.requestFullState();
        this.onOpened();
      } else this.onReconnected();
    };
    socket.onmessage = (message) => this.receive(JSON.parse(message.data));
    socket.onclose = (close) => {
      if (this.closed) return;
      if (close.code === 1008) { // the key was refused (unknown or revoked)
        this.onUnauthorized(close.reason);
        return;
      }
      this.onStatus("reconnecting");
      setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 5000);
    };
  }

  requestFullState() {
    // Only the running jobs: the page lists the others from the server, page by page.
    this.socket.send(JSON.stringify({ type: "request_full_state", jobs_per_status: 50,
      statuses: ["assigned", "in_progress"] }));
  }

  receive(message) {
    if (message.type === "full_state_snapshot") {
      performance.mark("emp:snapshot");
      // Resume from the snapshot when no event came yet: nothing after it is missed.
      if (this.lastEventId === null) this.lastEventId = message.data.last_event_id;
      this.store.applySnapshot(message.data);
      for (const resolve of this.snapshotWaiters.splice(0)) resolve(message.data);
    } else if (message.type === "error") {
      console.warn("monitor socket error", message);
    } else if (message.event_id) {
      this.lastEventId = message.event_id;
      this.store.push(message);
    }
  }

  close() {
    this.closed = true;
    this.socket?.close();
  }
}
