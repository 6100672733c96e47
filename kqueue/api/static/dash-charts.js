// Charts as SVG built node by node (no library, no markup parsed): sparklines for the overview, line
// charts over time for a queue's page, and bars for depths. Colours come from dashboard.css classes.

import { clock, el } from "./dash-dom.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

function titled(node, text) {
  const title = svg("title");
  title.textContent = text;
  node.appendChild(title);
  return node;
}

export function sparkline(values, kind) {
  const chart = svg("svg", { class: `spark ${kind}`, viewBox: "0 0 120 24" });
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? 120 / (values.length - 1) : 0;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(22 - (v / max) * 20).toFixed(1)}`);
  chart.appendChild(svg("polyline", { points: points.join(" ") }));
  return titled(chart, `last: ${values[values.length - 1] || 0}, max: ${max}`);
}

// A horizontal bar for `value` out of `max` (a depth beside its number).
export function bar(value, max) {
  const chart = svg("svg", { class: "bar", viewBox: "0 0 100 10", preserveAspectRatio: "none" });
  const width = max > 0 ? Math.max(value > 0 ? 1 : 0, (value / max) * 100) : 0;
  chart.appendChild(svg("rect", { x: 0, y: 0, width: width.toFixed(1), height: 10 }));
  return chart;
}

// The axis' top: the next of 1, 2, 2.5, 5 (times a power of ten) at or above `value`, so the
// half-way line falls on a round number too.
export function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 2.5, 5, 10].map((step) => step * power).find((top) => top >= value);
}

const W = 600;
const H = 160;
const PAD = { left: 52, right: 8, top: 8, bottom: 20 };

// Lines over time: `times` (epoch ms, one per bucket), `series` [{name, kind, values}] where a value
// may be null (no data: the line breaks there), `format` tells a value. Returns a <figure>.
export function lineChart({ title, times, series, format = String }) {
  const figure = el("figure", undefined, "chart");
  figure.appendChild(el("figcaption", title));
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  titled(chart, title);
  const all = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
  const max = niceCeiling(Math.max(2, ...all));
  const x = (i) => PAD.left + (times.length > 1 ? (i * (W - PAD.left - PAD.right)) / (times.length - 1) : 0);
  const y = (v) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);

  for (const fraction of [0, 0.5, 1]) {
    const at = y(max * fraction);
    chart.appendChild(svg("line", { class: "grid", x1: PAD.left, x2: W - PAD.right, y1: at, y2: at }));
    const label = svg("text", { class: "axis", x: PAD.left - 4, y: at + 4, "text-anchor": "end" });
    label.textContent = format(max * fraction);
    chart.appendChild(label);
  }
  if (times.length) {
    for (const [i, anchor] of [[0, "start"], [times.length - 1, "end"]]) {
      const label = svg("text", { class: "axis", x: x(i), y: H - 4, "text-anchor": anchor });
      label.textContent = clock(times[i]);
      chart.appendChild(label);
    }
  }
  for (const s of series) {
    let run = [];
    const flush = () => {
      if (run.length === 1) chart.appendChild(svg("circle", { class: `line ${s.kind}`, cx: run[0][0], cy: run[0][1], r: 2 }));
      if (run.length > 1) chart.appendChild(svg("polyline", { class: `line ${s.kind}`, points: run.map((p) => p.join(",")).join(" ") }));
      run = [];
    };
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) flush();
      else run.push([x(i).toFixed(1), y(v).toFixed(1)]);
    });
    flush();
  }
  // One invisible column per bucket, titled with every series' value there (a tooltip on hover).
  const column = times.length > 1 ? (W - PAD.left - PAD.right) / (times.length - 1) : W;
  times.forEach((at, i) => {
    const text = [clock(at), ...series.map((s) => `${s.name}: ${s.values[i] === null ? "–" : format(s.values[i])}`)];
    chart.appendChild(titled(svg("rect", { class: "hover", x: (x(i) - column / 2).toFixed(1), y: PAD.top,
      width: column.toFixed(1), height: H - PAD.top - PAD.bottom }), text.join("\n")));
  });
  figure.appendChild(chart);
  const legend = el("p", undefined, "legend");
  for (const s of series) {
    legend.appendChild(el("span", "", `swatch ${s.kind}`));
    legend.appendChild(el("span", s.name));
  }
  figure.appendChild(legend);
  return figure;
}
