# SPDX-License-Identifier: GPL-3.0-or-later
"""The JSON-lines messages between Blender and the helper process.

Blender → helper: {"type": "request", "id", "op", "connection", "args"} and {"type": "abort", "id"}.
Helper → Blender: {"type": "progress" | "result" | "error", "id", "data" | "error"}.
One message per line, UTF-8; errors travel as FlamencoError.to_dict(), never as tracebacks.
"""
from __future__ import annotations

import json
from typing import Any


def encode(message: dict) -> bytes:
    return (json.dumps(message, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")


def decode(line: bytes | str) -> dict | None:
    """A message, or None for a line that is not one (e.g. stray output of a library)."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) and "type" in message else None


def request(request_id: int, op: str, connection: dict, args: dict) -> dict:
    return {"type": "request", "id": request_id, "op": op, "connection": connection, "args": args}


def abort(request_id: int) -> dict:
    return {"type": "abort", "id": request_id}


def progress(request_id: int, data: Any) -> dict:
    return {"type": "progress", "id": request_id, "data": data}


def result(request_id: int, data: Any) -> dict:
    return {"type": "result", "id": request_id, "data": data}


def error(request_id: int, error_dict: dict) -> dict:
    return {"type": "error", "id": request_id, "error": error_dict}


class LineBuffer:
    """Splits a byte stream into complete lines across partial reads (linear in the bytes fed:
    a multi-megabyte result arriving in many reads is never re-scanned)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def feed(self, data: bytes) -> list[bytes]:
        if b"\n" not in data:
            self._parts.append(data)
            return []
        *complete, rest = data.split(b"\n")
        complete[0] = b"".join(self._parts) + complete[0]
        self._parts = [rest] if rest else []
        return [line for line in complete if line.strip()]
