// Talking to /api/v1 with the bearer token. The token is asked for on a 401 or given in the address
// as #token=... (a link `kqueue demo` prints); it is kept in the tab's sessionStorage only.

const API = "api/v1";
const KEY = "kqueue-token";

export const session = { token: sessionStorage.getItem(KEY) || "" };

export class Unauthorized extends Error {}

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export function useToken(token) {
  session.token = token;
  sessionStorage.setItem(KEY, token);
}

// A hash that is no page address ("#token=..."): take the token and say so; the caller then drops
// the hash from the address bar, so the token is neither shown nor kept in the history.
export function tokenFromHash(hash) {
  const text = hash.replace(/^#/, "");
  if (!text || text.startsWith("/")) return null;
  return new URLSearchParams(text).get("token");
}

function problem(body, status) {
  const detail = body && body.detail;
  if (typeof detail === "string") return `${detail} (HTTP ${status})`;
  if (Array.isArray(detail) && detail.length) {
    return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ") + ` (HTTP ${status})`;
  }
  return `HTTP ${status}`;
}

// The answer's body and headers; a 401 throws Unauthorized, another error ApiError with the API's text.
export async function request(path, { method = "GET", json } = {}) {
  const headers = { "Accept": "application/json" };
  if (session.token) headers["Authorization"] = `Bearer ${session.token}`;
  const options = { method, headers };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(json);
  }
  const answer = await fetch(`${API}${path}`, options);
  if (answer.status === 401) throw new Unauthorized("the API wants a token");
  const body = await answer.json().catch(() => null);
  if (!answer.ok) throw new ApiError(problem(body, answer.status), answer.status);
  return { body, headers: answer.headers };
}

export async function api(path, options) {
  return (await request(path, options)).body;
}

export function queuePath(queue) {
  return `/queues/${encodeURIComponent(queue)}`;
}

export function taskPath(taskId) {
  return `/tasks/${encodeURIComponent(taskId)}`;
}
