// The farm grid: every device as a tile, filtered and sorted, windowed so 5,000 devices stay smooth.
// Data: GET /api/v1/tiles once, then the live topic "tiles" (coalesced changes a few times a second).
import { api, all, throttled } from "./api.js";
import { esc } from "./format.js";
import { STATES, createTile, paintTile, tileState } from "./tiles.js";
import { VirtualGrid } from "./vgrid.js";

const ACTIVE_JOBS = ["assigned", "printing", "paused"];
const SORTS = {
  name: (a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0),
  state: (a, b) => STATES.indexOf(tileState(a)) - STATES.indexOf(tileState(b)) || SORTS.name(a, b),
  progress: (a, b) => (b.progress ?? -1) - (a.progress ?? -1) || SORTS.name(a, b),
};

const option = (v, label = v) => `<option value="${esc(v)}">${esc(label)}</option>`;

function toolbar() {
  return `<div class="row filters">
    <label>State <select id="f-state" aria-label="Filter by state">${option("", "all")}${STATES.map((s) => option(s)).join("")}</select></label>
    <label>Group <select id="f-group" aria-label="Filter by group">${option("", "all")}</select></label>
    <label>Material <select id="f-material" aria-label="Filter by material">${option("", "all")}</select></label>
    <label>Sort <select id="f-sort" aria-label="Sort by">${Object.keys(SORTS).map((s) => option(s)).join("")}</select></label>
  </div>`;
}

function fillChoices(select, values) {
  const have = [...select.options].map((o) => o.value).slice(1).join("\n");
  const want = [...values].sort();
  if (have === want.join("\n")) return;
  const chosen = select.value;
  select.innerHTML = option("", "all") + want.map((v) => option(v)).join("");
  select.value = want.includes(chosen) ? chosen : "";
}

export async function gridView({ view, live, guarded }) {
  view.innerHTML = `<h1>Farm <span class="muted" id="count"></span></h1>${toolbar()}
    <div class="grid" id="grid" role="list" aria-label="Devices"></div>`;
  const root = document.getElementById("grid");
  const devices = new Map();
  let jobs = new Map(), alerts = new Map();
  const asked = new Set();
  const ctx = {
    // A job the grid has not heard of yet (it started between a load and its event): fetch the active ones.
    job: (id) => {
      const j = id == null ? null : jobs.get(String(id));
      if (id != null && !j && !asked.has(String(id))) { asked.add(String(id)); refreshJobs(); }  // once per job
      return j;
    },
    alert: (ref) => alerts.get(ref),
  };
  const grid = new VirtualGrid(root, {
    minWidth: 230, rowHeight: 156, gap: 8, key: (d) => d.ref, create: createTile,
    paint: (el, d) => paintTile(el, d, ctx),
  });
  const filters = () => Object.fromEntries(["state", "group", "material", "sort"]
    .map((f) => [f, document.getElementById(`f-${f}`).value]));

  const arrange = () => {
    const f = filters();
    const shown = [...devices.values()].filter((d) => (!f.state || tileState(d) === f.state)
      && (!f.group || d.node === f.group) && (!f.material || d.material?.material === f.material));
    shown.sort(SORTS[f.sort] || SORTS.name);
    grid.setItems(shown);
    fillChoices(document.getElementById("f-group"), new Set([...devices.values()].map((d) => d.node)));
    fillChoices(document.getElementById("f-material"),
      new Set([...devices.values()].map((d) => d.material?.material).filter(Boolean)));
    const count = document.getElementById("count");
    count.textContent = shown.length === devices.size ? `${devices.size} devices` : `${shown.length} of ${devices.size} devices`;
    root.dataset.total = String(devices.size);
    root.dataset.shown = String(shown.length);
  };
  const rearrange = throttled(arrange, 1000);

  const loadJobs = async () => {
    const lists = await Promise.all(ACTIVE_JOBS.map((s) => all(`/api/v1/jobs?state=${s}`)));
    jobs = new Map(lists.flat().map((j) => [String(j.id), j]));
  };
  const loadAlerts = async () => {
    try {
      alerts = new Map((await all("/api/v1/alerts")).map((a) => [a.subject, a.message]));
    } catch (e) { if (e.status !== 404) throw e; }
  };
  const load = async () => {
    const [tiles] = await Promise.all([api("GET", "/api/v1/tiles"), loadJobs(), loadAlerts()]);
    devices.clear();
    for (const d of tiles.items) devices.set(d.ref, d);
    arrange();
  };
  const reload = throttled(() => guarded(load), 1000);
  const refreshJobs = throttled(() => guarded(async () => { await loadJobs(); grid.repaint(devices.keys()); }), 1000);
  const refreshAlerts = throttled(() => guarded(async () => { await loadAlerts(); grid.repaint(devices.keys()); }), 2000);

  const onTiles = (key, data) => {
    if (!data) return;
    if (data.reload) reload();
    const changed = [];
    let reorder = false;
    for (const item of data.devices || []) {
      const d = devices.get(item.ref);
      if (!d) { reorder = true; devices.set(item.ref, item); continue; }
      if ("state" in item && (tileState(item) !== tileState(d) || item.material?.material !== d.material?.material)) reorder = true;
      Object.assign(d, item);
      if (grid.isShown(item.ref)) changed.push(item.ref);
    }
    grid.repaint(changed);
    if (reorder) rearrange();
  };
  const onJob = (key, job) => {
    if (!job) return refreshJobs();
    if (ACTIVE_JOBS.includes(job.state)) jobs.set(String(job.id), job); else jobs.delete(String(job.id));
    if (job.device) grid.repaint([job.device]);
  };
  for (const f of ["state", "group", "material", "sort"]) document.getElementById(`f-${f}`).onchange = arrange;
  await guarded(load);
  live.watch({ tiles: onTiles, jobs: onJob, alerts: refreshAlerts }, reload);
  return () => {
    for (const due of [rearrange, reload, refreshJobs, refreshAlerts]) due.cancel();
    grid.destroy();
  };
}
