# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender's side of the helper link: start lazily, send, drain without blocking, restart, stop.

No bpy here: the persistent timer in blender/ calls `drain()`; tests in module
mode (where timers never fire) call it themselves.
"""
from __future__ import annotations

import itertools
import json
import os
import pathlib
import subprocess
import sys
import time

from ..core import errors
from . import protocol

_BOOTSTRAP = (
    "import importlib, json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
    "importlib.import_module(sys.argv[2] + '.link.helper').main()"
)


def _package_location() -> tuple[str, str]:
    """(folder holding the package, package folder name): what the helper must import."""
    package_dir = pathlib.Path(__file__).resolve().parents[1]
    return str(package_dir.parent), package_dir.name


class _NonBlockingReader:
    """Reads whatever a pipe has now, without waiting (POSIX and Windows)."""

    def __init__(self, pipe) -> None:
        self.fd = pipe.fileno()
        if os.name == "nt":
            import ctypes
            import msvcrt
            from ctypes import wintypes
            self._handle = msvcrt.get_osfhandle(self.fd)
            self._peek = ctypes.windll.kernel32.PeekNamedPipe
            self._avail = wintypes.DWORD()
            self._ctypes = ctypes
        else:
            os.set_blocking(self.fd, False)

    def read(self) -> bytes | None:
        """Bytes available now (b"" when none); None at end of stream."""
        if os.name == "nt":
            ok = self._peek(self._handle, None, 0, None, self._ctypes.byref(self._avail), None)
            if not ok:
                return None
            return os.read(self.fd, self._avail.value) if self._avail.value else b""
        try:
            data = os.read(self.fd, 1 << 20)
        except BlockingIOError:
            return b""
        return data if data else None


class Channel:
    def __init__(self, extra_paths: list[str] | None = None) -> None:
        self.extra_paths = extra_paths
        self.process: subprocess.Popen | None = None
        self._reader: _NonBlockingReader | None = None
        self._buffer = protocol.LineBuffer()
        self._ids = itertools.count(1)
        self.pending: dict[int, str] = {}   # request id → operation name
        self._undelivered: list[dict] = []
        self.starts = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _start(self) -> None:
        parent, name = _package_location()
        paths = [parent] + [p for p in (self.extra_paths if self.extra_paths is not None else sys.path) if p]
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOTSTRAP, json.dumps(paths), name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            creationflags=flags)
        self._reader = _NonBlockingReader(self.process.stdout)
        self._buffer = protocol.LineBuffer()
        self.starts += 1

    def send(self, op: str, connection: dict, args: dict) -> int:
        """Queues a request; starts (or restarts) the helper if needed. Never blocks on the answer."""
        if not self.alive:
            # Requests lost with a dead helper still get their answer, at the next drain().
            self._undelivered.extend(self._fail_pending("Flamenco Panel's helper process stopped; please try again"))
            self._close_process()
            self._start()
        request_id = next(self._ids)
        self.pending[request_id] = op
        self._write(protocol.request(request_id, op, connection, args))
        return request_id

    def abort(self, request_id: int) -> None:
        if self.alive and request_id in self.pending:
            self._write(protocol.abort(request_id))

    def _write(self, message: dict) -> None:
        try:
            self.process.stdin.write(protocol.encode(message))
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the next drain() notices the dead process and fails what was pending

    def drain(self) -> list[dict]:
        """Messages that arrived since the last call; errors for requests lost with a dead helper."""
        messages, self._undelivered = self._undelivered, []
        if self._reader is not None:
            while True:
                data = self._reader.read()
                if not data:
                    break
                for line in self._buffer.feed(data):
                    message = protocol.decode(line)
                    if message is None:
                        continue
                    if message["type"] in ("result", "error"):
                        self.pending.pop(message.get("id"), None)
                    messages.append(message)
        if self.pending and not self.alive:
            messages.extend(self._fail_pending("Flamenco Panel's helper process stopped unexpectedly; "
                                               "the request was not finished"))
        return messages

    def _fail_pending(self, message: str) -> list[dict]:
        failed = [protocol.error(rid, errors.FlamencoError(message).to_dict()) for rid in self.pending]
        self.pending.clear()
        return failed

    def wait(self, request_id: int, timeout: float) -> dict:
        """Blocks until the request's result or error (tests, scripts); returns that message."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            for message in self.drain():
                seen.append(message)
                if message.get("id") == request_id and message["type"] in ("result", "error"):
                    return message
            time.sleep(0.01)
        raise TimeoutError(f"no answer to request {request_id} within {timeout} s")

    def _close_process(self) -> None:
        """Reaps a helper that already exited and closes its pipes."""
        if self.process is not None:
            for pipe in (self.process.stdin, self.process.stdout):
                try:
                    pipe.close()
                except OSError:
                    pass
            self.process.wait()
            self.process = None

    def stop(self, timeout: float = 2.0) -> None:
        process, self.process = self.process, None
        self._reader = None
        self.pending.clear()
        self._undelivered.clear()
        if process is None:
            return
        try:
            process.stdin.close()   # the helper's loop ends on EOF
        except OSError:
            pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
        for pipe in (process.stdout,):
            try:
                pipe.close()
            except OSError:
                pass
