// A task's page (#/tasks/<id>): its status and its timeline across attempts and tiers.

import { ApiError, api, taskPath } from "./dash-api.js";
import { el, link, queueHref, when } from "./dash-dom.js";

const page = { taskId: "" };

export function showTask(taskId) {
  if (page.taskId !== taskId) {
    document.getElementById("task-fields").replaceChildren();
    document.getElementById("timeline").replaceChildren();
  }
  page.taskId = taskId;
  document.getElementById("task-title").textContent = taskId;
  document.getElementById("task-id").value = taskId;
}

function fields(task) {
  return [["status", task.status], ["queue", task.queue], ["type", task.type],
    ["attempts", `${task.attempts}${task.max_attempts ? ` of ${task.max_attempts}` : ""}`],
    ["enqueued", when(task.timestamps.enqueued_at)], ["started", when(task.timestamps.started_at)],
    ["finished", when(task.timestamps.finished_at)], ["next attempt", when(task.timestamps.next_attempt_at)],
    ["tier", task.tier], ["worker", task.worker], ["error", task.error],
    ["cancel requested", task.cancel_requested ? "yes" : ""],
    ["result", task.result === null || task.result === undefined ? "" : JSON.stringify(task.result)]];
}

export async function refreshTask(live) {
  const taskId = page.taskId;
  const box = document.getElementById("task-fields");
  let task, timeline;
  try {
    [task, timeline] = await Promise.all([api(taskPath(taskId)), api(`${taskPath(taskId)}/timeline`)]);
  } catch (error) {
    if (!(error instanceof ApiError) || !live()) throw error;
    box.replaceChildren(el("dt", "task"), el("dd", error.message, "error"));
    document.getElementById("timeline").replaceChildren();
    return;
  }
  if (!live()) return;
  box.replaceChildren();
  box.appendChild(el("dt", "task"));
  box.appendChild(el("dd", task.task_id, "code"));
  for (const [name, value] of fields(task)) {
    if (!value) continue;
    box.appendChild(el("dt", name));
    const shown = el("dd", undefined, name === "status" ? `status status-${value}` : undefined);
    if (name === "queue") shown.appendChild(link(queueHref(value), value));
    else shown.textContent = value;
    box.appendChild(shown);
  }
  document.getElementById("timeline").replaceChildren(...timeline.map((e) => {
    const item = el("li");
    item.appendChild(el("span", when(e.at), "muted"));
    item.appendChild(document.createTextNode(" "));
    item.appendChild(el("span", e.what));
    if (e.detail) item.appendChild(el("span", ` – ${e.detail}`, "muted"));
    return item;
  }));
}
