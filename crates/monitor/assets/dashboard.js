// hongbao's live dashboard: panels from /dashboard/config.json (the node's monitor file), data
// from /monitor/v1/query, polled every refresh_ms (at most 2 s). Read-only.
"use strict";

const COLORS = ["#d32f2f", "#1976d2", "#388e3c", "#f57c00", "#7b1fa2", "#0097a7", "#5d4037",
  "#c2185b", "#455a64", "#afb42b", "#512da8", "#00796b"];

function labelsParam(labels) {
  return Object.entries(labels || {}).map(([k, v]) => `${k}:${v}`).join(",");
}

async function query(params) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) search.set(k, v);
  const response = await fetch(`/monitor/v1/query?${search}`, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : response.status);
  return body;
}

function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 1) return v.toFixed(2);
  return v.toPrecision(3);
}

function card(panel) {
  const el = document.createElement("section");
  el.className = "panel";
  el.id = `panel-${panel.id}`;
  el.dataset.kind = panel.kind;
  el.innerHTML = `<h2></h2><div class="latest"></div><div class="body"></div>`;
  el.querySelector("h2").textContent = panel.title;
  document.getElementById("panels").appendChild(el);
  return el;
}

// A line chart of named series sharing one time axis; rebuilt when the set of series changes.
class Chart {
  constructor(el) { this.el = el; this.plot = null; this.names = ""; }
  update(from, step, lines) {
    const body = this.el.querySelector(".body");
    if (lines.length === 0) {
      if (this.plot) { this.plot.destroy(); this.plot = null; this.names = ""; }
      body.innerHTML = `<p class="empty">no readings in this window yet</p>`;
      return;
    }
    const n = lines[0].points.length;
    const xs = Array.from({ length: n }, (_, i) => from + i * step);
    const data = [xs, ...lines.map((l) => l.points)];
    const names = lines.map((l) => l.name).join("\u0000");
    if (!this.plot || names !== this.names) {
      if (this.plot) this.plot.destroy();
      body.innerHTML = "";
      const series = [{}, ...lines.map((l, i) => ({ label: l.name, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false }))];
      this.plot = new uPlot({ width: Math.max(300, body.clientWidth || 440), height: 200, series, legend: { live: false } }, data, body);
      this.names = names;
    } else {
      this.plot.setData(data);
    }
  }
}

function byName(panel, line) {
  if (panel.by) return line.labels[panel.by] || "(none)";
  return panel.metric;
}

function checkAlert(panel, el, latest) {
  const values = latest.filter((v) => v !== null && v !== undefined);
  const high = panel.alert_above !== undefined && values.some((v) => v > panel.alert_above);
  const low = panel.alert_below !== undefined && values.some((v) => v < panel.alert_below);
  el.classList.toggle("alert", high || low);
}

async function refreshSeries(panel, el, chart) {
  const answer = await query({ metric: panel.metric, labels: labelsParam(panel.labels), window: panel.window, by: panel.by });
  const lines = answer.series.map((l) => ({ name: byName(panel, l), points: l.points, total: l.total }));
  chart.update(answer.from, answer.step_s, lines);
  const latest = lines.map((l) => l.total);
  const what = answer.unit === "per_second" ? "over the window" : "now";
  el.querySelector(".latest").textContent = lines.map((l) => `${l.name}: ${fmt(l.total)}`).join(" · ") + (lines.length ? ` (${what})` : "");
  checkAlert(panel, el, answer.unit === "per_second" ? [] : latest);
}

async function refreshRatio(panel, el, chart) {
  const d = panel.denominator;
  const [num, den] = await Promise.all([
    query({ metric: panel.metric, labels: labelsParam(panel.labels), window: panel.window, by: panel.by }),
    query({ metric: d.metric, labels: labelsParam(d.labels), window: panel.window, by: panel.by }),
  ]);
  const dens = new Map(den.series.map((l) => [byName(panel, l), l]));
  const lines = [];
  for (const l of num.series) {
    const name = byName(panel, l);
    const base = dens.get(name);
    if (!base) continue;
    const points = l.points.map((v, i) => {
      const b = base.points[i];
      return v === null || !b ? null : v / b;
    });
    lines.push({ name, points, total: base.total ? l.total / base.total : null });
  }
  // A denominator with no numerator at all is a ratio of zero.
  for (const [name, base] of dens) {
    if (!lines.some((l) => l.name === name) && base.total) {
      lines.push({ name, points: base.points.map((b) => (b ? 0 : null)), total: 0 });
    }
  }
  chart.update(num.from, num.step_s, lines);
  el.querySelector(".latest").textContent = lines.map((l) => `${l.name}: ${fmt(l.total === null ? null : l.total * 100)} %`).join(" · ");
  checkAlert(panel, el, lines.map((l) => l.total));
}

async function refreshFunnel(panel, el) {
  const answer = await query({ metric: "funnel", window: panel.window });
  const top = Math.max(1, ...answer.steps.map((s) => s.count));
  const rows = answer.steps.map((s, i) => {
    const pct = (r) => (r === null || r === undefined ? "–" : `${(r * 100).toFixed(1)} %`);
    return `<tr data-step="${i}" data-count="${s.count}"><td>${s.name}</td>` +
      `<td class="count">${s.count}</td><td>${pct(s.from_previous)}</td><td>${pct(s.from_first)}</td>` +
      `<td style="width:30%"><span class="bar" style="width:${(100 * s.count) / top}%"></span></td></tr>`;
  }).join("");
  el.querySelector(".body").innerHTML =
    `<table class="funnel"><thead><tr><th>step</th><th>count</th><th>of previous</th><th>of first</th><th></th></tr></thead><tbody>${rows}</tbody></table>`;
  el.querySelector(".latest").textContent = `last ${answer.window_s / 60} min`;
}

async function main() {
  const status = document.getElementById("status");
  const config = await (await fetch("/dashboard/config.json", { cache: "no-store" })).json();
  const panels = config.panel.map((panel) => {
    const el = card(panel);
    return { panel, el, chart: new Chart(el) };
  });
  let round = 0;
  async function tick() {
    const results = await Promise.allSettled(panels.map(({ panel, el, chart }) => {
      if (panel.kind === "funnel") return refreshFunnel(panel, el);
      if (panel.kind === "ratio") return refreshRatio(panel, el, chart);
      return refreshSeries(panel, el, chart);
    }));
    const failed = results.filter((r) => r.status === "rejected");
    round += 1;
    status.dataset.state = failed.length ? "stale" : "live";
    status.dataset.round = String(round);
    status.textContent = failed.length
      ? `${failed.length} panel(s) failed: ${failed[0].reason.message}`
      : `live · updated ${new Date().toLocaleTimeString()} · every ${config.refresh_ms} ms`;
    setTimeout(tick, config.refresh_ms);
  }
  tick();
}

main().catch((e) => {
  const status = document.getElementById("status");
  status.dataset.state = "stale";
  status.textContent = `dashboard failed to start: ${e.message}`;
});
