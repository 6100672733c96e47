"""Who may reach the API, checked before anything reads the request.

- The Host a request was sent to: a web page whose own name is re-pointed at 127.0.0.1 (DNS
  rebinding) still sends that name, so only loopback names (and those `--allowed-host` adds) pass
  when the API listens on loopback. Probes (/livez, /readyz) pass whatever their Host: kubelet
  sends the pod's address.
- The bearer token, for every /api path, before the body is read or parsed: an unauthenticated
  client costs a header lookup and learns nothing (not even whether its JSON was valid).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
PROBE_PATHS = frozenset({"/livez", "/readyz"})
UNAUTHORIZED = "missing or wrong bearer token"


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def accepted_hosts(bound: str, extra: Sequence[str]) -> list[str] | None:
    """The Host names served: loopback names plus those given; None (any) when the API listens
    beyond loopback and none were given (a token guards it then, see `refusal`)."""
    if extra:
        return [*LOOPBACK_HOSTS, *extra]
    return list(LOOPBACK_HOSTS) if is_loopback(bound) else None


def host_pattern_problem(pattern: str) -> str | None:
    """Why an --allowed-host value cannot be used (None: it can)."""
    if not pattern or any(c in pattern for c in "/:@ "):
        return f"--allowed-host takes a host name (no scheme, port or path), not {pattern!r}"
    if "*" in pattern[1:] or (pattern.startswith("*") and pattern != "*" and not pattern.startswith("*.")):
        return f"--allowed-host wildcards look like '*.example.com', not {pattern!r}"
    return None


def refusal(bound: str, token: str | None, allow_no_token: bool) -> str | None:
    """Why the API must not start (None: it may): beyond loopback without a token, anyone who
    reaches the port could enqueue, cancel and replay, unless that was asked for."""
    if token or allow_no_token or is_loopback(bound):
        return None
    return (f"refusing to serve on {bound} without a token: set KQUEUE_API_TOKEN, or pass --allow-no-token "
            "to let anyone who reaches the port enqueue, cancel and replay")


class HostCheck:
    """Starlette's TrustedHostMiddleware (400 for another Host) everywhere but the probes."""

    def __init__(self, app: ASGIApp, hosts: Sequence[str] | None) -> None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        self.app = app
        self.checked = TrustedHostMiddleware(app, allowed_hosts=hosts, www_redirect=False) if hosts else app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        await self.checked(scope, receive, send)


def bearer_of(headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """The token of an `Authorization: Bearer <token>` header (scheme in any case); b"" if none."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, given = value.strip().partition(b" ")
            return given.strip() if scheme.lower() == b"bearer" else b""
    return b""


class TokenFirst:
    """401 for an /api request without the token, answered before its body is read."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.token is None or scope["type"] != "http" or not scope["path"].startswith("/api")
                or hmac.compare_digest(bearer_of(scope["headers"]), self.token)):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": UNAUTHORIZED}).encode()
        # Connection: close, since the body it may have sent is never read.
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
