// Units and times as an operator reads them: %, °C, g, GB; clock times in the viewer's own zone.

export const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export const pct = (p) => (p == null ? "" : `${Math.round(p * 100)} %`);

export const percent = (v) => (v == null ? "–" : `${Math.round(v)} %`);

export const celsius = (v) => (v == null ? "–" : `${Math.round(v)} °C`);

export const grams = (g) => (g == null ? "" : `${Math.round(g)} g`);

export function bytes(n) {
  if (n == null) return "–";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(n < 10 && i ? 1 : 0)} ${units[i]}`;
}

// "T0 214/215 °C · B 60/60 °C": actual over target, per heater (plain text: escape it for markup).
export function temps(t) {
  return Object.entries(t || {}).map(([k, h]) =>
    `${k} ${Math.round(h.actual)}${h.target ? `/${Math.round(h.target)}` : ""} °C`).join(" · ");
}

export function duration(s) {
  if (s == null || !Number.isFinite(s) || s < 0) return "";
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.round(s / 60);
  return m < 60 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

const clockFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

// A moment in the viewer's zone: the time alone when it is today, with the date otherwise.
export function clock(when) {
  if (when == null || when === "") return "";
  const d = when instanceof Date ? when : new Date(when);
  if (Number.isNaN(d.getTime())) return "";
  return d.toDateString() === new Date().toDateString() ? clockFmt.format(d) : dateFmt.format(d);
}

// Seconds left on a job: the device's own estimate when it sends one, else extrapolated from progress so far.
export function secondsLeft(device, job) {
  if (device?.remaining_s != null) return device.remaining_s;
  const progress = device?.progress ?? job?.progress;
  if (!job?.started_at || !progress) return null;
  const spent = (Date.now() - Date.parse(job.started_at)) / 1000;
  return spent * (1 - progress) / progress;
}

export const timeZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone;

// A moment as a datetime-local field shows it: in the viewer's zone, to the minute.
export function localInput(when) {
  const d = when ? new Date(when) : null;
  if (!d || Number.isNaN(d.getTime())) return "";
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}
