# SPDX-License-Identifier: GPL-3.0-or-later
"""A small Shaman (the Manager's file store and checkout API) for tests.

`FakeShaman.handle(method, path, headers, body_stream)` answers one request and is
independent of any HTTP server, so a fake Manager can mount it for paths under
`/api/v3/shaman/` (see `handles`). `FakeShamanServer` runs it alone on 127.0.0.1:0.

It follows the Manager's behaviour: the requirements answer leaves out stored files and
lists each (sha, size) once; a stored upload is answered 200 (the spec says 204); an upload
of a stored file is answered 208 without reading it; a mismatch is 417; a checkout of an
existing path gets a random suffix; missing files make a checkout fail with 500 "unknown
files requested in checkout" (the spec says 424; `missing_status` picks). These are checked
against real Managers in tests/core/test_fake_matches_real.py. Fault knobs make the rarer
answers happen on purpose.
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import os
import random
import re
import shutil
import string
import tempfile
import threading
from pathlib import Path
from typing import Any, BinaryIO, Mapping

PREFIX = "/api/v3/shaman/"
_FILE_RE = re.compile(r"^/api/v3/shaman/files/([^/]+)/([^/]+)$")


class DropConnection(Exception):
    """Raised by the handler: close the connection without answering."""


@dataclasses.dataclass
class Record:
    method: str
    path: str
    headers: dict
    status: int = 0
    bytes_received: int = 0
    """Body bytes the handler read (an early 208/425 reads none)."""


class FakeShaman:
    def __init__(self, root: str, *, symlinks: bool = True) -> None:
        self.root = Path(root)
        self.store_dir = self.root / "file-store"
        self.upload_dir = self.root / "uploading"
        self.checkout_dir = self.root / "jobs"
        for d in (self.store_dir, self.upload_dir, self.checkout_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.symlinks = symlinks
        self.lock = threading.Lock()
        self.requests: list[Record] = []
        self.checkouts: dict[str, list[dict]] = {}
        # Fault knobs.
        self.force_417 = 0                       # next N uploads answer 417 whatever they carry
        self.others_uploading: dict[str, int] = {}   # sha → 425s to give: "someone else uploads it"
        self.conflict_checkouts = 0              # next N checkouts answer 409
        self.forget_before_checkout = 0          # next N checkouts first lose the stored files → missing
        self.missing_status = 500                # a real Manager's answer; 424 is the spec's
        self.drop_after_store = 0                # next N uploads store the file, then drop the connection
        self.hang_up_early = 0                   # next N would-be 208/425 answers hang up instead
        self.on_upload_start: Any = None         # callable(sha) run before an upload is read
        # Like Go's net/http: after an early answer, read at most this much of the unread body,
        # else close the connection (the client may then see a reset). None: read it all.
        self.drain_limit: int | None = None

    # --- helpers for tests -------------------------------------------------------------------

    def blob(self, sha: str, size: int) -> Path:
        return self.store_dir / sha[:2] / sha[2:] / f"{size}.blob"

    def is_stored(self, sha: str, size: int) -> bool:
        return self.blob(sha, size).is_file()

    def put(self, data: bytes) -> str:
        """Store content as if another client had uploaded it."""
        sha = hashlib.sha256(data).hexdigest()
        blob = self.blob(sha, len(data))
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        return sha

    def uploads(self) -> list[Record]:
        return [r for r in self.requests if r.method == "POST" and r.path.startswith(PREFIX + "files/")]

    def bytes_uploaded(self) -> int:
        return sum(r.bytes_received for r in self.uploads())

    def checkout_root(self, checkout_path: str) -> Path:
        return self.checkout_dir / checkout_path

    # --- the handler --------------------------------------------------------------------------

    @staticmethod
    def handles(path: str) -> bool:
        return path.split("?", 1)[0].startswith(PREFIX)

    def handle(self, method: str, path: str, headers: Mapping, body: BinaryIO) -> tuple[int, dict, bytes]:
        """(status, headers, body) for one request; `body` reads b"" at its end."""
        path = path.split("?", 1)[0]
        record = Record(method, path, {str(k).lower(): str(v) for k, v in headers.items()})
        with self.lock:
            self.requests.append(record)
        counted = _Counting(body)
        try:
            status, out_headers, out = self._route(method, path, record.headers, counted)
        finally:
            record.bytes_received = counted.count
        record.status = status
        return status, out_headers, out

    def _route(self, method: str, path: str, headers: dict, body: "_Counting") -> tuple[int, dict, bytes]:
        match = _FILE_RE.match(path)
        if match:
            sha, size_text = match.groups()
            if not re.fullmatch(r"[0-9a-f]{64}", sha) or not size_text.isdigit():
                return _error(400, "invalid checksum or size")
            if method == "GET":
                return _json(200, {"status": self._status(sha, int(size_text))})
            if method == "POST":
                return self._receive(sha, int(size_text), headers, body)
            return _error(405, "Method Not Allowed")
        if path == PREFIX + "checkout/requirements" and method == "POST":
            return self._requirements(_read_json(body))
        if path == PREFIX + "checkout/create" and method == "POST":
            return self._checkout(_read_json(body))
        return _error(404, "Not Found")

    def _status(self, sha: str, size: int) -> str:
        if self.is_stored(sha, size):
            return "stored"
        return "uploading" if self.others_uploading.get(sha, 0) > 0 else "unknown"

    def _requirements(self, payload: Any) -> tuple[int, dict, bytes]:
        specs = _specs(payload)
        if specs is None:
            return _error(400, "invalid format")
        seen, missing = set(), []
        for spec in specs:
            key = (spec["sha"], spec["size"])
            if key in seen:
                continue
            status = self._status(*key)
            if status == "stored":
                continue
            seen.add(key)
            missing.append({**spec, "status": status})
        return _json(200, {"files": missing})   # `[]` when all are there (measured on real Managers)

    def _receive(self, sha: str, size: int, headers: dict, body: "_Counting") -> tuple[int, dict, bytes]:
        can_defer = headers.get("x-shaman-can-defer-upload") == "true"
        with self.lock:
            early = self.is_stored(sha, size) or (self.others_uploading.get(sha, 0) > 0 and can_defer)
            if early and self.hang_up_early > 0:
                self.hang_up_early -= 1
                raise DropConnection()
            if self.is_stored(sha, size):
                return 208, dict(_TEXT), b""
            if early:
                self.others_uploading[sha] -= 1
                return 425, dict(_TEXT), b""
        if self.on_upload_start:
            self.on_upload_start(sha)
        digest = hashlib.sha256()
        received = 0
        fd, tmp = tempfile.mkstemp(dir=self.upload_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := body.read(256 * 1024):
                    digest.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
            with self.lock:
                if self.force_417 > 0:
                    self.force_417 -= 1
                    return _error(417, "checksum mismatch (forced)")
            if received != size:
                return _error(417, f"size mismatch, expected {size} bytes, received {received} bytes")
            if digest.hexdigest() != sha:
                return _error(417, "checksum mismatch")
            blob = self.blob(sha, size)
            blob.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, blob)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        with self.lock:
            self.others_uploading.pop(sha, None)
            if self.drop_after_store > 0:
                self.drop_after_store -= 1
                raise DropConnection()
        return 200, {}, b""

    def _checkout(self, payload: Any) -> tuple[int, dict, bytes]:
        specs = _specs(payload)
        requested = payload.get("checkoutPath") if isinstance(payload, dict) else None
        if specs is None or not isinstance(requested, str):
            return _error(400, "invalid format")
        if not _valid_checkout_path(requested):
            return _error(500, f"unexpected error: invalid checkout path {json.dumps(requested)}")
        if any(not _relative_ok(s["path"]) for s in specs):
            return _error(400, "invalid path in checkout")
        with self.lock:
            if self.conflict_checkouts > 0:
                self.conflict_checkouts -= 1
                return _error(409, f"Checkout path {requested} already exists")
            if self.forget_before_checkout > 0:
                self.forget_before_checkout -= 1
                for spec in specs:
                    self.blob(spec["sha"], spec["size"]).unlink(missing_ok=True)
        missing = [s["path"] for s in specs if not self.is_stored(s["sha"], s["size"])]
        if missing and self.missing_status == 424:
            return _error(424, f"{len(missing)} files are missing: {', '.join(missing[:5])}")
        if missing:
            return _error(500, "unexpected error: unknown files requested in checkout")
        with self.lock:
            final = requested
            for _ in range(10):
                if not self.checkout_root(final).exists():
                    break
                final = f"{requested}-{''.join(random.choices(string.ascii_lowercase + string.digits, k=4))}"
            else:
                return _error(500, "unexpected error: a checkout with this ID already exists")
            root = self.checkout_root(final)
            root.mkdir(parents=True)
            self.checkouts[final] = specs
        for spec in specs:
            dst = root / spec["path"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            src = self.blob(spec["sha"], spec["size"])
            if self.symlinks:
                dst.symlink_to(src)
            else:
                shutil.copyfile(src, dst)
        return _json(200, {"checkoutPath": final})


# --- small helpers ------------------------------------------------------------------------------


class _Counting:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.count += len(data)
        return data


_TEXT = {"Content-Type": "text/plain; charset=UTF-8"}   # the real Manager's empty 208/425 answers


def _valid_checkout_path(path: str) -> bool:
    """The real Shaman's rule for a requested checkout path."""
    return bool(re.match(r"^[^/?*:;{}\\][^?*:;{}\\]*$", path)) and "../" not in path and "/.." not in path


