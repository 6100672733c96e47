// The kqueue dashboard: polls the REST API every 2 s and renders it. Every piece of text that comes
// from a task (ids, types, errors, payloads) is set with textContent, never parsed as HTML.
"use strict";

const API = "api/v1";
const REFRESH_MS = 2000;
const state = { token: sessionStorage.getItem("kqueue-token") || "", dlqQueue: "", shownTask: "" };

// A token given as #token=... (a link from `kqueue demo`) is taken and removed from the address bar.
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) {
  state.token = fromHash;
  sessionStorage.setItem("kqueue-token", fromHash);
  history.replaceState(null, "", location.pathname + location.search);
}

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = { "Accept": "application/json", ...(options.headers || {}) };
  if (state.token) headers["Authorization"] = `Bearer ${state.token}`;
  const answer = await fetch(`${API}${path}`, { ...options, headers });
  if (answer.status === 401) throw new Unauthorized("the API wants a token");
  const body = await answer.json().catch(() => null);
  if (!answer.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : `HTTP ${answer.status}`;
    const error = new Error(detail);
    error.status = answer.status;
    throw error;
  }
  return body;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function cell(row, text, className) {
  const td = el("td", text, className);
  row.appendChild(td);
  return td;
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

function ago(ms) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60 ? `${s}s ago` : `${Math.round(s / 60)}m ago`;
}

function millis(ms) {
  if (ms === null || ms === undefined) return "–";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function sparkline(values, kind) {
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("class", `spark ${kind}`);
  svg.setAttribute("viewBox", "0 0 120 24");
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? 120 / (values.length - 1) : 0;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(22 - (v / max) * 20).toFixed(1)}`);
  const line = document.createElementNS(svgNS, "polyline");
  line.setAttribute("points", points.join(" "));
  svg.appendChild(line);
  const title = document.createElementNS(svgNS, "title");
  title.textContent = `last: ${values[values.length - 1] || 0}, max: ${max}`;
  svg.appendChild(title);
  return svg;
}

function fill(tableId, rows, render) {
  const body = document.querySelector(`#${tableId} tbody`);
  const fresh = document.createElement("tbody");
  for (const item of rows) fresh.appendChild(render(item));
  if (!rows.length) {
    const row = el("tr");
    const td = cell(row, "none", "muted");
    td.colSpan = document.querySelectorAll(`#${tableId} thead th`).length;
    fresh.appendChild(row);
  }
  body.replaceWith(fresh);
}

async function renderQueues(queues) {
  const series = await Promise.all(queues.map((q) => api(`/queues/${encodeURIComponent(q.queue)}/series`)));
  fill("queues", queues.map((q, i) => [q, series[i]]), ([q, s]) => {
    const row = el("tr");
    row.dataset.queue = q.queue;
    cell(row, q.queue);
    cell(row, q.lag, "num");
    const recent = s.filter((b) => b.p50_ms !== null);
    cell(row).appendChild(sparkline(s.map((b) => b.completed), "done"));
    cell(row).appendChild(sparkline(s.map((b) => b.failed), "failed"));
    cell(row, millis(recent.length ? recent[recent.length - 1].p50_ms : null), "num");
    cell(row, millis(recent.length ? recent[recent.length - 1].p99_ms : null), "num");
    cell(row, q.dlq_records, "num");
    cell(row, q.members, "num");
    return row;
  });
  const select = document.getElementById("dlq-queue");
  const names = queues.map((q) => q.queue);
  if (select.options.length !== names.length) {
    select.replaceChildren(...names.map((n) => el("option", n)));
    if (!state.dlqQueue) state.dlqQueue = names[0] || "";
    select.value = state.dlqQueue;
  }
}

async function renderWorkers(workers, queues) {
  const lags = {};
  for (const q of queues) {
    const detail = await api(`/queues/${encodeURIComponent(q.queue)}`);
    for (const p of detail.partitions) lags[`${p.topic}/${p.partition}`] = p.lag;
  }
  // Gone and stopped workers (silent for a few report intervals) come with nothing running; the API
  // leaves them out after its drop time.
  fill("workers", workers, (w) => {
    const row = el("tr", undefined, w.state === "up" || w.state === "stopping" ? "" : "muted");
    row.dataset.state = w.state;
    cell(row, w.worker_id);
    cell(row, w.group);
    cell(row, w.state);
    cell(row, `${w.busy} / ${w.concurrency}`, "num");
    cell(row, w.running, "num");
    cell(row, w.partitions.join(", "));
    cell(row, w.partitions.reduce((sum, p) => sum + (lags[p] || 0), 0), "num");
    cell(row, ago(w.at_ms));
    return row;
  });
}

