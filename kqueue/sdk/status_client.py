"""`app.status(id)` and `app.wait(id)`: ask the status view of `kqueue api` over HTTP.

The view lives in the API process (it reads the topics once for everyone); a service asks it with
one GET. Where: `App(api_url=...)`, else KQUEUE_API_URL, else http://127.0.0.1:8080. The bearer
token, if the API wants one, comes from KQUEUE_API_TOKEN.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from kqueue.core.errors import KqueueError
from kqueue.core.status import TaskStatus

DEFAULT_API_URL = "http://127.0.0.1:8080"
API_URL_ENV = "KQUEUE_API_URL"
API_TOKEN_ENV = "KQUEUE_API_TOKEN"


class TaskNotFound(KqueueError, LookupError):
    """The status view does not know this task id (after catching up with Kafka)."""


class StatusUnavailable(KqueueError):
    """The status view could not be asked (the API is down, refused the token, or is catching up)."""


def api_url(explicit: str | None = None) -> str:
    return (explicit or os.environ.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")


def fetch_status(base_url: str, task_id: str, timeout: float = 10.0) -> TaskStatus:
    url = f"{base_url}/api/v1/tasks/{urllib.parse.quote(task_id, safe='')}"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    token = os.environ.get(API_TOKEN_ENV)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body: dict[str, Any] = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        detail = _detail(exc)
        if exc.code == 404:
            raise TaskNotFound(detail or f"no task {task_id!r}") from None
        raise StatusUnavailable(f"the status API at {base_url} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StatusUnavailable(f"cannot reach the status API at {base_url} ({reason}); is `kqueue api` "
                                f"running? (set {API_URL_ENV})") from None
    return TaskStatus.from_json(body)


def wait_for(base_url: str, task_id: str, timeout: float, interval: float = 0.2) -> TaskStatus:
    """Poll until the task is completed, failed or cancelled; TimeoutError past `timeout`."""
    deadline = time.monotonic() + timeout
    last = "unknown"
    while True:
        try:
            status = fetch_status(base_url, task_id)
            if status.finished:
                return status
            last = status.status
        except StatusUnavailable:
            if time.monotonic() >= deadline:
                raise
        if time.monotonic() >= deadline:
            raise TimeoutError(f"task {task_id} is still {last} after {timeout:g}s")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 1.5, 2.0)


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(exc.read()).get("detail", "")
    except (ValueError, AttributeError, OSError):
        return exc.reason if isinstance(exc.reason, str) else ""
    return detail if isinstance(detail, str) else json.dumps(detail)
