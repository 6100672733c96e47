// Small DOM helpers for the dashboard. Text always goes in through textContent (never innerHTML), so
// whatever a task carries (ids, types, errors, payloads) is shown as text.

export function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

export function cell(row, text, className) {
  const td = el("td", text, className);
  row.appendChild(td);
  return td;
}

export function link(href, text, className) {
  const a = el("a", text, className);
  a.href = href;
  return a;
}

export function queueHref(queue) {
  return `#/queues/${encodeURIComponent(queue)}`;
}

export function taskHref(taskId) {
  return `#/tasks/${encodeURIComponent(taskId)}`;
}

const lastShown = new Map(); // table id -> what it shows now (to leave an unchanged table alone)

// Replace a table's body with one row per item (or a "none" row), unless it would show the same:
// rewriting unchanged rows every 2 s would drop a text selection, a hover or a focused checkbox.
export function fill(tableId, rows, render, extra) {
  const table = document.getElementById(tableId);
  const shown = JSON.stringify([rows, extra === undefined ? null : extra]);
  if (lastShown.get(tableId) === shown && table.dataset.filled) return;
  lastShown.set(tableId, shown);
  table.dataset.filled = "1";
  const fresh = document.createElement("tbody");
  for (const item of rows) fresh.appendChild(render(item));
  if (!rows.length) {
    const row = el("tr");
    const td = cell(row, "none", "muted");
    td.colSpan = table.querySelectorAll("thead th").length || 1;
    fresh.appendChild(row);
  }
  table.querySelector("tbody").replaceWith(fresh);
}

// Empty a table (another queue's page is being opened: its rows would mislead until the first answer).
export function clear(tableId) {
  lastShown.delete(tableId);
  const table = document.getElementById(tableId);
  delete table.dataset.filled;
  table.querySelector("tbody").replaceChildren();
}

export function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

export function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function ago(ms) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

export function millis(ms) {
  if (ms === null || ms === undefined) return "–";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

export function count(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
}

// A queue's paused state as the API gives it: {since, reason} or null; undefined from an API that
// does not know pausing yet.
export function pausedText(paused) {
  if (paused === undefined) return "";
  if (paused === null) return "running";
  const reason = paused.reason ? ` – ${paused.reason}` : "";
  return `paused since ${when(paused.since)}${reason}`;
}

export function badge(text, kind) {
  return el("span", text, `badge ${kind}`);
}
