// The operator panel: hash-routed views over the hub's API, updated from the live stream.
import { api, all, ApiError, Live } from "./api.js";
import { lineChart, sparkline } from "./chart.js";
import { attachConsole, consoleMarkup } from "./console.js";
import { renderJobView, renderListView } from "./render.js";

const view = document.getElementById("view");
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const pct = (p) => (p == null ? "" : `${Math.round(p * 100)}%`);
let live = null;

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text; t.classList.add("show");
  setTimeout(() => t.classList.remove("show"), 3000);
}

async function guarded(fn) {
  try { await fn(); } catch (e) {
    if (e instanceof ApiError && e.status === 401) { location.hash = "#/login"; return; }
    toast(e.message);
  }
}

function temps(t) {
  return Object.entries(t || {}).map(([k, h]) => `${esc(k)} ${Math.round(h.actual)}/${Math.round(h.target ?? 0)}°`).join(" ");
}

function eta(job) {
  if (!job || !job.started_at || !job.progress) return "";
  const spent = (Date.now() - Date.parse(job.started_at)) / 1000;
  const left = spent * (1 - job.progress) / job.progress;
  return left > 0 ? `ETA ${Math.round(left / 60)} min` : "";
}

// --------------------------------------------------------------------------- login

function loginView() {
  view.innerHTML = `<h1>Log in</h1>
    <form class="stack" id="login">
      <label>User <input name="username" autocomplete="username" required aria-label="User name"></label>
      <label>Password <input name="password" type="password" autocomplete="current-password" required aria-label="Password"></label>
      <button class="primary" type="submit">Log in</button>
    </form>`;
  document.getElementById("login").onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    guarded(async () => {
      const me = await api("POST", "/api/v1/session", { username: f.get("username"), password: f.get("password") });
      showWho(me);
      location.hash = "#/grid";
    });
  };
}

function showWho(me) {
  document.getElementById("who").textContent = me ? `${me.name} (${me.role})` : "";
  document.getElementById("logout").hidden = !me;
}

// --------------------------------------------------------------------------- farm grid

// The loaded spool: colour swatch (painted through the CSSOM, see paintSwatches), type, colour name, grams left.
function materialHtml(m) {
  if (!m) return "";
  const hex = /^#[0-9a-f]{6}$/i.test(m.color_hex || "") ? m.color_hex : "";
  return `<div class="meta material" aria-label="loaded material">
    <i class="swatch" data-color="${esc(hex)}" title="${esc(hex || "colour unknown")}"></i>
    ${esc(m.material)}${m.name ? ` ${esc(m.name)}` : ""} · ${Math.round(m.remaining_grams)} g</div>`;
}

function paintSwatches(el) {
  for (const s of el.querySelectorAll(".swatch[data-color]")) if (s.dataset.color) s.style.background = s.dataset.color;
}

function tileHtml(d, job) {
  const thumb = job ? `<img class="thumb" alt="" loading="lazy" src="/api/v1/files/${esc(job.file_sha256)}/thumbnail">` : "";
  return `${thumb}<div class="name" title="${esc(d.ref)}">${esc(d.id)}</div>
    <div class="meta">${esc(d.node)}</div>
    <div class="meta">${esc(d.online ? d.state : "offline")} ${esc(d.model || "")}</div>
    ${materialHtml(d.material)}
    <div class="meta">${temps(d.temperatures)}</div>
    <div class="meta">${job ? esc(job.name) + " " + pct(d.progress) + " " + eta(job) : ""}</div>
    <div class="bar"><i></i></div>`;
}

