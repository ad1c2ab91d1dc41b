"""A fault-injecting HTTP proxy on loopback in front of the moto S3 server.

Forwards every request to the server and, by a seeded coin, answers some with ``503 SlowDown``
instead: either before forwarding (the request never happened) or after (it happened, but the
client never hears so and retries). Bounded: at most ``max_faults`` injected faults, and every
request whose path contains one of ``always_fail`` fails (a persistent failure). Stops with the
``with`` block.
"""

from __future__ import annotations

import http.client
import http.server
import random
import threading
import urllib.parse

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}
_SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class FaultyS3Proxy:
    def __init__(
        self,
        upstream: str,
        fault_rate: float = 0.1,
        max_faults: int = 50,
        always_fail: tuple[str, ...] = (),
        seed: int = 0,
    ) -> None:
        parsed = urllib.parse.urlparse(upstream)
        self.upstream = (parsed.hostname, parsed.port)
        self.fault_rate, self.max_faults, self.always_fail = fault_rate, max_faults, always_fail
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.faults = {"before": 0, "after": 0, "persistent": 0}
        self.requests = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultyS3Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

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

    def _handler(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _forward(self) -> None:
                body = self._body()
                fault = proxy._decide(self.path)
                if fault in ("before", "persistent"):
                    self._reply(503, [("Content-Type", "application/xml")], _SLOWDOWN)
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if fault == "after":
                    self._reply(503, [("Content-Type", "application/xml")], _SLOWDOWN)
                    return
                headers_out = [(k, v) for k, v in resp.getheaders()]
                if self.command == "HEAD":  # keep the object's size for the client
                    headers_out = [(k, v) for k, v in headers_out if k.lower() != "content-length"]
                    self.send_response(resp.status)
                    for k, v in headers_out:
                        if k.lower() not in _HOP:
                            self.send_header(k, v)
                    self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
                    self.end_headers()
                    return
                self._reply(resp.status, headers_out, data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Handler