def _json(status: int, payload: Any) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def _error(status: int, message: str) -> tuple[int, dict, bytes]:
    return _json(status, {"code": status, "message": message})


def _read_json(body: "_Counting") -> Any:
    try:
        return json.loads(body.read() or b"null")
    except ValueError:
        return None


def _specs(payload: Any) -> list[dict] | None:
    files = payload.get("files") if isinstance(payload, dict) else None
    if not isinstance(files, list):
        return None
    out = []
    for f in files:
        if (not isinstance(f, dict) or not isinstance(f.get("sha"), str) or type(f.get("size")) is not int
                or not isinstance(f.get("path"), str)):
            return None
        out.append({"sha": f["sha"], "size": f["size"], "path": f["path"]})
    return out


def _relative_ok(path: str) -> bool:
    parts = path.replace("\\", "/").split("/")
    return bool(path) and not path.startswith(("/", "\\")) and ".." not in parts and ":" not in parts[0]


# --- standalone HTTP server -----------------------------------------------------------------------


class _Body:
    """The request body from the socket: Content-Length or chunked; b"" at its end."""

    def __init__(self, rfile: BinaryIO, headers: Mapping) -> None:
        self.rfile = rfile
        self.chunked = "chunked" in str(headers.get("Transfer-Encoding", "")).lower()
        self.left = 0 if self.chunked else int(headers.get("Content-Length") or 0)
        self.eof = False

    def read(self, n: int = -1) -> bytes:
        if self.chunked and self.left == 0 and not self.eof:
            size_line = self.rfile.readline(1024).split(b";")[0].strip()
            self.left = int(size_line or b"0", 16)
            if self.left == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                self.eof = True
        if self.left <= 0:
            return b""
        data = self.rfile.read(self.left if n is None or n < 0 else min(n, self.left))
        self.left -= len(data)
        if self.chunked and self.left == 0:
            self.rfile.readline(16)
        if not data:
            self.eof, self.left = True, 0
        return data

    def drain(self, limit: int | None = None) -> bool:
        """Read what is left; False when more than `limit` was left (the rest stays unread)."""
        read = 0
        while limit is None or read <= limit:
            data = self.read(64 * 1024)
            if not data:
                return True
            read += len(data)
        return False


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass   # a client that hangs up mid-upload is expected in tests


class FakeShamanServer:
    """`with FakeShamanServer(root) as server:` → `server.url`, `server.shaman`."""

    def __init__(self, root: str | None = None, shaman: FakeShaman | None = None) -> None:
        self._tmp = None
        if shaman is None:
            if root is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="fake-shaman-")
                root = self._tmp.name
            shaman = FakeShaman(root)
        self.shaman = shaman
        self.httpd: _QuietServer | None = None
        self.thread: threading.Thread | None = None
        self.url = ""

    def __enter__(self) -> "FakeShamanServer":
        shaman = self.shaman

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _dispatch(self) -> None:
                body = _Body(self.rfile, self.headers)
                try:
                    status, headers, out = shaman.handle(self.command, self.path, self.headers, body)
                except DropConnection:
                    self.close_connection = True
                    return
                # An early answer (208/425) leaves the body unread: read it to keep the connection
                # usable, or, past `drain_limit`, answer and hang up as Go's server does.
                if not body.drain(shaman.drain_limit):
                    self.close_connection = True
                self.send_response(status)
                if self.close_connection:
                    self.send_header("Connection", "close")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = _dispatch

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name="fake-shaman",
                                       daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()