async function gridView() {
  view.innerHTML = `<h1>Farm <span class="muted" id="count"></span></h1><div class="grid" id="grid" role="list"></div>`;
  const grid = document.getElementById("grid");
  const tiles = new Map();
  let jobs = new Map();
  const place = (d) => {
    let el = tiles.get(d.ref);
    if (!el) {
      el = document.createElement("a");
      el.className = "tile"; el.href = `#/device/${d.ref}`; el.setAttribute("role", "listitem");
      el.setAttribute("aria-label", `device ${d.ref}`);
      tiles.set(d.ref, el); grid.appendChild(el);
    }
    const state = d.online ? d.state : "disconnected";
    if (el.dataset.state !== state) el.dataset.state = state;
    const html = tileHtml(d, jobs.get(String(d.job_id)));
    // Rewriting only changed tiles keeps 200 of them cheap at one update per second each.
    if (el._html !== html) {
      el.innerHTML = html; el._html = html;
      // Through the CSSOM: the CSP refuses style attributes in markup.
      el.querySelector(".bar > i").style.width = `${Math.round((d.progress || 0) * 100)}%`;
      paintSwatches(el);
    }
  };
  const load = async () => {
    const [devices, active] = await Promise.all([all("/api/v1/devices"), all("/api/v1/jobs")]);
    jobs = new Map(active.map((j) => [String(j.id), j]));
    devices.forEach(place);
    document.getElementById("count").textContent = `${devices.length} devices`;
  };
  await guarded(load);
  live.watch({ devices: (key, d) => (d ? place(d) : guarded(load)), jobs: () => guarded(load) }, () => guarded(load));
}

// --------------------------------------------------------------------------- device page

async function deviceView(ref) {
  view.innerHTML = `<h1>${esc(ref)}</h1>
    <div class="row" id="info"></div>
    <div class="row">
      <button id="pause" aria-label="Pause print">Pause</button>
      <button id="resume" aria-label="Resume print">Resume</button>
      <button id="cancel" aria-label="Cancel print">Cancel</button>
      <button id="estop" class="danger" aria-label="Emergency stop">Emergency stop</button>
    </div>
    <canvas id="chart" aria-label="Temperature chart" role="img"></canvas>
    ${consoleMarkup}`;
  const term = attachConsole(ref, guarded);
  const history = {};
  let device = null;
  const show = (d) => {
    device = d;
    document.getElementById("info").innerHTML = `<span id="state" data-state="${esc(d.state)}">${esc(d.online ? d.state : "offline")}</span>
      <span>${temps(d.temperatures)}</span><span>${pct(d.progress)}</span><span>job ${esc(d.job_id || "-")}</span>
      <span class="muted">${esc(d.error || "")}</span>`;
    for (const [k, h] of Object.entries(d.temperatures || {})) {
      (history[k] ||= []).push(h.actual);
      if (history[k].length > 300) history[k].shift();
    }
    lineChart(document.getElementById("chart"), history);
  };
  const load = async () => {
    const d = (await all("/api/v1/devices")).find((x) => x.ref === ref);
    if (d) show(d); else view.querySelector("#info").textContent = "unknown device";
  };
  const act = (label, fn) => () => guarded(async () => {
    if (!device?.job_id && label !== "Emergency stop") throw new Error("no job on this device");
    if (!confirm(`${label} on ${ref}?`)) return;
    await fn();
    toast(`${label}: sent`);
  });
  document.getElementById("pause").onclick = act("Pause", () => api("POST", `/api/v1/jobs/${device.job_id}/pause`));
  document.getElementById("resume").onclick = act("Resume", () => api("POST", `/api/v1/jobs/${device.job_id}/resume`));
  document.getElementById("cancel").onclick = act("Cancel", () => api("POST", `/api/v1/jobs/${device.job_id}/cancel`));
  document.getElementById("estop").onclick = act("Emergency stop", () => api("POST", `/api/v1/devices/${ref}/emergency-stop`));
  const reload = () => guarded(async () => { await load(); await term.load(); });
  await reload();
  live.watch({ [`devices:${ref}`]: (key, d) => d && show(d), [`console:${ref}`]: (key, lines) => term.append(lines) },
    reload);
}

// --------------------------------------------------------------------------- queue and jobs

