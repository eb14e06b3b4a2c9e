// One farm-grid tile: a fixed skeleton made once, then only the parts whose text changed are touched.
import { clock, duration, esc, grams, pct, secondsLeft, temps } from "./format.js";

export const STATES = ["printing", "paused", "idle", "error", "offline"];

export const tileState = (d) => (d.online ? d.state : "offline");

export function createTile() {
  const el = document.createElement("a");
  el.className = "tile";
  el.setAttribute("role", "listitem");
  el.innerHTML = `<img class="thumb" alt="" hidden><div class="name"></div><div class="meta where"></div>
    <div class="meta job"></div><div class="meta eta"></div>
    <div class="meta material" aria-label="loaded material"></div><div class="meta temps"></div>
    <div class="alert" role="alert"></div><div class="bar"><i></i></div>`;
  el._parts = Object.fromEntries(["thumb", "name", "where", "job", "eta", "material", "temps", "alert", "bar"]
    .map((p) => [p, el.querySelector(p === "bar" ? ".bar > i" : `.${p}`)]));
  el._text = {};
  return el;
}

function text(el, part, value) {
  if (el._text[part] !== value) { el._text[part] = value; el._parts[part].textContent = value; }
}

function materialHtml(m) {
  if (!m) return "";
  const hex = /^#[0-9a-f]{6}$/i.test(m.color_hex || "") ? m.color_hex : "";
  return `<i class="swatch" data-color="${esc(hex)}" title="${esc(hex || "colour unknown")}"></i>
    ${esc(m.material)}${m.name ? ` ${esc(m.name)}` : ""} · ${grams(m.remaining_grams)}`;
}

/** Paint device `d` (with its job and open alerts, looked up by `ctx`) on tile `el`. */
export function paintTile(el, d, ctx) {
  const job = ctx.job(d.job_id);
  const state = tileState(d);
  if (el.dataset.state !== state) el.dataset.state = state;
  const href = `#/device/${d.ref}`;
  if (el._ref !== d.ref) {
    el._ref = d.ref;
    el.setAttribute("href", href);
    el.setAttribute("aria-label", `device ${d.ref}`);
    el._parts.name.title = d.ref;
  }
  text(el, "name", d.id);
  text(el, "where", `${state} · ${d.node}${d.model ? ` · ${d.model}` : ""}`);
  const busy = state === "printing" || state === "paused";
  // The device's own reading, else the job's (events carry it when telemetry does not).
  const progress = (busy && (d.progress || job?.progress)) || 0;
  text(el, "job", job && busy ? `${job.name} · ${pct(progress)}` : "");
  const left = busy ? secondsLeft(d, job) : null;
  text(el, "eta", left != null ? `${duration(left)} left · done ${clock(Date.now() + left * 1000)}` : "");
  text(el, "temps", temps(d.temperatures));
  const alert = d.error || ctx.alert(d.ref) || "";
  text(el, "alert", alert);
  const mat = materialHtml(d.material);
  if (el._text.material !== mat) {
    el._text.material = mat;
    el._parts.material.innerHTML = mat;
    // Through the CSSOM: the CSP refuses style attributes in markup.
    const s = el._parts.material.querySelector(".swatch[data-color]");
    if (s && s.dataset.color) s.style.background = s.dataset.color;
  }
  const width = `${Math.round(progress * 100)}%`;
  if (el._parts.bar.style.width !== width) el._parts.bar.style.width = width;
  const thumb = job && busy ? `/api/v1/files/${job.file_sha256}/thumbnail` : "";
  if (el._text.thumb !== thumb) {
    el._text.thumb = thumb;
    el._parts.thumb.hidden = !thumb;
    if (thumb) el._parts.thumb.src = thumb; else el._parts.thumb.removeAttribute("src");
  }
}
