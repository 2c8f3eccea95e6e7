# SPDX-License-Identifier: GPL-3.0-or-later
"""A Shaman file store that keeps nothing: for the memory benchmark of a 1 GB upload.

The fake Manager (tests/fakemanager.py) keeps uploaded files in memory, which is fine for
tests but not for a 1 GB body. This stdlib server answers only what `core.shaman.upload`
needs: the requirements (everything is missing), the file store (streams the body,
checks its size and SHA-256, counts the bytes and throws them away) and the checkout.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
from typing import Any

_FILE_RE = re.compile(r"^/api/v3/shaman/files/([0-9a-f]{64})/(\d+)$")
READ = 1024 * 1024


class ShamanSink:
    """`with ShamanSink() as sink:` → `sink.url`; `sink.bytes_received`, `sink.files_stored`."""

    def __init__(self) -> None:
        self.bytes_received = 0
        self.files_stored = 0
        self.lock = threading.Lock()
        self.httpd: http.server.ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.url = ""

    def __enter__(self) -> "ShamanSink":
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, status: int, payload: Any = None) -> None:
                body = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                if body:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _chunks(self):
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    while True:
                        size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                                pass
                            return
                        while size:
                            data = self.rfile.read(min(size, READ))
                            if not data:
                                return
                            size -= len(data)
                            yield data
                        self.rfile.readline(16)
                else:
                    left = int(self.headers.get("Content-Length") or 0)
                    while left:
                        data = self.rfile.read(min(left, READ))
                        if not data:
                            return
                        left -= len(data)
                        yield data

            def _json_body(self) -> Any:
                try:
                    return json.loads(b"".join(self._chunks()) or b"null")
                except ValueError:
                    return None

            def do_GET(self) -> None:
                if _FILE_RE.match(self.path):
                    self._answer(200, {"status": "unknown"})
                else:
                    self._answer(404, {"code": 404, "message": "Not Found"})

            def do_POST(self) -> None:
                match = _FILE_RE.match(self.path)
                if match:
                    sha, size = match.group(1), int(match.group(2))
                    digest, received = hashlib.sha256(), 0
                    for data in self._chunks():
                        digest.update(data)
                        received += len(data)
                    with sink.lock:
                        sink.bytes_received += received
                    if received != size or digest.hexdigest() != sha:
                        self._answer(417, {"code": 417, "message": "size or checksum mismatch"})
                        return
                    with sink.lock:
                        sink.files_stored += 1
                    self._answer(204)
                    return
                payload = self._json_body()
                files = payload.get("files") if isinstance(payload, dict) else None
                if self.path == "/api/v3/shaman/checkout/requirements" and isinstance(files, list):
                    self._answer(200, {"files": [dict(f, status="unknown") for f in files] or None})
                elif self.path == "/api/v3/shaman/checkout/create" and isinstance(files, list):
                    self._answer(200, {"checkoutPath": payload.get("checkoutPath", "")})
                else:
                    self._answer(404, {"code": 404, "message": "Not Found"})

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True,
                                       name="shaman-sink")
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)
