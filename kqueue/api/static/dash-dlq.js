// A queue's dead letters: 50 a page, filtered by task type (exact) and error text (a substring) in the
// status view's query, the total from X-Total-Count; pending letters can be picked and replayed.

import { api, queuePath, request } from "./dash-api.js";
import { cell, clear, count, el, fill, link, taskHref, when } from "./dash-dom.js";

export const PAGE = 50;
const dlq = { queue: "", offset: 0, type: "", error: "", total: 0, selected: new Set(), pending: [] };

export function showDeadLettersOf(queue) {
  if (dlq.queue === queue) return;
  Object.assign(dlq, { queue, offset: 0, type: "", error: "", total: 0, pending: [] });
  dlq.selected.clear();
  document.getElementById("dlq-type").value = "";
  document.getElementById("dlq-error").value = "";
  document.getElementById("replay-result").textContent = "";
  document.getElementById("dlq-range").textContent = "";
  clear("dlq");
  showSelection();
}

function showSelection() {
  const button = document.getElementById("dlq-replay");
  button.textContent = `Replay selected (${dlq.selected.size})`;
  button.disabled = dlq.selected.size === 0;
  const all = document.getElementById("dlq-all");
  all.checked = dlq.pending.length > 0 && dlq.pending.every((id) => dlq.selected.has(id));
}

function pick(taskId, on) {
  if (on) dlq.selected.add(taskId);
  else dlq.selected.delete(taskId);
  showSelection();
}

export async function refreshDeadLetters(live) {
  const params = new URLSearchParams({ limit: String(PAGE), offset: String(dlq.offset) });
  if (dlq.type) params.set("type", dlq.type);
  if (dlq.error) params.set("error", dlq.error);
  const { body: letters, headers } = await request(`${queuePath(dlq.queue)}/dlq?${params}`);
  if (!live()) return;
  dlq.total = Number(headers.get("X-Total-Count") ?? letters.length);
  if (!letters.length && dlq.offset > 0 && dlq.total > 0) { // letters went (purged, trimmed): last page
    dlq.offset = Math.max(0, Math.floor((dlq.total - 1) / PAGE) * PAGE);
    return refreshDeadLetters(live);
  }
  dlq.pending = letters.filter((l) => l.pending).map((l) => l.task_id);
  const first = letters.length ? dlq.offset + 1 : 0;
  const range = document.getElementById("dlq-range");
  range.textContent = `${count(first)}–${count(dlq.offset + letters.length)} of ${count(dlq.total)}`;
  range.dataset.total = String(dlq.total);
  document.getElementById("dlq-prev").disabled = dlq.offset === 0;
  document.getElementById("dlq-next").disabled = dlq.offset + letters.length >= dlq.total;
  fill("dlq", letters, (letter) => {
    const row = el("tr");
    row.dataset.taskId = letter.task_id;
    const choice = cell(row);
    if (letter.pending) {
      const box = el("input", undefined, "pick");
      box.type = "checkbox";
      box.checked = dlq.selected.has(letter.task_id);
      box.setAttribute("aria-label", `pick ${letter.task_id}`);
      box.addEventListener("change", () => pick(letter.task_id, box.checked));
      choice.appendChild(box);
    }
    cell(row).appendChild(link(taskHref(letter.task_id), letter.task_id, "code"));
    cell(row, letter.type);
    cell(row, letter.attempts, "num");
    cell(row, letter.error, "error-text");
    cell(row, when(letter.failed_at));
    cell(row, letter.pending ? "pending" : "replayed", letter.pending ? "" : "muted");
    return row;
  }, [...dlq.selected].sort());
  showSelection();
}

async function replaySelected(refreshNow) {
  const button = document.getElementById("dlq-replay");
  const result = document.getElementById("replay-result");
  const ids = [...dlq.selected];
  button.disabled = true;
  try {
    const report = await api(`${queuePath(dlq.queue)}/dlq/replay`, { method: "POST", json: { task_ids: ids } });
    const parts = [`replayed ${report.replayed.length}`];
    if (report.skipped.length) parts.push(`${report.skipped.length} already replayed`);
    if (report.missing.length) parts.push(`${report.missing.length} whose payload is gone`);
    result.textContent = parts.join(", ");
    result.dataset.replayed = report.replayed.join("\n");
    dlq.selected.clear();
  } catch (error) {
    result.textContent = `replay failed: ${error.message}`;
  }
  showSelection();
  await refreshNow();
}

// Wire the controls once; `refreshNow` redraws the page now.
export function bindDeadLetters(refreshNow) {
  document.getElementById("dlq-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    dlq.type = document.getElementById("dlq-type").value.trim();
    dlq.error = document.getElementById("dlq-error").value.trim();
    dlq.offset = 0;
    dlq.selected.clear();
    showSelection();
    refreshNow();
  });
  document.getElementById("dlq-clear").addEventListener("click", () => {
    document.getElementById("dlq-type").value = "";
    document.getElementById("dlq-error").value = "";
    document.getElementById("dlq-filter").requestSubmit();
  });
  document.getElementById("dlq-prev").addEventListener("click", () => {
    dlq.offset = Math.max(0, dlq.offset - PAGE);
    refreshNow();
  });
  document.getElementById("dlq-next").addEventListener("click", () => {
    if (dlq.offset + PAGE < dlq.total) dlq.offset += PAGE;
    refreshNow();
  });
  document.getElementById("dlq-all").addEventListener("change", (event) => {
    for (const id of dlq.pending) pick(id, event.target.checked);
    document.querySelectorAll("#dlq input.pick").forEach((box) => { box.checked = event.target.checked; });
  });
  document.getElementById("dlq-replay").addEventListener("click", () => replaySelected(refreshNow));
}
