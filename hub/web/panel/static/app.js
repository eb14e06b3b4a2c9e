// The operator panel: hash-routed views over the hub's API, updated from the live stream.
import { api, all, ApiError, Live } from "./api.js";
import { lineChart, sparkline } from "./chart.js";
import { attachConsole, consoleMarkup } from "./console.js";
import { dashboardView } from "./dashboard.js";
import { bytes, celsius, clock, duration, esc, pct, percent, secondsLeft, temps } from "./format.js";
import { gridView } from "./grid.js";
import { ordersView } from "./orders.js";
import { printerProfile, profilesView } from "./profiles.js";
import { settingsView } from "./admin.js";
import { stockView } from "./stock.js";
import { webhooksView } from "./webhooks.js";
import { renderJobView, renderListView } from "./render.js";
import { alertsView, jobView, orderView, quoteView, quotesView, spoolView } from "./paper.js";

const view = document.getElementById("view");
let live = null;
let me = null;
let leave = null;  // what the current view must undo when another is shown (listeners, timers)

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text; t.classList.add("show");
  setTimeout(() => t.classList.remove("show"), 3000);
}

async function guarded(fn) {
  try { await fn(); } catch (e) {
    if (e instanceof ApiError && e.status === 401) { toLogin(); return; }
    toast(e.message);
  }
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
      // Back to the page asked for (a scanned label's link), or the farm.
      location.hash = sessionStorage.getItem("farmhand-return") || "#/grid";
      sessionStorage.removeItem("farmhand-return");
    });
  };
}

function toLogin() {
  if (!location.hash.startsWith("#/login")) sessionStorage.setItem("farmhand-return", location.hash);
  location.hash = "#/login";
}

