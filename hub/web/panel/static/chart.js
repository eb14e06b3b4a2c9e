// Small canvas charts: a temperature plot with one line per heater, values over time (the dashboard), sparklines.

export const COLORS = ["#c62828", "#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a"];

// The canvas cleared at its size on screen, sharp on high-density displays.
function surface(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w * ratio; canvas.height = h * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, w, h);
  return { g, w, h };
}

export function lineChart(canvas, series, { min = 0, max } = {}) {
  const { g, w, h } = surface(canvas);
  const names = Object.keys(series);
  const values = names.flatMap((n) => series[n]);
  const top = max ?? Math.max(50, ...values) * 1.1;
  g.strokeStyle = "#e6e9ee"; g.fillStyle = "#6a737d"; g.font = "11px system-ui";
  for (let v = 0; v <= top; v += 50) {
    const y = h - 16 - ((v - min) / (top - min)) * (h - 24);
    g.beginPath(); g.moveTo(30, y); g.lineTo(w, y); g.stroke(); g.fillText(String(v), 2, y + 4);
  }
  // "T0 target" is drawn dashed in the colour of "T0".
  const heaters = names.filter((n) => !n.endsWith(" target"));
  names.forEach((name) => {
    const pts = series[name];
    const target = name.endsWith(" target");
    const i = heaters.indexOf(target ? name.slice(0, -7) : name);
    g.strokeStyle = COLORS[Math.max(0, i) % COLORS.length]; g.lineWidth = target ? 1 : 2;
    g.setLineDash(target ? [4, 3] : []); g.beginPath();
    pts.forEach((v, x) => {
      const px = 30 + (x / Math.max(1, pts.length - 1)) * (w - 34);
      const py = h - 16 - ((v - min) / (top - min)) * (h - 24);
      x ? g.lineTo(px, py) : g.moveTo(px, py);
    });
    g.stroke();
    if (!target) { g.fillStyle = g.strokeStyle; g.fillText(`${name} °C`, 40 + i * 70, h - 2); }
  });
}

export function sparkline(values, max = 100) {
  const w = 120, h = 28;
  const pts = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * w},${h - (v / max) * h}`).join(" ");
  return `<svg class="spark" viewBox="0 0 ${w} ${h}" role="img" aria-label="last ${values.length} readings">` +
    `<polyline fill="none" stroke="#1565c0" stroke-width="2" points="${pts}"/></svg>`;
}

// A round step for about `n` gridlines up to `top`: 1, 2 or 5 times a power of ten.
function niceStep(top, n = 4) {
  const raw = Math.max(top, 1e-9) / n, p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw);
}

/**
 * Values over time: `times` (Date, one per bucket), `series` ({name: values}), drawn as lines or stacked bars.
 * The y axis is labelled in `unit`, the x axis in the viewer's zone by `label(time)`. The canvas says what it
 * holds in data-series (the names) and data-points (how many values are not zero), and in its aria-label.
 */
export function timeChart(canvas, { times, series, unit, label, kind = "line", max, colors = {} }) {
  const { g, w, h } = surface(canvas);
  const names = Object.keys(series);
  const stacked = times.map((_, i) => names.reduce((sum, n) => sum + (series[n][i] || 0), 0));
  const peak = kind === "bar" ? Math.max(0, ...stacked) : Math.max(0, ...names.flatMap((n) => series[n]));
  const step = niceStep(max ?? peak);
  const top = max ?? Math.max(step, Math.ceil(peak / step) * step);
  const left = 52, bottom = 18, plotW = w - left - 6, plotH = h - bottom - 8;
  const y = (v) => 8 + plotH - (v / top) * plotH;
  const x = (i) => left + ((i + 0.5) / Math.max(1, times.length)) * plotW;
  g.font = "11px system-ui"; g.lineWidth = 1;
  for (let v = 0; v <= top + 1e-9; v += step) {
    g.strokeStyle = "#e6e9ee"; g.beginPath(); g.moveTo(left, y(v)); g.lineTo(w - 6, y(v)); g.stroke();
    g.fillStyle = "#6a737d"; g.fillText(`${+v.toFixed(3)} ${unit}`, 2, y(v) + 4);
  }
  const every = Math.max(1, Math.ceil(times.length / Math.max(1, Math.floor(plotW / 70))));
  times.forEach((t, i) => {
    const text = label(t);
    if (i % every === 0) g.fillText(text, Math.max(left, x(i) - g.measureText(text).width / 2), h - 4);
  });
  const base = times.map(() => 0);
  names.forEach((name, k) => {
    g.strokeStyle = g.fillStyle = colors[name] || COLORS[k % COLORS.length];
    const bar = Math.max(2, (plotW / Math.max(1, times.length)) * 0.7);
    if (kind === "bar") {
      series[name].forEach((v, i) => {
        if (v) g.fillRect(x(i) - bar / 2, y(base[i] + v), bar, y(base[i]) - y(base[i] + v));
        base[i] += v || 0;
      });
    } else {
      g.lineWidth = 2; g.beginPath();
      series[name].forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
      g.stroke();
    }
  });
  const points = names.reduce((sum, n) => sum + series[n].filter((v) => v).length, 0);
  canvas.dataset.series = names.join(",");
  canvas.dataset.points = String(points);
  canvas.setAttribute("aria-label", `${canvas.dataset.title || "chart"}: ${names.join(", ") || "no data"} in ${unit}, `
    + `${times.length} intervals from ${times.length ? label(times[0]) : "–"}`);
}
