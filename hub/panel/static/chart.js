// Small canvas charts: a temperature plot with one line per heater, and sparklines.

const COLORS = ["#c62828", "#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a"];

export function lineChart(canvas, series, { min = 0, max } = {}) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w * ratio; canvas.height = h * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, w, h);
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