function showWho(who) {
  me = who;
  document.getElementById("who").textContent = me ? `${me.name} (${me.role})` : "";
  document.getElementById("logout").hidden = !me;
  // Pages only admins can use are not offered to anyone else.
  for (const link of document.querySelectorAll("nav [data-admin]")) link.hidden = me?.role !== "admin";
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
    <div class="job-card" id="job-card" aria-label="Current job" hidden></div>
    <canvas id="chart" aria-label="Temperature chart" role="img"></canvas>
    ${consoleMarkup}<div class="forms" id="printer-profile-slot"></div>`;
  const term = attachConsole(ref, guarded);
  const history = {};
  let device = null, job = null;
  const card = () => {
    const el = document.getElementById("job-card");
    el.hidden = !job;
    if (!job) return;
    const left = secondsLeft(device, job);
    el.innerHTML = `<img class="thumb" alt="" src="/api/v1/files/${esc(job.file_sha256)}/thumbnail">
      <div><strong>${esc(job.name)}</strong> <span class="muted">#${job.id} · ${esc(job.state)}</span></div>
      <div>${pct(device?.progress ?? job.progress)}${left != null ? ` · ${esc(duration(left))} left · done ${esc(clock(Date.now() + left * 1000))}` : ""}</div>
      <div class="muted">started ${esc(clock(job.started_at))}${job.lines_total ? ` · ${job.lines ?? 0} of ${job.lines_total} lines` : ""}</div>`;
  };
  const show = (d) => {
    if (d.job_id !== device?.job_id) {
      job = null;
      if (d.job_id) guarded(async () => { job = await api("GET", `/api/v1/jobs/${d.job_id}`); card(); });
    }
    device = d;
    card();
    document.getElementById("info").innerHTML = `<span id="state" data-state="${esc(d.state)}">${esc(d.online ? d.state : "offline")}</span>
      <span>${esc(temps(d.temperatures))}</span><span>${pct(d.progress)}</span><span>job ${esc(d.job_id || "-")}</span>
      <span class="muted">${esc(d.error || "")}</span>`;
    for (const [k, h] of Object.entries(d.temperatures || {})) {
      for (const [name, v] of [[k, h.actual], [`${k} target`, h.target ?? 0]]) {
        (history[name] ||= []).push(v);
        if (history[name].length > 300) history[name].shift();
      }
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
  if (device && device.kind !== "blender") {
    await guarded(() => printerProfile(ref, document.getElementById("printer-profile-slot"), { guarded, toast }));
  }
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
      // Print jobs: the hub analyses the file, so it can match a printer and book the filament used.
      for (let i = 0; i < copies; i++) {
        const { job } = await api("POST", "/api/v1/print-jobs", {
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

function gpuText(gpus) {
  return (gpus || []).map((g) => `GPU${g.index} ${percent(g.util_pct)} · ${celsius(g.temp_c)}`
    + (g.mem_total_mb ? ` · ${bytes((g.mem_used_mb || 0) * 1e6)} of ${bytes(g.mem_total_mb * 1e6)}` : "")).join("; ");
}

async function nodesView() {
  view.innerHTML = `<h1>Nodes</h1><div class="scroll"><table><thead><tr><th>Node</th><th>Online</th><th>CPU</th>
    <th>Memory</th><th>Disk</th><th>Temperature</th><th>GPUs</th><th>Devices</th></tr></thead>
    <tbody id="nodes"></tbody></table></div>`;
  const series = {};
  const push = (id, k, v) => { const s = ((series[id] ||= {})[k] ||= []); if (v != null) s.push(v); if (s.length > 60) s.shift(); return s; };
  const row = (n) => {
    const m = n.metrics || {};
    return `<tr data-node="${esc(n.id)}"><td>${esc(n.id)}</td><td>${n.online ? "yes" : "no"}</td>
      <td>${sparkline(push(n.id, "cpu", m.cpu_pct))} <span class="cpu">${percent(m.cpu_pct)}</span></td>
      <td>${sparkline(push(n.id, "mem", m.mem_pct))} <span class="mem">${percent(m.mem_pct)}</span></td>
      <td class="disk">${percent(m.disk_pct)}</td>
      <td>${sparkline(push(n.id, "temp", m.cpu_temp_c), 100)} <span class="temp">${celsius(m.cpu_temp_c)}</span></td>
      <td>${esc(gpuText(m.gpus))}</td>
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
  leave?.(); leave = null;
  if (page === "login") return loginView();
  if (!live) live = new Live();
  switch (page) {
    case "device": return deviceView(rest.join("/"));
    case "dashboard": leave = await dashboardView({ view, live, guarded }); return leave;
    case "jobs": return jobsView();
    case "upload": return uploadView();
    case "nodes": return nodesView();
    case "render": return rest[0] ? renderJobView(rest[0], { view, live, guarded, esc, toast })
      : renderListView({ view, live, guarded, esc });
    case "stock": return stockView({ view, live, guarded, toast });
    case "orders": return ordersView({ view, live, guarded, toast });
    case "profiles": return profilesView({ view, live, guarded, toast });
    case "settings": return guarded(() => settingsView({ view, guarded, toast, me }));
    case "list": return listView(rest[0]);
    // Paper and alerts (paper.js): the pages QR codes and documents link to.
    case "quotes": live.watch({}, null); return quotesView({ view, live, guarded, esc, toast });
    case "quote": live.watch({}, null); return guarded(() => quoteView(rest[0], { view, guarded, esc, toast }));
    case "spool": live.watch({}, null); return guarded(() => spoolView(rest[0], { view, guarded, esc, toast }));
    case "order": live.watch({}, null); return guarded(() => orderView(rest[0], { view, guarded, esc }));
    case "job": live.watch({}, null); return guarded(() => jobView(rest[0], { view, esc }));
    case "alerts": return alertsView({ view, live, guarded, esc, toast });
    case "webhooks": live.watch({}, null); leave = await webhooksView({ view, guarded, toast, me }); return leave;
    default: leave = await gridView({ view, live, guarded }); return leave;
  }
}

document.getElementById("logout").onclick = () => guarded(async () => {
  await api("DELETE", "/api/v1/session"); showWho(null); location.hash = "#/login";
});
// Phones: the navigation folds behind the Menu button and folds again once a page is chosen.
const header = document.querySelector("header");
const navToggle = document.getElementById("nav-toggle");
navToggle.onclick = () => navToggle.setAttribute("aria-expanded", String(header.classList.toggle("open")));
const foldNav = () => { header.classList.remove("open"); navToggle.setAttribute("aria-expanded", "false"); };
// A click on a link folds it at once, the page's own link included (which changes no hash).
document.getElementById("main-nav").addEventListener("click", (e) => { if (e.target.closest("a")) foldNav(); });
window.addEventListener("hashchange", foldNav);
window.addEventListener("hashchange", route);
// A file without a thumbnail answers 404: hide the broken image rather than show its icon.
document.addEventListener("error", (e) => { if (e.target.tagName === "IMG") e.target.hidden = true; }, true);
api("GET", "/api/v1/session").then((me) => { showWho(me); route(); }).catch(() => { toLogin(); route(); });