async function renderDeadLetters() {
  if (!state.dlqQueue) return fill("dlq", [], () => el("tr"));
  const letters = await api(`/queues/${encodeURIComponent(state.dlqQueue)}/dlq?limit=50`);
  fill("dlq", letters, (letter) => {
    const row = el("tr");
    row.dataset.taskId = letter.task_id;
    cell(row).appendChild(el("code", letter.task_id));
    cell(row, letter.type);
    cell(row, letter.attempts, "num");
    cell(row, letter.error);
    cell(row, when(letter.failed_at));
    const action = cell(row);
    if (letter.pending) {
      const button = el("button", "Replay", "replay");
      button.addEventListener("click", () => replay(letter.task_id, button));
      action.appendChild(button);
    } else {
      action.appendChild(el("span", "replayed", "muted"));
    }
    return row;
  });
}

async function replay(taskId, button) {
  button.disabled = true;
  const result = document.getElementById("replay-result");
  try {
    const report = await api(`/queues/${encodeURIComponent(state.dlqQueue)}/dlq/replay`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ task_ids: [taskId] }),
    });
    result.textContent = report.replayed.length ? `replayed ${report.replayed.join(", ")}` : `nothing to replay for ${taskId}`;
  } catch (error) {
    result.textContent = `replay failed: ${error.message}`;
    button.disabled = false;
  }
  await refresh();
}

function renderRecent(tasks) {
  fill("recent", tasks, (t) => {
    const row = el("tr");
    row.dataset.taskId = t.task_id;
    const link = el("a", t.task_id);
    link.href = "#";
    link.addEventListener("click", (event) => { event.preventDefault(); showTask(t.task_id); });
    cell(row).appendChild(link);
    cell(row, t.type);
    cell(row, t.status, `status status-${t.status}`);
    cell(row, t.attempts, "num");
    cell(row, t.error);
    return row;
  });
}

async function showTask(taskId) {
  state.shownTask = taskId;
  document.getElementById("task-id").value = taskId;
  const box = document.getElementById("task");
  const fields = document.getElementById("task-fields");
  try {
    const [task, timeline] = await Promise.all([
      api(`/tasks/${encodeURIComponent(taskId)}`), api(`/tasks/${encodeURIComponent(taskId)}/timeline`),
    ]);
    const rows = [["task", task.task_id], ["status", task.status], ["queue", task.queue], ["type", task.type],
      ["attempts", `${task.attempts}${task.max_attempts ? ` of ${task.max_attempts}` : ""}`],
      ["enqueued", when(task.timestamps.enqueued_at)], ["started", when(task.timestamps.started_at)],
      ["finished", when(task.timestamps.finished_at)], ["next attempt", when(task.timestamps.next_attempt_at)],
      ["tier", task.tier], ["worker", task.worker], ["error", task.error],
      ["result", task.result === null || task.result === undefined ? "" : JSON.stringify(task.result)]];
    fields.replaceChildren();
    for (const [name, value] of rows) {
      if (!value) continue;
      fields.appendChild(el("dt", name));
      fields.appendChild(el("dd", value, name === "status" ? `status status-${value}` : undefined));
    }
    document.getElementById("timeline").replaceChildren(...timeline.map((e) => {
      const item = el("li");
      item.appendChild(el("span", when(e.at), "muted"));
      item.appendChild(document.createTextNode(" "));
      item.appendChild(el("span", e.what));
      if (e.detail) item.appendChild(el("span", ` – ${e.detail}`, "muted"));
      return item;
    }));
  } catch (error) {
    fields.replaceChildren(el("dt", "task"), el("dd", `${taskId}: ${error.message}`, "error"));
    document.getElementById("timeline").replaceChildren();
  }
  box.hidden = false;
}

async function refresh() {
  const error = document.getElementById("error");
  try {
    const [queues, workers, recent] = await Promise.all([api("/queues"), api("/workers"), api("/tasks?limit=25")]);
    await renderQueues(queues);
    await renderWorkers(workers, queues);
    await renderDeadLetters();
    renderRecent(recent);
    if (state.shownTask) await showTask(state.shownTask);
    error.textContent = "";
    document.getElementById("token-form").hidden = true;
    document.getElementById("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    if (e instanceof Unauthorized) document.getElementById("token-form").hidden = false;
    error.textContent = e.message;
  }
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = document.getElementById("token").value;
  sessionStorage.setItem("kqueue-token", state.token);
  refresh();
});
document.getElementById("dlq-queue").addEventListener("change", (event) => {
  state.dlqQueue = event.target.value;
  renderDeadLetters().catch(() => {});
});
document.getElementById("lookup").addEventListener("submit", (event) => {
  event.preventDefault();
  const taskId = document.getElementById("task-id").value.trim();
  if (taskId) showTask(taskId);
});

refresh();
setInterval(refresh, REFRESH_MS);
