"""A real fault-injecting HTTP proxy on 127.0.0.1 (a test fixture), for any upstream server.

It forwards every request to `upstream` (e.g. http://127.0.0.1:8000, a vLLM server)
and, on the request numbers named in `faults` (1 = the first request through it),
answers instead with a fault:

    FaultProxy(upstream, {2: Fault.status(429, retry_after=1), 3: Fault.status(503),
                          5: Fault.delay(2.0), 7: Fault.drop()})

- `status(code, retry_after)`: that status and a JSON error body, upstream not called;
- `delay(seconds)`: wait, then forward (a slow server; past the client's timeout it is a timeout);
- `drop()`: close the connection without an answer (a crashed server or network).
Responses are relayed whole (a streamed answer arrives as one body; its events are intact).
`proxy.log` lists (number, method, path, what happened).
"""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}


@dataclass(frozen=True)
class Fault:
    kind: str  # "status" | "delay" | "drop"
    code: int = 0
    retry_after: float | None = None
    seconds: float = 0.0

    @classmethod
    def status(cls, code: int, retry_after: float | None = None) -> "Fault":
        return cls("status", code=code, retry_after=retry_after)

    @classmethod
    def delay(cls, seconds: float) -> "Fault":
        return cls("delay", seconds=seconds)

    @classmethod
    def drop(cls) -> "Fault":
        return cls("drop")


class FaultProxy:
    def __init__(self, upstream: str, faults: dict[int, Fault] | None = None, port: int = 0) -> None:
        parts = urlsplit(upstream)
        self.host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.faults = dict(faults or {})
        self.log: list[tuple[int, str, str, str]] = []
        self._n = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                proxy._handle(self)

            def do_POST(self):
                proxy._handle(self)

        ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length") or 0)
        body = h.rfile.read(length) if length else b""
        with self._lock:
            self._n += 1
            n = self._n
        fault = self.faults.get(n)
        what = fault.kind if fault else "forwarded"
        self.log.append((n, h.command, h.path, what if not fault or fault.kind != "status" else str(fault.code)))
        if fault and fault.kind == "drop":
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if fault and fault.kind == "status":
            data = json.dumps({"error": {"message": f"injected {fault.code}", "type": "injected"}}).encode()
            h.send_response(fault.code)
            h.send_header("content-type", "application/json")
            if fault.retry_after is not None:
                h.send_header("retry-after", str(fault.retry_after))
            h.send_header("content-length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
            return
        if fault and fault.kind == "delay":
            time.sleep(fault.seconds)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP and k.lower() != "host"}
        try:
            conn = http.client.HTTPConnection(self.host, self.upstream_port, timeout=600)
            conn.request(h.command, h.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as exc:  # the upstream is down: what a real proxy says
            data = json.dumps({"error": {"message": f"bad gateway: {exc}"}}).encode()
            h.send_response(502)
            h.send_header("content-type", "application/json")
            h.send_header("content-length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
            return
        h.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in _HOP:
                h.send_header(k, v)
        h.send_header("content-length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
        conn.close()
