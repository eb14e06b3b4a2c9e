// The hub's HTTP API and live stream, as the panel uses them.

function cookie(name) {
  const m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
  return m ? decodeURIComponent(m[1]) : "";
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
  }
}

export async function api(method, path, body, { raw = false, headers = {} } = {}) {
  const h = { ...headers };
  // The session cookie alone is refused for changes: echoing the CSRF cookie proves the page is ours.
  if (method !== "GET") h["X-CSRF-Token"] = cookie("farmhand_csrf");
  let payload = body;
  if (body !== undefined && !raw) { h["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  const r = await fetch(path, { method, headers: h, body: payload, credentials: "same-origin" });
  if (r.status === 204) return null;
  const data = r.headers.get("Content-Type")?.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new ApiError(r.status, typeof data === "object" ? data : { detail: data });
  return data;
}

export async function all(path) {
  // Follows `next` so a view sees the whole list.
  let items = [], cursor = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api("GET", `${path}${sep}limit=1000${cursor ? `&cursor=${cursor}` : ""}`);
    items = items.concat(page.items);
    cursor = page.next;
  } while (cursor);
  return items;
}

// One WebSocket for the page; views say which topics they show. Reconnects after a drop.
export class Live {
  constructor() { this.handlers = new Map(); this.topics = []; this.generation = 0; this.connect(); }
  connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    this.ws = new WebSocket(`${proto}://${location.host}/api/v1/live`);
    this.ws.onopen = () => this.send();
    this.ws.onmessage = (e) => {
      const data = JSON.parse(e.data);
      for (const msg of Array.isArray(data) ? data : []) {
        for (const fn of this.handlers.get(msg.topic) || []) fn(msg.key, msg.data);
      }
    };
    this.ws.onclose = () => { this.resync?.(); setTimeout(() => this.connect(), 1000); };
  }
  send() { if (this.ws.readyState === 1) this.ws.send(JSON.stringify({ subscribe: this.topics })); }
  // A handle for the page being shown, with nothing watched yet. Its watch is ignored once another page
  // has been shown: a view still loading when the operator moved on would otherwise put its handlers
  // (which look for its elements) over the next page's.
  scope() {
    const generation = ++this.generation;
    this.watch({}, null);
    return { watch: (handlers, resync) => { if (generation === this.generation) this.watch(handlers, resync); } };
  }
  // Replaces the subscriptions: called by each view when it is shown.
  watch(handlers, resync) {
    this.handlers = new Map(Object.entries(handlers).map(([t, fn]) => [t.split(":")[0], [fn]]));
    this.topics = Object.keys(handlers);
    this.resync = resync;
    this.send();
  }
}

// At most one call per `ms` however often it is asked for; `.cancel()` drops the call still due
// (a page being left must not run it over the next page).
export function throttled(fn, ms = 1000) {
  let timer = null;
  const call = () => { timer ??= setTimeout(() => { timer = null; fn(); }, ms); };
  call.cancel = () => { clearTimeout(timer); timer = null; };
  return call;
}
