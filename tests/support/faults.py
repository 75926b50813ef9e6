"""A PACS that fails on demand: an HTTP proxy on loopback in front of the real Orthanc that
passes requests through, answers 503, never answers (until it is stopped), or answers 406 Not
Acceptable to WADO-RS asking for instances as stored (``transfer-syntax=*``), as a server that
only sends what it transcodes does.

Orthanc cannot be made to fail this way by configuration; its being down is tested by stopping
it (or pointing at a closed port), these two by the proxy.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import httpx

from tests.support.components import free_port

Mode = Literal["pass", "error", "hang", "no-wildcard"]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class FaultyProxy:
    target: str
    port: int
    mode: Mode = "pass"
    failures_left: int | None = None  # None: ``mode`` holds; n: fail n requests, then pass
    requests: int = 0
    released: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def failing(self) -> bool:
        if self.failures_left is None:
            return self.mode in ("error", "hang")
        if self.failures_left > 0:
            self.failures_left -= 1
            return True
        return False


def _handler(proxy: FaultyProxy) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _relay(self) -> None:
            proxy.requests += 1
            body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            as_stored = "transfer-syntax=*" in self.headers.get("Accept", "")
            if proxy.mode == "no-wildcard" and as_stored:
                self._empty(406)
                return
            if proxy.failing():
                if proxy.mode == "hang":
                    proxy.released.wait(60)
                    return
                self._empty(503)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            answer = httpx.request(
                self.command, proxy.target + self.path, content=body, headers=headers, timeout=60
            )
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in HOP_BY_HOP | {"content-encoding"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def _empty(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_DELETE = do_PUT = _relay  # noqa: N815

        def log_message(self, *_: object) -> None:
            pass

    return Handler


@contextmanager
def faulty_proxy(target: str, mode: Mode = "pass") -> Iterator[FaultyProxy]:
    """A proxy to ``target`` (an HTTP root) on a free loopback port, stopped afterwards."""
    proxy = FaultyProxy(target.rstrip("/"), free_port(), mode)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", proxy.port), _handler(proxy))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.released.set()
        server.shutdown()
        server.server_close()
