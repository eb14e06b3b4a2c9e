// Dashboard: how busy the farm was and the filament it used, over a period cut into intervals that start on
// the viewer's own clock (whole hours, local midnight), from the hub's reports.
import { api } from "./api.js";
import { COLORS, timeChart } from "./chart.js";
import { esc, grams, timeZone } from "./format.js";
import { paintSwatches } from "./stock.js";

const HOUR = 3600, DAY = 86400;
const RANGES = {
  hour: { label: "Last hour", every: 300, span: HOUR, fmt: { hour: "2-digit", minute: "2-digit" } },
  day: { label: "Last 24 hours", every: HOUR, span: DAY, fmt: { hour: "2-digit", minute: "2-digit" } },
  week: { label: "Last 7 days", every: 6 * HOUR, span: 7 * DAY, fmt: { weekday: "short", hour: "2-digit" } },
  month: { label: "Last 30 days", every: DAY, span: 30 * DAY, fmt: { month: "short", day: "numeric" } },
};

// The period's end: the first interval boundary after now, counted from local midnight.
function period({ every, span }) {
  const now = new Date();
  const midnight = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const end = midnight + Math.ceil((now.getTime() - midnight) / (every * 1000) || 1) * every * 1000;
  return { from: new Date(end - span * 1000).toISOString(), to: new Date(end).toISOString(), every };
}

const hours = (h) => `${h.toFixed(h < 10 ? 1 : 0)} h`;
const weight = (g) => (g < 10 ? `${g.toFixed(g < 1 ? 2 : 1)} g` : grams(g));
const share = (u) => `${(u * 100).toFixed(u < 0.1 ? 1 : 0)} %`;

function legend(names, colors) {
  return names.map((n) => `<span><i class="swatch" data-color="${colors[n]}"></i> ${esc(n)}</span>`).join(" ");
}

export async function dashboardView({ view, live, guarded }) {
  view.innerHTML = `<h1>Dashboard</h1>
    <div class="row"><label>Period <select id="range" aria-label="Period">${Object.entries(RANGES).map(([k, r]) =>
      `<option value="${k}"${k === "day" ? " selected" : ""}>${r.label}</option>`).join("")}</select></label>
      <span class="muted">times in your zone, ${esc(timeZone())}</span></div>
    <div class="row stats" id="totals"></div>
    <section><h2>Utilisation</h2><canvas id="use-chart" data-title="Farm utilisation" role="img"></canvas></section>
    <section><h2>Filament used</h2><canvas id="material-chart" data-title="Filament used" role="img"></canvas>
      <div class="row" id="material-legend"></div></section>
    <div class="forms"><section><h2>Printers</h2><div class="scroll"><table><thead><tr><th>Printer</th><th>Jobs</th>
      <th>Printing</th><th>Utilisation</th></tr></thead><tbody id="printers"></tbody></table></div></section>
    <section><h2>Materials</h2><div class="scroll"><table><thead><tr><th>Material</th><th>Used</th><th>Jobs</th></tr>
      </thead><tbody id="materials"></tbody></table></div></section></div>`;
  const select = document.getElementById("range");
  const load = async () => {
    const range = RANGES[select.value];
    const q = period(range);
    const [line, use, used] = await Promise.all([
      api("GET", `/api/v1/reports/timeline?${new URLSearchParams(q)}`),
      api("GET", `/api/v1/reports/utilisation?${new URLSearchParams({ from: q.from, to: q.to })}`),
      api("GET", `/api/v1/reports/materials?${new URLSearchParams({ from: q.from, to: q.to })}`)]);
    const times = line.buckets.map((b) => new Date(b.start));
    const fmt = new Intl.DateTimeFormat(undefined, range.fmt);
    const label = (t) => fmt.format(t);
    const busy = line.buckets.reduce((s, b) => s + b.printing_hours, 0);
    const possible = line.buckets.reduce((s, b) => s + b.hours, 0) * line.printers;
    document.getElementById("totals").innerHTML = `<span><strong>${hours(busy)}</strong> printing</span>
      <span><strong>${share(possible ? busy / possible : 0)}</strong> of ${line.printers} printers' time</span>
      <span><strong>${weight(used.total_grams)}</strong> filament</span>`;
    timeChart(document.getElementById("use-chart"), { times, label, unit: "%", max: 100,
      series: { farm: line.buckets.map((b) => b.utilisation * 100) } });
    const names = [...new Set(line.buckets.flatMap((b) => Object.keys(b.grams)))].sort();
    const colors = Object.fromEntries(names.map((n, i) => [n, COLORS[i % COLORS.length]]));
    timeChart(document.getElementById("material-chart"), { times, label, unit: "g", kind: "bar", colors,
      series: Object.fromEntries(names.map((n) => [n, line.buckets.map((b) => b.grams[n] || 0)])) });
    document.getElementById("material-legend").innerHTML = legend(names, colors);
    document.getElementById("printers").innerHTML = use.printers.map((p) => `<tr><td><a href="#/device/${esc(p.device)}">
      ${esc(p.device)}</a></td><td>${p.jobs}</td><td>${hours(p.printing_hours)}</td><td>${share(p.utilisation)}</td></tr>`)
      .join("") || `<tr><td colspan="4">no printers</td></tr>`;
    document.getElementById("materials").innerHTML = used.materials.map((m) => `<tr><td><i class="swatch"
      data-color="${esc(m.color || "")}"></i> ${esc(m.material)}</td><td>${weight(m.grams)}</td><td>${m.jobs}</td>
      </tr>`).join("") || `<tr><td colspan="3">none used</td></tr>`;
    paintSwatches(view);
  };
  select.onchange = () => guarded(load);
  // A finished job changes the charts: redraw a few seconds after the last change, and as the period moves on.
  let soon = null;
  const later = () => { clearTimeout(soon); soon = setTimeout(() => guarded(load), 3000); };
  const tick = setInterval(() => guarded(load), 60_000);
  await guarded(load);
  live.watch({ jobs: later }, () => guarded(load));
  return () => { clearTimeout(soon); clearInterval(tick); };
}
