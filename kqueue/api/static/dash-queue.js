// A queue's page (#/queues/<queue>): paused state with Pause and Resume, its figures (with its queue-wide
// rate limit), depth per lane and tier, finished tasks and latency over time, its workers and its dead letters.

import { api, queuePath } from "./dash-api.js";
import { bar, lineChart } from "./dash-charts.js";
import { cell, clear, count, el, fill, millis, pausedText } from "./dash-dom.js";
import { refreshDeadLetters, showDeadLettersOf } from "./dash-dlq.js";
import { partitionLags, stateBadge, workerRows } from "./dash-overview.js";

const page = { queue: "", minutes: 5, charted: "" };

export function showQueue(queue) {
  if (page.queue !== queue) {
    page.queue = queue;
    page.charted = "";
    document.getElementById("charts").replaceChildren();
    document.getElementById("queue-figures").replaceChildren();
    document.getElementById("queue-state").replaceChildren();
    for (const table of ["depth", "queue-workers"]) clear(table);
    document.getElementById("pause-result").textContent = "";
    document.getElementById("pause-reason").value = "";
  }
  document.getElementById("queue-name").textContent = queue;
  showDeadLettersOf(queue);
}

function showState(paused) {
  const state = document.getElementById("queue-state");
  state.replaceChildren(stateBadge(paused));
  state.dataset.paused = paused === undefined ? "unknown" : String(Boolean(paused));
  if (paused) state.appendChild(el("span", ` ${pausedText(paused)}`));
  // Both buttons stay usable while the API does not say (an API without pausing answers the click).
  document.getElementById("pause").disabled = Boolean(paused);
  document.getElementById("resume").disabled = paused === null;
}

// The queue-wide limit (`kqueue queue limit`); workers do not report their task types' own limits.
function limitText(limit) {
  if (limit === undefined) return "–"; // an API that predates queue limits
  return limit ? `${limit.rate}, all task types together` : "none (queue-wide)";
}

function showFigures(detail) {
  const rates = detail.rates || {};
  const figures = [["group", detail.group], ["members", count(detail.members)], ["depth", count(detail.lag)],
    ["settled / s", rates.settled_per_s ?? "–"], ["dead letters", count(detail.dlq_records)],
    ["dead letters / s", rates.dead_letters_per_s ?? "–"], ["rate limit", limitText(detail.limit)]];
  document.getElementById("queue-figures").replaceChildren(...figures.flatMap(([name, value]) => [
    el("dt", name), el("dd", value)]));
  const lanes = detail.lanes || [];
  const deepest = Math.max(0, ...lanes.map((lane) => lane.lag));
  fill("depth", lanes, (lane) => {
    const row = el("tr");
    row.dataset.topic = lane.topic;
    row.dataset.kind = lane.tier ? "tier" : "lane";
    cell(row, lane.tier ? `tier ${lane.tier}` : `lane ${lane.lane}`);
    cell(row, lane.topic, "muted");
    cell(row, lane.partitions, "num");
    cell(row, count(lane.records), "num");
    cell(row, count(lane.lag), "num depth");
    cell(row).appendChild(bar(lane.lag, deepest));
    return row;
  });
}

function showCharts(series) {
  const shown = JSON.stringify(series);
  if (shown === page.charted) return; // unchanged: keep the nodes (a tooltip being read stays)
  page.charted = shown;
  const times = series.map((b) => b.at);
  document.getElementById("charts").replaceChildren(
    lineChart({ title: "finished per 10 s", times, format: count, series: [
      { name: "completed", kind: "done", values: series.map((b) => b.completed) },
      { name: "failed", kind: "failed", values: series.map((b) => b.failed) },
      { name: "cancelled", kind: "cancelled", values: series.map((b) => b.cancelled) }] }),
    lineChart({ title: "latency, enqueue to finish", times, format: (v) => millis(Math.round(v)), series: [
      { name: "p50", kind: "p50", values: series.map((b) => b.p50_ms) },
      { name: "p99", kind: "p99", values: series.map((b) => b.p99_ms) }] }));
}

export async function refreshQueue(live) {
  const queue = page.queue;
  const [detail, series] = await Promise.all([
    api(queuePath(queue)), api(`${queuePath(queue)}/series?minutes=${page.minutes}`), refreshDeadLetters(live)]);
  if (!live()) return;
  showState(detail.paused);
  showFigures(detail);
  showCharts(series);
  workerRows(detail.workers || [], [detail], partitionLags([detail]), "queue-workers");
}

async function act(what, refreshNow) {
  const result = document.getElementById("pause-result");
  const reason = document.getElementById("pause-reason").value.trim();
  const body = what === "pause" && reason ? { reason } : {};
  result.textContent = `${what}…`;
  try {
    await api(`${queuePath(page.queue)}/${what}`, { method: "POST", json: body });
    result.textContent = what === "pause" ? `paused ${page.queue}` : `resumed ${page.queue}`;
    document.getElementById("pause-reason").value = "";
  } catch (error) {
    result.textContent = `${what} failed: ${error.message}`;
  }
  result.dataset.done = what;
  await refreshNow();
}

export function bindQueue(refreshNow) {
  document.getElementById("pause-form").addEventListener("submit", (event) => {
    event.preventDefault();
    act("pause", refreshNow);
  });
  document.getElementById("resume").addEventListener("click", () => act("resume", refreshNow));
  document.getElementById("minutes").addEventListener("change", (event) => {
    page.minutes = Number(event.target.value);
    refreshNow();
  });
}
