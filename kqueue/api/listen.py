"""The API's listening socket."""

from __future__ import annotations

import socket


def listen(host: str, port: int) -> socket.socket:
    """Bound and listening; accepted connections inherit TCP_NODELAY (Linux), which asyncio would
    not set on them itself here (it only does for sockets created with proto=IPPROTO_TCP). Without
    it, a response written in two parts waits out the client's delayed ACK: ~40 ms per request on a
    keep-alive connection."""
    listener = socket.create_server((host, port))
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listener
