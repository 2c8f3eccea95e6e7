# SPDX-License-Identifier: GPL-3.0-or-later
"""One error hierarchy whose messages a user can act on.

Errors cross the helper-process link as data (`to_dict`/`from_dict`), never
as tracebacks. Messages never contain request headers (the optional auth
header must not leak into reports or logs).
"""
from __future__ import annotations


class FlamencoError(Exception):
    """Base class; `str(error)` is the user-facing message."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def to_dict(self) -> dict:
        return {"kind": type(self).__name__, "message": self.message, "status": self.status}

    @staticmethod
    def from_dict(data: dict) -> "FlamencoError":
        cls = _known_kinds().get(str(data.get("kind", "")), FlamencoError)
        return cls(str(data.get("message", "Unknown error")), status=int(data.get("status") or 0))


class OfflineError(FlamencoError):
    """Blender's "Allow Online Access" is off: no request may be made."""


class ConfigurationError(FlamencoError):
    """Something in the preferences or the request is wrong before any request is sent."""


class ManagerUnreachable(FlamencoError):
    """No connection could be made (refused, DNS, TLS, reset)."""


class ManagerTimeout(FlamencoError):
    """The Manager accepted the connection but did not answer in time."""


class ManagerHTTPError(FlamencoError):
    """The Manager answered with an HTTP error status."""

    @property
    def no_such_operation(self) -> bool:
        """How a Manager says it lacks an operation: 404 or 405, or (3.5 … 3.8) a 400 "method not allowed"."""
        return self.status in (404, 405) or (self.status == 400 and "method not allowed" in self.message.lower())


class JobTypeStale(ManagerHTTPError):
    """412 on check/submit: the job type changed on the Manager since it was fetched."""


class NotAManager(FlamencoError):
    """The URL answers, but not as a supported Flamenco Manager."""


class MalformedResponse(FlamencoError):
    """The Manager's answer could not be understood (bad JSON, wrong type, too large)."""


class ActionNotAllowed(FlamencoError):
    """Refused locally by the status/ownership rules; nothing was sent."""


class Aborted(FlamencoError):
    """The user aborted a long operation."""


def _known_kinds() -> dict:
    """Every FlamencoError subclass by name (core modules may add their own), for from_dict."""
    found, todo = {}, [FlamencoError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found

