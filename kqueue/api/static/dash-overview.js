// The overview (#/): every queue on one line, the workers with their state and a compact partition
// summary, and the most recent tasks.

import { api, queuePath } from "./dash-api.js";
import { sparkline } from "./dash-charts.js";
import { ago, badge, cell, count, el, fill, link, millis, pausedText, queueHref, taskHref, when } from "./dash-dom.js";
import { partitionSummary, topicIndex } from "./dash-partitions.js";

const LIVE = new Set(["up", "stopping"]);

export function stateBadge(paused) {
  if (paused === undefined) return el("span", "–", "muted");
  return paused ? badge("paused", "paused") : badge("running", "running");
}

export function workerRows(workers, queues, lags, tableId) {
  const index = topicIndex(queues);
  // Live workers first; gone and stopped ones (silent for a few report intervals, shown with nothing
  // running until the API drops them) after, greyed.
  const sorted = [...workers].sort((a, b) => Number(LIVE.has(b.state)) - Number(LIVE.has(a.state)));
  const liveCount = workers.filter((w) => LIVE.has(w.state)).length;
  const gone = workers.length - liveCount;
  document.getElementById(`${tableId}-count`).textContent = `${liveCount} live${gone ? ` · ${gone} gone or stopped` : ""}`;
  fill(tableId, sorted, (w) => {
    const live = LIVE.has(w.state);
    const row = el("tr", undefined, live ? "" : "muted");
    row.dataset.state = w.state;
    row.dataset.worker = w.worker_id;
    cell(row, w.worker_id);
    cell(row, w.group);
    cell(row).appendChild(badge(w.state === "up" ? "live" : w.state, live ? "live" : "gone"));
    cell(row, `${w.busy} / ${w.concurrency}`, "num");
    cell(row, w.running, "num");
    const parts = cell(row, undefined, "partitions");
    parts.title = w.partitions.join(" ");
    for (const line of partitionSummary(w.partitions, index)) parts.appendChild(el("div", line.text));
    cell(row, count(w.partitions.reduce((sum, p) => sum + (lags[p] || 0), 0)), "num");
    cell(row, ago(w.at_ms));
    return row;
  }, Math.floor(Date.now() / 1000));
}

// The lag of each assigned partition ("topic/partition" -> lag), from the queues' details.
export function partitionLags(details) {
  const lags = {};
  for (const detail of details) for (const p of detail.partitions || []) lags[`${p.topic}/${p.partition}`] = p.lag;
  return lags;
}

export async function refreshOverview(live) {
  const [queues, workers, recent, cron] = await Promise.all([api("/queues"), api("/workers"), api("/tasks?limit=25"),
    api("/cron")]);
  const [series, details] = await Promise.all([
    Promise.all(queues.map((q) => api(`${queuePath(q.queue)}/series`))),
    Promise.all(queues.map((q) => api(queuePath(q.queue)))),
  ]);
  if (!live()) return;
  fill("queues", queues.map((q, i) => [q, series[i]]), ([q, s]) => {
    const row = el("tr");
    row.dataset.queue = q.queue;
    cell(row).appendChild(link(queueHref(q.queue), q.queue));
    const state = cell(row);
    state.appendChild(stateBadge(q.paused));
    if (q.paused) state.title = pausedText(q.paused);
    cell(row, count(q.lag), "num");
    const recentLatency = s.filter((b) => b.p50_ms !== null);
    cell(row).appendChild(sparkline(s.map((b) => b.completed), "done"));
    cell(row).appendChild(sparkline(s.map((b) => b.failed), "failed"));
    const last = recentLatency[recentLatency.length - 1];
    cell(row, millis(last ? last.p50_ms : null), "num");
    cell(row, millis(last ? last.p99_ms : null), "num");
    cell(row, count(q.dlq_records), "num");
    cell(row, count(q.members), "num");
    return row;
  });
  workerRows(workers, queues, partitionLags(details), "workers");
  cronRows(cron);
  fill("recent", recent, (t) => {
    const row = el("tr");
    row.dataset.taskId = t.task_id;
    cell(row).appendChild(link(taskHref(t.task_id), t.task_id));
    const queue = cell(row);
    if (t.queue) queue.appendChild(link(queueHref(t.queue), t.queue));
    cell(row, t.type);
    cell(row, t.status, `status status-${t.status}`);
    cell(row, t.attempts, "num");
    cell(row, t.error);
    return row;
  });
}

// The app's cron schedules: when each fires next and last fired, and which scheduler leads.
export function cronRows(cron) {
  const leader = cron.schedulers.find((s) => s.leader);
  document.getElementById("cron-leader").textContent = cron.schedules.length
    ? `${cron.schedulers.length} scheduler(s) alive${leader ? ` · leader ${leader.host} pid ${leader.pid}` : " · no leader now"}`
    : "";
  fill("cron", cron.schedules, (c) => {
    const row = el("tr");
    row.dataset.schedule = c.name;
    cell(row, c.name);
    cell(row).appendChild(link(queueHref(c.queue), c.queue));
    cell(row, c.task);
    cell(row, c.expression, "code");
    cell(row, c.tz);
    cell(row, c.next_fire_ms === null ? "–" : when(c.next_fire_ms));
    cell(row, c.last_fired_ms === null ? "never" : when(c.last_fired_ms));
    return row;
  });
}