async function jobsView() {
  view.innerHTML = `<h1>Queue</h1>
    <div class="row"><label>State <select id="state" aria-label="Filter by state">
      <option value="">all</option><option>queued</option><option>assigned</option><option>printing</option>
      <option>paused</option><option>completed</option><option>failed</option><option>cancelled</option></select></label></div>
    <table><thead><tr><th>#</th><th>Name</th><th>State</th><th>Progress</th><th>Device</th><th>Priority</th><th></th></tr></thead>
    <tbody id="jobs"></tbody></table>`;
  const body = document.getElementById("jobs");
  const load = async () => {
    const state = document.getElementById("state").value;
    const jobs = await all(`/api/v1/jobs${state ? `?state=${state}` : ""}`);
    body.innerHTML = jobs.reverse().map((j) => `<tr data-job="${j.id}" data-state="${esc(j.state)}"
      ${j.state === "queued" ? 'draggable="true" aria-grabbed="false"' : ""}>
      <td>${j.id}</td><td>${esc(j.name)}</td><td class="state">${esc(j.state)}</td><td>${pct(j.progress)}</td>
      <td>${esc(j.device || j.pinned_device || "")}</td><td>${j.priority}</td>
      <td>${j.state === "queued" ? `<button data-act="hold" data-id="${j.id}" aria-label="Hold job ${j.id}">Hold</button>
        <button data-act="release" data-id="${j.id}" aria-label="Release job ${j.id}">Release</button>` : ""}
        ${["queued", "assigned", "printing", "paused"].includes(j.state)
        ? `<button data-act="cancel" data-id="${j.id}" aria-label="Cancel job ${j.id}">Cancel</button>` : ""}</td></tr>`).join("");
  };
  body.onclick = (e) => {
    const { act, id } = e.target.dataset;
    if (!act || (act === "cancel" && !confirm(`Cancel job ${id}?`))) return;
    guarded(async () => { await api("POST", `/api/v1/jobs/${id}/${act}`); await load(); });
  };
  // Drag a queued job onto another to run it just ahead of that one (the scheduler's queue order).
  let dragged = null;
  body.ondragstart = (e) => { dragged = e.target.closest("tr")?.dataset.job; };
  body.ondragover = (e) => { if (dragged) e.preventDefault(); };
  body.ondrop = (e) => {
    e.preventDefault();
    const target = e.target.closest("tr[data-state=queued]")?.dataset.job;
    if (dragged && target && target !== dragged) {
      guarded(async () => { await api("POST", `/api/v1/jobs/${dragged}/queue`, { before: Number(target) }); await load(); });
    }
    dragged = null;
  };
  document.getElementById("state").onchange = () => guarded(load);
  await guarded(load);
  live.watch({ jobs: () => guarded(load) }, () => guarded(load));
}

// --------------------------------------------------------------------------- upload and submit

async function uploadView() {
  view.innerHTML = `<h1>Upload and submit</h1>
    <form class="stack" id="upload">
      <label>File <input type="file" name="file" accept=".gcode,.gco,.g,.3mf,.stl" required aria-label="File to print"></label>
      <label>Copies <input type="number" name="copies" value="1" min="1" max="500" aria-label="Copies"></label>
      <label>Priority <input type="number" name="priority" value="0" min="-1000" max="1000" aria-label="Priority"></label>
      <button class="primary" type="submit">Upload and queue</button>
    </form>
    <p id="result" class="muted"></p><p id="quote" class="muted" aria-label="Quote"></p>`;
  document.getElementById("upload").onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const file = f.get("file");
    guarded(async () => {
      const out = document.getElementById("result");
      out.textContent = `uploading ${file.name}…`;
      const info = await api("POST", `/api/v1/files?name=${encodeURIComponent(file.name)}`, file,
        { raw: true, headers: { "Content-Type": "application/octet-stream" } });
      const copies = Number(f.get("copies")) || 1;
      let quote = "";
      try {
        const q = await api("POST", "/api/v1/quotes", { file_sha256: info.sha256, copies });
        quote = ` · quote ${q.price.toFixed(2)} ${q.currency} (${q.grams.toFixed(0)} g, ${q.hours.toFixed(1)} h)`;
      } catch (e) {
        quote = e.status === 404 ? "" : ` · no quote: ${e.message}`;  // a hub without costing still prints
      }
      document.getElementById("quote").textContent = quote;
      const ids = [];
      for (let i = 0; i < copies; i++) {
        const job = await api("POST", "/api/v1/jobs", {
          file_sha256: info.sha256, priority: Number(f.get("priority")) || 0,
          name: copies > 1 ? `${file.name} (${i + 1}/${copies})` : file.name,
        });
        ids.push(job.id);
      }
      out.textContent = `queued job${ids.length > 1 ? "s" : ""} ${ids.join(", ")}`;
      out.dataset.jobs = ids.join(",");
    });
  };
}

