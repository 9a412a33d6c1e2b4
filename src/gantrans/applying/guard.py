"""What keeps `gantrans serve` to its own page: the Host, Origin and token checks (`Guard`) and
the token a server gets (`resolve_token`)."""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import secrets
import socket
from collections.abc import Awaitable, Callable

from gantrans.errors import ConfigError

LOCAL_NAMES = ("localhost",)


class Guard:
    """ASGI middleware that lets through only the page's own requests and the user's scripts.

    - Host must name the address served on (against DNS rebinding, where another site's name
      resolves to this machine): on a loopback address, localhost names and loopback IPs; on
      another interface, IP addresses, this machine's name and `allowed_hosts`; and the port.
    - A request that carries an Origin (every browser POST does) must come from the page itself:
      another web page cannot drive it. A script that sends none (curl, Python) is let through.
    - With a token, every request must carry it: `?token=` in the URL, an `Authorization: token
      ...` header, or the cookie the page gets on its first visit.

    Refusals are 403 with a one-line JSON error and never reach the app (the body is not read).
    """

    def __init__(
        self, app, host: str, port: int, token: str | None = None, allowed_hosts=()
    ) -> None:
        self.app, self.port, self.token = app, port, token
        self.cookie = f"gantrans_token_{port}"  # cookies are shared across ports: one per server
        self.allowed = {h.lower().strip("[]") for h in allowed_hosts}
        self.loopback = _is_loopback(host)
        self.names = {socket.gethostname().lower(), f"{socket.gethostname().lower()}.local"}

    def host_ok(self, header: str) -> bool:
        """Whether a Host header names this server."""
        match = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^:\[\]]+)(?::(\d+))?", header.strip())
        if match is None:
            return False
        name, port = match.group(1).lower().strip("[]").rstrip("."), match.group(2)
        if int(port or 80) != self.port:
            return False
        if name in self.allowed or name in LOCAL_NAMES or name.endswith(".localhost"):
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return not self.loopback and name in self.names
        return address.is_loopback or not self.loopback

    def token_ok(self, scope: dict, headers: dict[str, str]) -> bool:
        """Whether the request carries the token (always true without one)."""
        if self.token is None:
            return True
        from urllib.parse import parse_qs

        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        auth = headers.get("authorization", "")
        if not given and auth.lower().startswith(("token ", "bearer ")):
            given = auth.split(None, 1)[1].strip()
        if not given:
            for part in headers.get("cookie", "").split(";"):
                key, _, value = part.strip().partition("=")
                if key == self.cookie:
                    given = value
        return hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        origin = headers.get("origin")
        if not self.host_ok(host):
            await _refuse(send, f"Host {host[:80]!r} is not this server: open the page by its "
                          "address (http://127.0.0.1:PORT or the one it printed)")  # fmt: skip
        elif origin is not None and origin not in (f"http://{host}", f"https://{host}"):
            await _refuse(send, f"requests from {origin[:80]} are refused: only this server's "
                          "own page (or a script that sends no Origin) may use it")  # fmt: skip
        elif not self.token_ok(scope, headers):
            await _refuse(send, "this server needs its token: open the URL it printed at start "
                          "(…/?token=…) or send 'Authorization: token …'")  # fmt: skip
        elif self.token is not None:
            await self.app(scope, receive, self._with_cookie(send))
        else:
            await self.app(scope, receive, send)

    def _with_cookie(self, send: Callable) -> Callable[[dict], Awaitable[None]]:
        """`send` that gives the page the token as a cookie, so its own requests carry it."""

        async def wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{self.cookie}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message = {**message, "headers": [*message.get("headers", []),
                           (b"set-cookie", cookie.encode("latin-1"))]}  # fmt: skip
            await send(message)

        return wrapped


def _is_loopback(host: str) -> bool:
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def _refuse(send: Callable, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def resolve_token(token: str | None, host: str) -> str | None:
    """`token=`: auto (a random one unless the page is on a loopback address), off, or a value."""
    text = "off" if token is None else str(token).strip()
    if text.lower() in ("off", "none", "null", "false", ""):
        return None
    if text.lower() == "auto":
        return None if _is_loopback(host) else secrets.token_urlsafe(24)
    if len(text) < 8:
        raise ConfigError("token= is too short to protect anything: use 8 characters or more")
    return text
