"""A fault-injecting HTTP proxy on loopback in front of the moto S3 server.

Forwards every request to the server and, by a seeded coin, answers some with ``503 SlowDown``
instead: either before forwarding (the request never happened) or after (it happened, but the
client never hears so and retries). Bounded: at most ``max_faults`` injected faults, and every
request whose path contains one of ``always_fail`` fails (a persistent failure). Stops with the
``with`` block.
"""

from __future__ import annotations

import random

from tests.integration.loopback_proxy import LoopbackProxy, Request

_SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class FaultyS3Proxy(LoopbackProxy):
    def __init__(
        self,
        upstream: str,
        fault_rate: float = 0.1,
        max_faults: int = 50,
        always_fail: tuple[str, ...] = (),
        seed: int = 0,
    ) -> None:
        super().__init__(upstream)
        self.fault_rate, self.max_faults, self.always_fail = fault_rate, max_faults, always_fail
        self.rng = random.Random(seed)
        self.faults = {"before": 0, "after": 0, "persistent": 0}
        self.requests = 0

    def _decide(self, path: str) -> str | None:
        """None, or when to fail: ``before`` / ``after`` forwarding, or ``persistent``."""
        with self.lock:
            self.requests += 1
            if any(key in path for key in self.always_fail):
                self.faults["persistent"] += 1
                return "persistent"
            injected = self.faults["before"] + self.faults["after"]
            if injected < self.max_faults and self.rng.random() < self.fault_rate:
                when = self.rng.choice(("before", "after"))
                self.faults[when] += 1
                return when
            return None

    def handle(self, request: Request) -> None:
        body = request.read_body()
        fault = self._decide(request.path)
        if fault in ("before", "persistent"):
            request.reply(503, [("Content-Type", "application/xml")], _SLOWDOWN)
            return
        conn, resp = request.open_upstream(body)
        data = resp.read()
        conn.close()
        if fault == "after":
            request.reply(503, [("Content-Type", "application/xml")], _SLOWDOWN)
            return
        request.relay(resp, data)
