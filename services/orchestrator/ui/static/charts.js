// Small inline-SVG charts for Cadencia's pages: no library, no build step.
// Each chart sets data-points on its host (how many non-zero values it drew) so tests and people
// can tell an empty chart from a drawn one.
window.CadenciaCharts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2f5bd3", "#1f7a4d", "#c0710b", "#8e44ad", "#17a589", "#b3261e", "#7d8597", "#d35400"];
  const named = (name, i) => getComputedStyle(document.documentElement).getPropertyValue("--" + name).trim()
    || PALETTE[i % PALETTE.length];
  const el = (tag, attrs = {}, text) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  };
  const html = (tag, text, cls) => { const n = document.createElement(tag); if (text !== undefined) n.textContent = text; if (cls) n.className = cls; return n; };
  const fmt = (n) => n >= 10000 ? (n / 1000).toFixed(0) + "k" : n >= 1000 ? (n / 1000).toFixed(1) + "k" : String(n);

  function legend(names) {
    const box = html("div", undefined, "legend");
    names.forEach((name, i) => { const s = html("span", name); const dot = html("i"); dot.style.background = named(name, i); s.prepend(dot); box.append(s); });
    return box;
  }

  // axis: bucket starts (ISO); series: {name: [values per bucket]}; label(iso) formats an x label.
  function lines(host, axis, series, label) {
    host.replaceChildren();
    const names = Object.keys(series || {}).sort();
    const points = names.reduce((a, n) => a + series[n].filter((v) => v > 0).length, 0);
    host.dataset.points = String(points);
    if (!points) { host.append(html("div", "no data in this window yet", "empty")); return; }
    const W = 420, H = 150, L = 34, R = 8, T = 8, B = 20;
    const max = Math.max(1, ...names.flatMap((n) => series[n]));
    const x = (i) => L + (W - L - R) * (axis.length > 1 ? i / (axis.length - 1) : 0);
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
    for (const v of [0, max / 2, max]) {
      svg.append(el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e6e9ef" }));
      svg.append(el("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end", "font-size": 10, fill: "#5b6478" }, fmt(Math.round(v))));
    }
    for (const i of [0, Math.floor((axis.length - 1) / 2), axis.length - 1]) {
      svg.append(el("text", { x: x(i), y: H - 5, "text-anchor": i === 0 ? "start" : i === axis.length - 1 ? "end" : "middle",
                              "font-size": 10, fill: "#5b6478" }, label(axis[i])));
    }
    names.forEach((name, k) => {
      const pts = series[name].map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
      const line = el("polyline", { points: pts, fill: "none", stroke: named(name, k), "stroke-width": 1.8, "stroke-linejoin": "round" });
      line.append(el("title", {}, `${name}: ${series[name].reduce((a, b) => a + b, 0)} in this window`));
      svg.append(line);
    });
    svg.setAttribute("aria-label", names.map((n) => `${n} ${series[n].reduce((a, b) => a + b, 0)}`).join(", "));
    host.append(svg, legend(names));
  }

  // entries: [[label, value, note?]]; horizontal bars, largest first unless keepOrder.
  function bars(host, entries, colorOf, keepOrder) {
    host.replaceChildren();
    const rows = (entries || []).filter((e) => e[1] > 0);
    if (!keepOrder) rows.sort((a, b) => b[1] - a[1]);
    rows.splice(12);
    host.dataset.points = String(rows.length);
    if (!rows.length) { host.append(html("div", "nothing yet", "empty")); return; }
    const W = 420, row = 22, LBL = 150, H = rows.length * row + 4;
    const max = Math.max(1, ...rows.map((r) => r[1]));
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": rows.map((r) => `${r[0]} ${r[1]}`).join(", ") });
    rows.forEach(([name, value, note], i) => {
      const top = i * row + 2;
      const text = name.length > 24 ? name.slice(0, 23) + "…" : name;
      svg.append(el("text", { x: LBL - 6, y: top + 14, "text-anchor": "end", "font-size": 11, fill: "#1d2433" }, text));
      const w = Math.max(2, (W - LBL - (rows.some((r) => r[2]) ? 150 : 50)) * value / max);
      const bar = el("rect", { x: LBL, y: top + 3, width: w, height: row - 8, rx: 3, fill: colorOf ? colorOf(name, i) : "#2f5bd3" });
      bar.append(el("title", {}, `${name}: ${value}${note ? " · " + note : ""}`));
      svg.append(bar);
      svg.append(el("text", { x: LBL + w + 5, y: top + 14, "font-size": 11, fill: "#5b6478" }, fmt(value) + (note ? " · " + note : "")));
    });
    host.append(svg);
  }

  // stages: [[name, count]] in order: each bar with its share of the first stage and of the one before.
  function funnel(host, stages) {
    const first = (stages[0] || [0, 0])[1] || 0;
    const rows = stages.map(([name, n], i) => {
      const prev = i > 0 ? stages[i - 1] : null;
      const share = first ? `${Math.round(100 * n / first)}%` : "";
      return [name, n, share + (prev && prev[1] && i > 1 ? ` · ${Math.round(100 * n / prev[1])}% of ${prev[0]}` : "")];
    });
    bars(host, rows, (_name, i) => PALETTE[i % PALETTE.length], true);
  }

  return { lines, bars, funnel, color: named };
})();
