// The kqueue dashboard: a page per address (hash routing), each redrawn from the REST API every 2 s.
//   #/                 overview: queues, workers, recent tasks
//   #/queues/<queue>   one queue: paused state, depth per lane and tier, charts, workers, dead letters
//   #/tasks/<id>       one task: status and timeline
// Names in the address are encodeURIComponent-quoted (task ids may hold / % ? #). A hash that is no
// address, #token=..., gives the API token (the link `kqueue demo` prints) and is then removed.

import { Unauthorized, tokenFromHash, useToken } from "./dash-api.js";
import { bindDeadLetters } from "./dash-dlq.js";
import { taskHref } from "./dash-dom.js";
import { refreshOverview } from "./dash-overview.js";
import { bindQueue, refreshQueue, showQueue } from "./dash-queue.js";
import { refreshTask, showTask } from "./dash-task.js";

const REFRESH_MS = 2000;
const PAGES = ["overview", "queue", "task", "missing"];
let route = { page: "overview" };
let epoch = 0; // moves on with every change of page: a refresh of the page left behind draws nothing
let running = null;

function parse(hash) {
  const parts = hash.replace(/^#\/?/, "").split("/");
  const rest = () => decodeURIComponent(parts.slice(1).join("/"));
  try {
    if (!parts[0]) return { page: "overview" };
    if (parts[0] === "queues" && parts.length > 1 && parts[1]) return { page: "queue", queue: rest() };
    if (parts[0] === "tasks" && parts.length > 1 && parts[1]) return { page: "task", taskId: rest() };
  } catch (error) { // a malformed %-escape
    return { page: "missing", why: `${hash}: ${error.message}` };
  }
  return { page: "missing", why: `no page ${hash}` };
}

function takeToken() {
  const token = tokenFromHash(location.hash);
  if (token === null) return false;
  useToken(token);
  history.replaceState(null, "", location.pathname + location.search);
  return true;
}

function show() {
  takeToken();
  route = parse(location.hash);
  epoch += 1;
  for (const name of PAGES) document.getElementById(`page-${name}`).hidden = name !== route.page;
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("here", a.dataset.page === route.page);
  if (route.page === "queue") showQueue(route.queue);
  if (route.page === "task") showTask(route.taskId);
  if (route.page === "missing") document.getElementById("missing-why").textContent = route.why;
  document.title = route.page === "queue" ? `${route.queue} · kqueue` : route.page === "task" ? `task ${route.taskId} · kqueue` : "kqueue";
  refresh();
}

async function draw(live) {
  if (route.page === "overview") await refreshOverview(live);
  if (route.page === "queue") await refreshQueue(live);
  if (route.page === "task") await refreshTask(live);
}

// One refresh at a time: one asked for while another runs follows it (once), so a slow API never
// piles requests up.
async function refresh() {
  if (running) {
    running.again = true;
    return running.done;
  }
  running = { again: false };
  running.done = (async () => {
    do {
      running.again = false;
      await drawOnce();
    } while (running.again);
    running = null;
  })();
  return running.done;
}

async function drawOnce() {
  const mine = epoch;
  const error = document.getElementById("error");
  try {
    await draw(() => mine === epoch);
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
  useToken(document.getElementById("token").value);
  refresh();
});
document.getElementById("lookup").addEventListener("submit", (event) => {
  event.preventDefault();
  const taskId = document.getElementById("task-id").value.trim();
  if (taskId) location.hash = taskHref(taskId);
});
bindDeadLetters(refresh);
bindQueue(refresh);
window.addEventListener("hashchange", show);

show();
setInterval(refresh, REFRESH_MS);
