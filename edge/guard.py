"""What the edge server refuses before it reads a request: oversized bodies and too many requests.

An ASGI wrapper around the app, so it runs before routing, authentication and body parsing:
- a body larger than `max_body_bytes` (or a route's own limit in `larger_bodies`: a PUT of one
  sample image) gets 413; a declared Content-Length above it is refused without reading a byte, a
  chunked body is cut off as soon as it passes the limit, so the server's memory never depends on
  what a client sends;
- a token bucket per client address and one per bearer token (hashed; known or not, so guessing
  tokens is slowed too) answer 429 with Retry-After once a client goes over its rate.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimits:
    per_address_per_s: float = 50.0  # a line of 50 devices behind one NAT still polls freely
    per_token_per_s: float = 5.0  # one device: a manifest and an artifact a second is plenty
    burst_s: float = 4.0  # a bucket holds this many seconds of its rate
    max_clients: int = 100_000  # buckets kept; the oldest are dropped beyond this


class Buckets:
    """Token buckets by key: `rate` per second, holding up to `rate * burst_s`."""

    def __init__(self, rate: float, burst_s: float, max_keys: int) -> None:
        self.rate, self.capacity, self.max_keys = rate, max(1.0, rate * burst_s), max_keys
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when the request may go on; else the seconds until it may."""
        now = time.monotonic()
        with self._lock:
            tokens, then = self._state.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.rate)
            if len(self._state) >= self.max_keys and key not in self._state:
                self._state.pop(next(iter(self._state)))
            if tokens < 1.0:
                self._state[key] = (tokens, now)
                return (1.0 - tokens) / self.rate
            self._state[key] = (tokens - 1.0, now)
            return 0.0


async def _reply(send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *headers]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(
        self, app, max_body_bytes: int, limits: RateLimits, larger_bodies: dict[str, int] | None = None
    ) -> None:
        """`larger_bodies`: {path prefix: limit} for the few routes that take files (PUT only)."""
        self.app, self.max_body_bytes, self.larger_bodies = app, max_body_bytes, larger_bodies or {}
        self.by_address = Buckets(limits.per_address_per_s, limits.burst_s, limits.max_clients)
        self.by_token = Buckets(limits.per_token_per_s, limits.burst_s, limits.max_clients)

    def _limited(self, scope) -> float:
        address = (scope.get("client") or ("unknown", 0))[0]
        wait = self.by_address.take(address)
        auth = dict(scope.get("headers") or []).get(b"authorization", b"")
        if not wait and auth:
            wait = self.by_token.take(hashlib.sha256(auth[:512]).hexdigest())
        return wait

    def body_limit(self, scope) -> int:
        if scope.get("method") == "PUT":
            for prefix, limit in self.larger_bodies.items():
                if scope.get("path", "").startswith(prefix):
                    return limit
        return self.max_body_bytes

    async def _bounded_body(self, scope, receive, limit: int) -> bytes | None:
        """The whole body when it stays within `limit` (read as it arrives), else None."""
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return None  # refused without reading a byte
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return bytes(body)  # the client went away; the app sees an empty body
            body += message.get("body", b"")
            if len(body) > limit:
                return None
            if not message.get("more_body"):
                return bytes(body)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        wait = self._limited(scope)
        if wait:
            return await _reply(
                send, 429, "too many requests", [(b"retry-after", str(max(1, round(wait))).encode())]
            )
        limit = self.body_limit(scope)
        body = await self._bounded_body(scope, receive, limit)
        if body is None:
            return await _reply(send, 413, f"request body over {limit} bytes")
        replay = [{"type": "http.request", "body": body, "more_body": False}]

        async def replayed():
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)
