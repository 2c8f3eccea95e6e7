# SPDX-License-Identifier: GPL-3.0-or-later
"""Contract check: every request body a client sent, validated against the Manager's own spec."""
from __future__ import annotations

from urllib.parse import urlsplit


def violations(manager) -> list[str]:
    """Requests to the API that the served spec does not accept (unknown route or invalid body)."""
    spec = manager.spec
    problems = []
    for req in manager.requests:
        path = urlsplit(req.target).path if getattr(req, "target", None) else req.path
        if not path.startswith("/api/v3/") or path == "/api/v3/openapi3.json":
            continue
        try:
            op, _params, _values = spec.route(req.method, path)
        except LookupError as ex:
            if req.fault is None:
                problems.append(f"{req.method} {path}: not in the spec ({ex})")
            continue
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if body is None or req.json is None:
            continue
        try:
            spec.validate(req.json, body)
        except Exception as ex:  # the fake's validator raises its own error type
            problems.append(f"{req.method} {path}: {ex}")
    return problems
