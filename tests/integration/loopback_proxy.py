"""A threaded HTTP/1.1 proxy on loopback in front of one upstream server (the moto S3 server).

``LoopbackProxy`` owns the server, its thread and the plumbing every proxy needs: reading a
request body (plain or chunked), sending the request on upstream, writing a response head
without hop-by-hop headers. What a proxy does with a request is its ``handle`` (forward it
unchanged, by default); the tests' fault injectors and the benchmarks' pacing proxy override
only that. Stops with the ``with`` block.
"""

from __future__ import annotations

import http.client
import http.server
import threading
import urllib.parse

HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class Request(http.server.BaseHTTPRequestHandler):
    """One request to the proxy; ``proxy`` is set on the subclass each proxy makes."""

    protocol_version = "HTTP/1.1"
    proxy: LoopbackProxy

    def log_message(self, *args) -> None:  # quiet
        pass

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        self.rfile.readline()
        return b"".join(chunks)

    def open_upstream(
        self, body: bytes
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Sends this request on upstream; the caller reads the response and closes."""
        conn = http.client.HTTPConnection(*self.proxy.upstream, timeout=self.proxy.timeout_s)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        conn.request(self.command, self.path, body=body or None, headers=headers)
        return conn, conn.getresponse()

    def send_head(self, status: int, headers: list[tuple[str, str]], length: int | str) -> None:
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_head(status, headers, len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def relay(self, resp: http.client.HTTPResponse, data: bytes) -> None:
        """Upstream's response as it came; a HEAD keeps the object's size for the client."""
        if self.command == "HEAD":
            self.send_head(resp.status, resp.getheaders(), resp.getheader("Content-Length") or 0)
        else:
            self.reply(resp.status, resp.getheaders(), data)

    def _dispatch(self) -> None:
        self.proxy.handle(self)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _dispatch


class LoopbackProxy:
    timeout_s = 60

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlparse(upstream)
        self.upstream = (parsed.hostname, parsed.port)
        self.lock = threading.Lock()
        handler = type("Handler", (Request,), {"proxy": self})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, request: Request) -> None:
        conn, resp = request.open_upstream(request.read_body())
        data = resp.read()
        conn.close()
        request.relay(resp, data)
