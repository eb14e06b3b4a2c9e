// Render jobs: the list with progress and ETA, and one job's frame grid with its controls.
import { api, all, throttled } from "./api.js";

const minutes = (s) => (s == null ? "" : s < 90 ? `ETA ${Math.round(s)} s` : `ETA ${Math.round(s / 60)} min`);
const ACTIVE = ["queued", "rendering", "paused"];

function bars(root) {
  for (const b of root.querySelectorAll(".bar[data-progress] > i")) {
    b.style.width = `${Math.round(Number(b.parentElement.dataset.progress) * 100)}%`;
  }
}

function progressHtml(j) {
  return `<div class="bar" data-progress="${Number(j.progress) || 0}"><i></i></div>
    <span class="muted">${j.frames_done}/${j.frames_total} frames ${ACTIVE.includes(j.state) ? minutes(j.eta_s) : ""}</span>`;
}

export async function renderListView({ view, live, guarded, esc }) {
  view.innerHTML = `<h1>Render jobs</h1><table><thead><tr><th>#</th><th>Name</th><th>State</th><th>Progress</th></tr></thead>
    <tbody id="render-jobs"></tbody></table>`;
  const body = document.getElementById("render-jobs");
  const load = async () => {
    const jobs = (await all("/api/v1/render-jobs")).reverse();
    body.innerHTML = jobs.length ? jobs.map((j) => `<tr data-job="${j.id}" data-state="${esc(j.state)}">
      <td>${j.id}</td><td><a href="#/render/${j.id}">${esc(j.name)}</a></td><td>${esc(j.state)}</td>
      <td>${progressHtml(j)}</td></tr>`).join("") : `<tr><td colspan="4">no render jobs yet</td></tr>`;
    bars(body);
  };
  await guarded(load);
  // At most one refetch a second however many frames land: a busy job sends an event per frame.
  const again = throttled(() => guarded(load));
  live.watch({ "render-jobs": again, render: again }, again);
  return again.cancel;
}

function frameHtml(f, job, esc) {
  const label = `frame ${f.frame}: ${f.state}`;
  const inner = f.thumb_url ? `<img alt="" loading="lazy" src="${esc(f.thumb_url)}">`
    : `<span class="placeholder">${f.url ? esc(job.file_format) : ""}</span>`;
  const tag = f.url ? `a href="${esc(f.url)}" download` : "div";
  return `<${tag} class="frame" role="listitem" data-frame="${f.frame}" data-state="${esc(f.state)}"
    aria-label="${esc(label)}" title="${esc(label)}${f.device ? ` on ${esc(f.device)}` : ""}">${inner}
    <span class="n">${f.frame}</span></${tag.split(" ")[0]}>`;
}

export async function renderJobView(id, { view, live, guarded, esc, toast }) {
  view.innerHTML = `<h1>Render job ${esc(id)} <span id="render-name" class="muted"></span></h1>
    <div class="row" id="render-info"></div>
    <div class="row">
      <button id="render-pause" aria-label="Pause render job">Pause</button>
      <button id="render-resume" aria-label="Resume render job">Resume</button>
      <button id="render-cancel" class="danger" aria-label="Cancel render job">Cancel</button>
    </div>
    <div class="frames" id="frames" role="list" aria-label="Frames"></div>
    <p class="muted" id="frames-more"></p>`;
  const grid = document.getElementById("frames");
  const load = async () => {
    const [job, frames] = await Promise.all([api("GET", `/api/v1/render-jobs/${id}`),
      api("GET", `/api/v1/render-jobs/${id}/frames`)]);
    document.getElementById("render-name").textContent = job.name;
    const info = document.getElementById("render-info");
    info.innerHTML = `<span id="render-state" data-state="${esc(job.state)}">${esc(job.state)}</span>${progressHtml(job)}
      <span class="muted">${esc(job.error || "")}</span>`;
    bars(info);
    // Cells are rewritten only when they change, so thumbnails already loaded are not fetched again.
    const cells = new Map([...grid.children].map((c) => [c.dataset.frame, c]));
    for (const f of frames.frames) {
      const html = frameHtml(f, job, esc);
      const old = cells.get(String(f.frame));
      if (old?._html === html) continue;
      const tmp = document.createElement("div"); tmp.innerHTML = html;
      const cell = tmp.firstElementChild; cell._html = html;
      if (old) old.replaceWith(cell); else grid.appendChild(cell);
    }
    document.getElementById("frames-more").textContent = frames.next == null ? ""
      : `showing frames ${frames.frames[0].frame}–${frames.next - 1} of ${job.frame_start}–${job.frame_end}`;
  };
  const act = (label, path) => () => guarded(async () => {
    if (!confirm(`${label} render job ${id}?`)) return;
    await api("POST", `/api/v1/render-jobs/${id}/${path}`);
    toast(`${label}: done`);
    await load();
  });
  document.getElementById("render-pause").onclick = act("Pause", "pause");
  document.getElementById("render-resume").onclick = act("Resume", "resume");
  document.getElementById("render-cancel").onclick = act("Cancel", "cancel");
  await guarded(load);
  // At most one refetch a second however many frames land: a busy job sends an event per frame.
  const again = throttled(() => guarded(load));
  live.watch({ "render-jobs": again, render: again }, again);
  return again.cancel;
}
