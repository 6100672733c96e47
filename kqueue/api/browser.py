"""Headers that tell a browser how to treat every answer of the API.

The dashboard loads only its own files, so the policy allows nothing else; no page may frame it
(a hidden frame over "Replay" is click-jacking); nothing is sniffed into another content type.
The API docs page (when served) also needs inline styles, which Swagger UI sets as it draws.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_PATH = "/docs"
_POLICY = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
           "form-action 'self'; frame-ancestors 'none'")
_DOCS_POLICY = _POLICY + "; style-src 'self' 'unsafe-inline'"


def browser_headers(path: str) -> list[tuple[bytes, bytes]]:
    policy = _DOCS_POLICY if path == DOCS_PATH or path.startswith(DOCS_PATH + "/") else _POLICY
    return [(b"content-security-policy", policy.encode()), (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]


class BrowserHeaders:
    """Adds the headers to every HTTP answer (errors included) that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = browser_headers(scope["path"])

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *(h for h in extra if h[0] not in present)]}
            await send(message)

        await self.app(scope, receive, with_headers)