// --------------------------------------------------------------------------- nodes and other resources

async function nodesView() {
  view.innerHTML = `<h1>Nodes</h1><table><thead><tr><th>Node</th><th>Online</th><th>CPU</th><th>Memory</th>
    <th>Temperature</th><th>Devices</th></tr></thead><tbody id="nodes"></tbody></table>`;
  const series = {};
  const push = (id, k, v) => { const s = ((series[id] ||= {})[k] ||= []); if (v != null) s.push(v); if (s.length > 60) s.shift(); return s; };
  const row = (n) => {
    const m = n.metrics || {};
    return `<tr><td>${esc(n.id)}</td><td>${n.online ? "yes" : "no"}</td>
      <td>${sparkline(push(n.id, "cpu", m.cpu_pct))} ${m.cpu_pct ?? ""}</td>
      <td>${sparkline(push(n.id, "mem", m.mem_pct))} ${m.mem_pct ?? ""}</td>
      <td>${sparkline(push(n.id, "temp", m.cpu_temp_c), 100)} ${m.cpu_temp_c ?? ""}</td>
      <td>${esc(n.devices.join(", "))}</td></tr>`;
  };
  const load = async () => { document.getElementById("nodes").innerHTML = (await all("/api/v1/nodes")).map(row).join(""); };
  await guarded(load);
  live.watch({ nodes: () => guarded(load) }, () => guarded(load));
}

async function listView(name) {
  view.innerHTML = `<h1>${esc(name)}</h1><div id="list"></div>`;
  const load = async () => {
    let items;
    try { items = await all(`/api/v1/${name}`); } catch (e) {
      if (e.status === 404) { document.getElementById("list").textContent = `this hub has no ${name} yet`; return; }
      throw e;
    }
    const cols = [...new Set(items.flatMap((i) => Object.keys(i)))].filter((c) => typeof items[0][c] !== "object").slice(0, 8);
    document.getElementById("list").innerHTML = items.length ? `<table><thead><tr>${cols.map((c) => `<th>${esc(c)}</th>`).join("")}</tr></thead>
      <tbody>${items.map((i) => `<tr>${cols.map((c) => `<td>${esc(i[c])}</td>`).join("")}</tr>`).join("")}</tbody></table>` : "none";
  };
  await guarded(load);
  live.watch({ [name]: () => guarded(load) }, () => guarded(load));
}

// --------------------------------------------------------------------------- routing

async function route() {
  const [, page, ...rest] = location.hash.replace(/^#/, "").split("/");
  if (page === "login") return loginView();
  if (!live) live = new Live();
  switch (page) {
    case "device": return deviceView(rest.join("/"));
    case "jobs": return jobsView();
    case "upload": return uploadView();
    case "nodes": return nodesView();
    case "render": return rest[0] ? renderJobView(rest[0], { view, live, guarded, esc, toast })
      : renderListView({ view, live, guarded, esc });
    case "list": return listView(rest[0]);
    default: return gridView();
  }
}

document.getElementById("logout").onclick = () => guarded(async () => {
  await api("DELETE", "/api/v1/session"); showWho(null); location.hash = "#/login";
});
window.addEventListener("hashchange", route);
// A file without a thumbnail answers 404: hide the broken image rather than show its icon.
document.addEventListener("error", (e) => { if (e.target.tagName === "IMG") e.target.hidden = true; }, true);
api("GET", "/api/v1/session").then((me) => { showWho(me); route(); }).catch(() => { location.hash = "#/login"; route(); });
