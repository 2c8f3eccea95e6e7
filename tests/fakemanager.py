# SPDX-License-Identifier: GPL-3.0-or-later
"""A small, fault-injecting fake Flamenco Manager for tests.

Runs an HTTP server on 127.0.0.1 (ephemeral port) in daemon threads and answers the
user-facing part of the Flamenco Manager REST API (``/api/v3/...``) the way the real
Manager of the chosen version does, with in-memory state that tests can read and change.

    with FakeManager(version="3.5") as fm:
        job = fm.state.add_job("My job", metadata={"user.name": "Ann"})
        fm.fault("GET", r"/api/v3/jobs/.*", "stall", times=1)
        ...  # talk to fm.url

Routing, request validation and the shape of every answer follow the Manager's own
OpenAPI spec of that version (``flamenco-openapi-<version>.yaml``), so an operation that
the version lacks answers as the real one does (400 "method not allowed" up to 3.8, 404 from
3.9, for a known path; 404 for an unknown one), and keys the version does not
know are left out of answers. Errors come in the two shapes the real Manager uses:
request-validation errors are ``{message}`` (400), handler errors are ``{code, message}``.

Standard library plus PyYAML only. Test infrastructure: never imported by the add-on.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import http.server
import io
import json
import ntpath
import os
import posixpath
import re
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from fake_shaman import FakeShaman

__all__ = [
    "DEFAULT_VERSION",
    "FAULT_KINDS",
    "FakeManager",
    "FarmState",
    "Fault",
    "Recorded",
    "openapi_dir",
    "version_tuple",
]

DEFAULT_VERSION = "3.9-beta1"
DEBUG = bool(os.environ.get("FAKEMANAGER_DEBUG"))

# A real 16x9 baseline JPEG, served for every last-rendered image size.
TINY_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/4QAMTmVvR2VvAAAAWv/bAEMAAwICAwICAwMDAwQDAwQFCAUFBAQFCgcHBggMCgwM"
    "CwoLCw0OEhANDhEOCwsQFhARExQVFRUMDxcYFhQYEhQVFP/bAEMBAwQEBQQFCQUFCRQNCw0UFBQUFBQUFBQUFBQUFBQU"
    "FBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFP/AABEIAAkAEAMBIgACEQEDEQH/xAAfAAABBQEBAQEBAQAA"
    "AAAAAAAAAQIDBAUGBwgJCgv/xAC1EAACAQMDAgQDBQUEBAAAAX0BAgMABBEFEiExQQYTUWEHInEUMoGRoQgjQrHBFVLR"
    "8CQzYnKCCQoWFxgZGiUmJygpKjQ1Njc4OTpDREVGR0hJSlNUVVZXWFlaY2RlZmdoaWpzdHV2d3h5eoOEhYaHiImKkpOU"
    "lZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4eLj5OXm5+jp6vHy8/T19vf4+fr/xAAfAQAD"
    "AQEBAQEBAQEBAAAAAAAAAQIDBAUGBwgJCgv/xAC1EQACAQIEBAMEBwUEBAABAncAAQIDEQQFITEGEkFRB2FxEyIygQgU"
    "QpGhscEJIzNS8BVictEKFiQ04SXxFxgZGiYnKCkqNTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqC"
    "g4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2dri4+Tl5ufo6ery8/T19vf4"
    "+fr/2gAMAwEAAhEDEQA/AMHwj+1V9z/TP/Hq9s8I/tVfc/0z/wAer8svCP8ABXtvhDolfZZ1wVlmun4H3/hl4eZP+7938D//2Q=="
)
LAST_RENDERED_SUFFIXES = ("last-rendered.jpg", "last-rendered-small.jpg", "last-rendered-tiny.jpg")
LOG_TAIL_SIZE = 2048
JOB_FILES_PREFIX = "/job-files"
MIME_JSON = "application/json"
MIME_TEXT = "text/plain; charset=UTF-8"

JOB_STATUSES = (
    "active", "canceled", "completed", "failed", "paused", "pause-requested", "queued",
    "cancel-requested", "requeueing", "under-construction",
)
TASK_STATUSES = ("active", "canceled", "completed", "failed", "queued", "soft-failed", "paused")
WORKER_STATUSES = ("starting", "awake", "asleep", "error", "testing", "offline", "restart")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


# --------------------------------------------------------------------------- versions / spec


def version_tuple(version: str) -> tuple[int, int, int]:
    """Numeric part of a Flamenco version: "3.9-beta1" -> (3, 9, 0), "3.8.5" -> (3, 8, 5)."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    if not m:
        raise ValueError(f"not a Flamenco version: {version!r}")
    parts = [int(p) for p in m.group(1).split(".")][:3]
    while len(parts) < 3:
        parts.append(0)
    return (parts[0], parts[1], parts[2])


def openapi_dir() -> Path:
    """Directory with the Manager's OpenAPI specs: $FLAMENCO_OPENAPI_DIR or X/shared/flamenco/openapi."""
    env = os.environ.get("FLAMENCO_OPENAPI_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "flamenco" / "openapi"


_SPEC_NAME_RE = re.compile(r"^flamenco-openapi-(.+)\.yaml$")


def find_spec_file(version: str, directory: Path | None = None) -> Path:
    """The spec for `version`: exact name, else same major.minor, else newest older one."""
    directory = directory or openapi_dir()
    exact = directory / f"flamenco-openapi-{version}.yaml"
    if exact.is_file():
        return exact
    found: list[tuple[tuple[int, int, int], Path]] = []
    for p in directory.glob("flamenco-openapi-*.yaml"):
        m = _SPEC_NAME_RE.match(p.name)
        if m:
            try:
                found.append((version_tuple(m.group(1)), p))
            except ValueError:
                pass
    if not found:
        raise FileNotFoundError(f"no flamenco-openapi-*.yaml in {directory}")
    want = version_tuple(version)
    same = [f for f in found if f[0][:2] == want[:2]]
    if same:
        return max(same)[1]
    older = [f for f in found if f[0] <= want]
    return max(older)[1] if older else min(found)[1]


@functools.lru_cache(maxsize=None)
def _load_spec(path: str) -> tuple[dict, bytes]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as f:
        doc = yaml.load(f, Loader=loader)  # noqa: S506 - a safe loader
    # The real Manager serves its embedded spec with capitalised operationIds (FetchJobs), unlike the YAML.
    served = json.loads(json.dumps(doc, default=str))
    for item in served.get("paths", {}).values():
        for op in item.values() if isinstance(item, dict) else ():
            if isinstance(op, dict) and isinstance(op.get("operationId"), str):
                op["operationId"] = op["operationId"][:1].upper() + op["operationId"][1:]
    as_json = json.dumps(served).encode()
    return doc, as_json


class _ValidationError(Exception):
    pass


class _Spec:
    """Routing, request validation and answer pruning driven by one OpenAPI document."""

    METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

    def __init__(self, path: Path):
        self.path = path
        self.doc, self.json_bytes = _load_spec(str(path))
        self.schemas: dict = self.doc.get("components", {}).get("schemas", {})
        self._merged: dict[int, dict] = {}
        self._merge_lock = threading.Lock()
        self.operation_ids: set[str] = set()
        routes = []
        for template, item in self.doc.get("paths", {}).items():
            names = re.findall(r"{([^}]+)}", template)
            pattern = ""
            pos = 0
            for m in re.finditer(r"{[^}]+}", template):
                pattern += re.escape(template[pos:m.start()]) + "([^/]+)"
                pos = m.end()
            pattern += re.escape(template[pos:])
            ops = {}
            common_params = item.get("parameters", [])
            for method in self.METHODS:
                op = item.get(method)
                if isinstance(op, dict):
                    params = list(common_params) + list(op.get("parameters", []))
                    ops[method.upper()] = (op, params)
                    if op.get("operationId"):
                        self.operation_ids.add(op["operationId"])
            literal_len = len(re.sub(r"{[^}]+}", "", template))
            routes.append((len(names), -literal_len, template, re.compile(f"^{pattern}$"), names, ops))
        routes.sort(key=lambda r: (r[0], r[1]))
        self.routes = routes

    # -- routing

    def route(self, method: str, path: str):
        """Returns (op, params, path_values) or raises LookupError('404'|'405')."""
        path_matched = False
        for _n, _l, _template, regex, names, ops in self.routes:
            m = regex.match(path)
            if not m:
                continue
            path_matched = True
            if method in ops:
                op, params = ops[method]
                values = {n: unquote(v) for n, v in zip(names, m.groups())}
                return op, params, values
        raise LookupError("405" if path_matched else "404")

    # -- schema helpers

    def resolve(self, schema: Any) -> dict:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/components/schemas/"):
                raise ValueError(f"unsupported $ref {ref}")
            schema = self.schemas[ref.rsplit("/", 1)[1]]
            seen += 1
            if seen > 50:
                raise ValueError("$ref loop")
        return schema if isinstance(schema, dict) else {}

    def merged(self, schema: Any) -> dict:
        """Schema with $ref resolved and allOf flattened (properties/required merged)."""
        key = id(schema)
        cached = self._merged.get(key)
        if cached is not None:
            return cached
        s = self.resolve(schema)
        if "allOf" in s:
            out: dict = {k: v for k, v in s.items() if k != "allOf"}
            props: dict = dict(out.get("properties", {}))
            required: list = list(out.get("required", []))
            for part in s["allOf"]:
                pm = self.merged(part)
                for k, v in pm.items():
                    if k == "properties":
                        props.update(v)
                    elif k == "required":
                        required.extend(r for r in v if r not in required)
                    else:
                        out.setdefault(k, v)
            out["properties"] = props
            if required:
                out["required"] = required
            s = out
        with self._merge_lock:
            self._merged[key] = s
        return s

    def schema(self, name: str) -> dict:
        return self.schemas[name]

    def has_property(self, schema_name: str, prop: str) -> bool:
        return prop in self.merged(self.schemas.get(schema_name, {})).get("properties", {})

    def validate(self, value: Any, schema: Any, where: str = "") -> None:
        s = self.merged(schema)
        at = f'Error at "{where or "/"}": '
        if value is None:
            if s.get("nullable"):
                return
            if s:
                raise _ValidationError(at + "Value is not nullable")
            return
        if "enum" in s and value not in s["enum"]:
            allowed = ", ".join(json.dumps(e) for e in s["enum"])
            raise _ValidationError(at + f"value is not one of the allowed values [{allowed}]")
        typ = s.get("type") or ("object" if "properties" in s else None)
        if typ == "object":
            if not isinstance(value, dict):
                raise _ValidationError(at + "value must be an object")
            for req in s.get("required", []):
                if req not in value:
                    raise _ValidationError(at + f'property "{req}" is missing')
            props = s.get("properties", {})
            addl = s.get("additionalProperties")
            for k, v in value.items():
                if k in props:
                    self.validate(v, props[k], f"{where}/{k}")
                elif isinstance(addl, dict):
                    self.validate(v, addl, f"{where}/{k}")
        elif typ == "array":
            if not isinstance(value, list):
                raise _ValidationError(at + "value must be an array")
            if "items" in s:
                for i, v in enumerate(value):
                    self.validate(v, s["items"], f"{where}/{i}")
        elif typ == "string":
            if not isinstance(value, str):
                raise _ValidationError(at + "value must be a string")
            fmt = s.get("format")
            if fmt == "uuid" and not _UUID_RE.match(value):
                raise _ValidationError(at + 'string doesn\'t match the format "uuid"')
            if fmt == "date-time":
                try:
                    datetime.fromisoformat(value)
                except ValueError:
                    raise _ValidationError(at + 'string doesn\'t match the format "date-time"') from None
        elif typ in ("integer", "number"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _ValidationError(at + f"value must be {'an integer' if typ == 'integer' else 'a number'}")
            if typ == "integer" and float(value) != int(value):
                raise _ValidationError(at + "value must be an integer")
            if "minimum" in s and value < s["minimum"]:
                raise _ValidationError(at + f"number must be at least {s['minimum']}")
            if "maximum" in s and value > s["maximum"]:
                raise _ValidationError(at + f"number must be at most {s['maximum']}")
        elif typ == "boolean":
            if not isinstance(value, bool):
                raise _ValidationError(at + "value must be a boolean")

    def prune(self, value: Any, schema: Any) -> Any:
        """Drop object keys the schema does not define (what a Go struct would do)."""
        s = self.merged(schema)
        if isinstance(value, dict):
            props = s.get("properties")
            addl = s.get("additionalProperties")
            if props is None and not isinstance(addl, dict):
                return value
            out = {}
            for k, v in value.items():
                if props and k in props:
                    out[k] = self.prune(v, props[k])
                elif isinstance(addl, dict):
                    out[k] = self.prune(v, addl)
                elif addl is True:
                    out[k] = v
            return out
        if isinstance(value, list) and "items" in s:
            return [self.prune(v, s["items"]) for v in value]
        return value


# --------------------------------------------------------------------------- small helpers


def _now_ns() -> int:
    return time.time_ns()


def rfc3339(ns: int | None) -> str | None:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction trimmed."""
    if ns is None:
        return None
    secs, frac = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    frac_s = f"{frac:09d}".rstrip("0")
    return f"{base}.{frac_s}Z" if frac_s else f"{base}Z"


def _parse_time_ns(value: str) -> int:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def _go_json(obj: Any) -> bytes:
    """JSON like Go's encoding/json: compact, UTF-8, HTML-escaped, trailing newline."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    s = (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
         .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return (s + "\n").encode("utf-8", "surrogatepass")


def _new_uuid() -> str:
    return str(uuidlib.uuid4())


def _is_uuid(value: str) -> bool:
    return bool(_UUID_RE.match(value or ""))


class _CIDict(dict):
    """dict of headers with case-insensitive lookups (keys keep their original spelling)."""

    def _key(self, key: str) -> str | None:
        if dict.__contains__(self, key):
            return key
        low = key.lower()
        for k in self.keys():
            if k.lower() == low:
                return k
        return None

    def __getitem__(self, key):
        k = self._key(key)
        if k is None:
            raise KeyError(key)
        return dict.__getitem__(self, k)

    def __contains__(self, key) -> bool:
        return isinstance(key, str) and self._key(key) is not None

    def get(self, key, default=None):
        k = self._key(key)
        return default if k is None else dict.__getitem__(self, k)


# --------------------------------------------------------------------------- job types


def _job_type_etag(defn: dict) -> str:
    payload = {k: defn.get(k) for k in ("name", "label", "description", "settings")}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def default_job_types() -> dict[str, dict]:
    """The two job types every Manager ships, as AvailableJobType dicts (with etag)."""
    sbr = {
        "name": "simple-blender-render",
        "label": "Simple Blender Render",
        "description": "Render a sequence of frames, and create a preview video file",
        "settings": [
            {"key": "frames", "type": "string", "required": True,
             "eval": "f'{C.scene.frame_start}-{C.scene.frame_end}'",
             "evalInfo": {"showLinkButton": True, "description": "Scene frame range"},
             "description": "Frame range to render. Examples: '47', '1-30', '3, 5-10, 47-327'"},
            {"key": "chunk_size", "type": "int32", "default": 1,
             "description": "Number of frames to render in one Blender render task", "visible": "submission"},
            {"key": "render_output_root", "type": "string", "subtype": "dir_path", "required": True,
             "visible": "submission",
             "description": "Base directory of where render output is stored. Will have some job-specific parts appended to it"},
            {"key": "add_path_components", "type": "int32", "required": True, "default": 0,
             "propargs": {"min": 0, "max": 32}, "visible": "submission",
             "description": "Number of path components of the current blend file to use in the render output path"},
            {"key": "render_output_path", "type": "string", "subtype": "file_path", "editable": False,
             "eval": "str(Path(abspath(settings.render_output_root), last_n_dir_parts(settings.add_path_components), jobname, '{timestamp}', '######'))",
             "description": "Final file path of where render output will be saved"},
            {"key": "blendfile", "type": "string", "required": True,
             "description": "Path of the Blend file to render", "visible": "web"},
            {"key": "fps", "type": "float", "eval": "C.scene.render.fps / C.scene.render.fps_base", "visible": "hidden"},
            {"key": "format", "type": "string", "required": True,
             "eval": "C.scene.render.image_settings.file_format", "visible": "web"},
            {"key": "image_file_extension", "type": "string", "required": True,
             "eval": "C.scene.render.file_extension", "visible": "hidden",
             "description": "File extension used when rendering images"},
            {"key": "has_previews", "type": "bool", "required": False,
             "eval": "C.scene.render.image_settings.use_preview", "visible": "hidden",
             "description": "Whether Blender will render preview images."},
            {"key": "scene", "type": "string", "required": True, "eval": "C.scene.name", "visible": "web",
             "description": "Name of the scene to render."},
        ],
    }
    echo = {
        "name": "echo-sleep-test",
        "label": "Echo Sleep Test",
        "description": "Echo a message, then sleep for a while. Meant for testing a farm.",
        "settings": [
            {"key": "message", "type": "string", "required": True},
            {"key": "sleep_duration_seconds", "type": "int32", "default": 1},
            {"key": "sleep_repeats", "type": "int32", "default": 1},
        ],
    }
    out = {}
    for d in (sbr, echo):
        d["etag"] = _job_type_etag(d)
        out[d["name"]] = d
    return out


class _CompileError(Exception):
    pass


def _frame_range_explode(frames: Any) -> list[int]:
    if isinstance(frames, bool) or not isinstance(frames, (str, int)):
        raise _CompileError(f"frame range {frames!r} is not a string")
    result: list[int] = []
    text = str(frames).strip()
    if not text:
        raise _CompileError("empty frame range")
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(-?\d+)\s*(?:-\s*(-?\d+))?", part)
        if not m:
            raise _CompileError(f"invalid frame range {text!r}")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a:
            raise _CompileError(f"invalid frame range {part!r}: end before start")
        if b - a > 1_000_000:
            raise _CompileError(f"frame range {part!r} is too large")
        result.extend(range(a, b + 1))
    return result


def _frame_range_compress(frames: list[int]) -> str:
    runs: list[str] = []
    start = prev = frames[0]
    for f in frames[1:] + [None]:  # type: ignore[list-item]
        if f is not None and f == prev + 1:
            prev = f
            continue
        runs.append(f"{start}-{prev}" if prev != start else f"{start}")
        if f is not None:
            start = prev = f
    return ",".join(runs)


def frame_chunker(frames: Any, chunk_size: Any) -> list[str]:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, float)) or int(chunk_size) < 1:
        raise _CompileError(f"chunk size should be a positive integer, not {chunk_size!r}")
    size = int(chunk_size)
    all_frames = _frame_range_explode(frames)
    return [_frame_range_compress(all_frames[i:i + size]) for i in range(0, len(all_frames), size)]


def _pathmod(p: str):
    return ntpath if ("\\" in p and "/" not in p) else posixpath


# --------------------------------------------------------------------------- farm state


class FarmState:
    """Mutable in-memory farm. All public helpers take `lock` themselves (it is re-entrant).

    Jobs, tasks and workers are plain dicts in the 3.9 API shape (timestamps as ns ints in
    `created`/`updated`); answers are rendered per version from these.
    """

    def __init__(self, version: str = DEFAULT_VERSION, shaman: bool = False):
        self.lock = threading.RLock()
        self.version = version
        self.manager_name = "Fake Flamenco Manager"
        self.manager_platform = "linux"
        self.shared_storage = "/srv/flamenco"
        self.shaman_enabled = shaman
        self.is_first_run = False
        self.jobs: dict[str, dict] = {}
        self.tasks: dict[str, dict] = {}
        self.job_task_ids: dict[str, list[str]] = {}
        self.workers: dict[str, dict] = {}
        self.tags: dict[str, dict] = {}
        self.job_types: dict[str, dict] = default_job_types()
        self.logs: dict[str, bytearray] = {}
        self.last_rendered: dict[str, dict[str, bytes]] = {}
        self.last_rendered_job: str | None = None
        self.files: dict[str, bytes] = {}  # extra static files, key relative to /job-files/
        self.sleep_schedules: dict[str, dict] = {}
        self._shaman: FakeShaman | None = None   # made on first use, in a temporary folder
        # Manager variables: name -> {is_twoway, values: [{platform, value, audience?}]}
        self.variables: dict[str, dict] = {
            "blender": {"is_twoway": False, "values": [
                {"platform": "linux", "value": "/opt/blender/blender"},
                {"platform": "windows", "value": "C:\\Program Files\\Blender Foundation\\Blender 4.2\\blender.exe"},
                {"platform": "darwin", "value": "/Applications/Blender.app/Contents/MacOS/Blender"},
            ]},
            "blenderArgs": {"is_twoway": False, "values": [{"platform": "all", "value": "-b -y"}]},
            "storage": {"is_twoway": True, "values": [
                {"platform": "linux", "value": "/srv/flamenco"},
                {"platform": "windows", "value": "S:\\flamenco"},
                {"platform": "darwin", "value": "/Volumes/flamenco"},
            ]},
        }
        # Test knobs.
        self.farm_status: str | None = None  # force GET /status
        self.status_change_error: str | None = None  # make job/task setstatus fail with 500
        self.auto_apply_worker_status = True  # worker takes a requested status at once
        self.delete_delay = 0.0  # seconds a deletion-requested job stays visible

    # -- lookups

    def get_job(self, job_id: str) -> dict:
        with self.lock:
            return self.jobs[job_id]

    def get_task(self, task_id: str) -> dict:
        with self.lock:
            return self.tasks[task_id]

    def shaman(self) -> FakeShaman:
        """The Shaman file store and checkouts (made on first use, removed when the Manager stops)."""
        with self.lock:
            if self._shaman is None:
                import tempfile
                self._shaman = FakeShaman(tempfile.mkdtemp(prefix="fake-manager-shaman-"))
            return self._shaman

    def job_tasks(self, job_id: str) -> list[dict]:
        with self.lock:
            return [self.tasks[t] for t in self.job_task_ids.get(job_id, []) if t in self.tasks]

    def get_worker(self, worker_id: str) -> dict:
        with self.lock:
            return self.workers[worker_id]

    # -- jobs and tasks

    def add_job(
        self,
        name: str = "Test job",
        *,
        type: str = "simple-blender-render",
        status: str = "queued",
        priority: int = 50,
        metadata: dict | None = None,
        settings: dict | None = None,
        tasks: int = 3,
        task_status: str | None = None,
        submitter_platform: str = "linux",
        worker_tag: str | None = None,
        activity: str = "",
        created: int | float | datetime | None = None,
        job_id: str | None = None,
    ) -> dict:
        """Adds a job (no compilation) with `tasks` simple tasks. Returns the job dict."""
        now = self._ns(created)
        job = {
            "id": job_id or _new_uuid(),
            "name": name,
            "type": type,
            "priority": priority,
            "status": status,
            "activity": activity,
            "settings": dict(settings or {}),
            "metadata": dict(metadata or {}),
            "submitter_platform": submitter_platform,
            "created": now,
            "updated": now,
            "steps_completed": 0,
            "steps_total": 0,
            "storage": None,
            "worker_tag": worker_tag,
            "delete_requested_at": None,
        }
        with self.lock:
            self.jobs[job["id"]] = job
            self.job_task_ids[job["id"]] = []
            if tasks:
                tstatus = task_status or self._task_status_for_job(status)
                for i in range(tasks):
                    self.add_task(job["id"], f"task-{i + 1}", status=tstatus, _touch_job=False)
                self._recount_steps(job)
        return job

    def add_jobs(self, count: int, *, name: str = "job-{i:05d}", tasks: int = 0, **kw: Any) -> list[str]:
        """Adds `count` jobs fast (no tasks by default). `name` may use {i}. Returns their ids."""
        ids = []
        base = self._ns(kw.pop("created", None))
        with self.lock:
            for i in range(count):
                job = self.add_job(name.format(i=i), tasks=tasks, created=base + i * 1000, **kw)
                ids.append(job["id"])
        return ids

    def add_task(
        self,
        job_id: str,
        name: str | None = None,
        *,
        status: str = "queued",
        task_type: str = "misc",
        priority: int = 50,
        commands: list[dict] | None = None,
        worker_id: str | None = None,
        steps_total: int | None = None,
        activity: str = "",
        _touch_job: bool = True,
    ) -> dict:
        with self.lock:
            job = self.jobs[job_id]
            index = len(self.job_task_ids[job_id])
            cmds = commands if commands is not None else [
                {"name": "echo", "parameters": {"message": name or f"task {index + 1}"}, "total_step_count": 0}]
            for c in cmds:
                c.setdefault("parameters", {})
                c.setdefault("total_step_count", 0)
            if steps_total is None:
                steps_total = max(1, sum(max(1, int(c.get("total_step_count") or 0)) for c in cmds))
            now = _now_ns()
            task = {
                "id": _new_uuid(),
                "job_id": job_id,
                "index_in_job": index,
                "name": name or f"task-{index + 1}",
                "status": status,
                "priority": priority,
                "task_type": task_type,
                "activity": activity,
                "commands": cmds,
                "created": now,
                "updated": now,
                "steps_completed": steps_total if status == "completed" else 0,
                "steps_total": steps_total,
                "worker_id": worker_id,
                "last_touched": now if worker_id else None,
                "failed_by": [],
            }
            self.tasks[task["id"]] = task
            self.job_task_ids[job_id].append(task["id"])
            if worker_id and worker_id in self.workers:
                self.workers[worker_id]["task_id"] = task["id"]
            if _touch_job:
                self._recount_steps(job)
            return task

    def remove_job(self, job_id: str) -> None:
        with self.lock:
            for tid in self.job_task_ids.pop(job_id, []):
                self.tasks.pop(tid, None)
                self.logs.pop(tid, None)
            self.jobs.pop(job_id, None)
            self.last_rendered.pop(job_id, None)
            if self.last_rendered_job == job_id:
                self.last_rendered_job = None

    def set_job_status(self, job_id: str, status: str, activity: str | None = None) -> None:
        """Sets the status directly (no state machine, tasks untouched)."""
        with self.lock:
            job = self.jobs[job_id]
            job["status"] = status
            if activity is not None:
                job["activity"] = activity
            job["updated"] = _now_ns()

    def set_task_status(self, task_id: str, status: str, activity: str | None = None,
                        worker_id: str | None = None) -> None:
        """Sets the status directly (no state machine, job untouched)."""
        with self.lock:
            task = self.tasks[task_id]
            task["status"] = status
            if activity is not None:
                task["activity"] = activity
            if worker_id is not None:
                self.assign_task(task_id, worker_id)
            if status == "completed":
                task["steps_completed"] = task["steps_total"]
            task["updated"] = _now_ns()
            self._recount_steps(self.jobs[task["job_id"]])

    def change_job_status(self, job_id: str, status: str, reason: str = "") -> None:
        """Status change through the Manager's state machine (what POST setstatus does)."""
        with self.lock:
            self._job_status_change(self.jobs[job_id], status, reason)

    def change_task_status(self, task_id: str, status: str, reason: str = "") -> None:
        """Status change through the Manager's state machine (what POST tasks/setstatus does)."""
        with self.lock:
            task = self.tasks[task_id]
            task["activity"] = reason
            self._task_status_change(task, status)

    def set_task_progress(self, task_id: str, steps_completed: int) -> None:
        with self.lock:
            task = self.tasks[task_id]
            task["steps_completed"] = min(steps_completed, task["steps_total"])
            task["updated"] = _now_ns()
            self._recount_steps(self.jobs[task["job_id"]])

    def assign_task(self, task_id: str, worker_id: str | None) -> None:
        with self.lock:
            task = self.tasks[task_id]
            task["worker_id"] = worker_id
            if worker_id:
                task["last_touched"] = _now_ns()
                self.workers[worker_id]["task_id"] = task_id

    # -- logs and images

    def append_log(self, task_id: str, text: str | bytes, *, timestamp: bool = False) -> int:
        """Appends to a task's log (adds a newline if missing). Returns the new log size."""
        with self.lock:
            if task_id not in self.tasks:
                raise KeyError(task_id)
            data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
            if timestamp:
                stamp = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
                data = b"".join(f"{stamp} ".encode() + line + b"\n" for line in data.splitlines())
            elif data and not data.endswith(b"\n"):
                data += b"\n"
            log = self.logs.setdefault(task_id, bytearray())
            log.extend(data)
            return len(log)

    def append_log_lines(self, task_id: str, lines: Iterable[str], *, timestamp: bool = False) -> int:
        return self.append_log(task_id, "".join(f"{line}\n" for line in lines), timestamp=timestamp)

    def set_log(self, task_id: str, data: str | bytes | None) -> None:
        with self.lock:
            if data is None:
                self.logs.pop(task_id, None)
            else:
                self.logs[task_id] = bytearray(data.encode() if isinstance(data, str) else data)

    def task_log(self, task_id: str) -> bytes:
        with self.lock:
            return bytes(self.logs.get(task_id, b""))

    def set_last_rendered(self, job_id: str, image: bytes | None = None) -> None:
        """Gives the job last-rendered images (all sizes the same bytes); None removes them."""
        with self.lock:
            self.last_rendered[job_id] = {s: (image or TINY_JPEG) for s in LAST_RENDERED_SUFFIXES}
            self.last_rendered_job = job_id

    def clear_last_rendered(self, job_id: str) -> None:
        with self.lock:
            self.last_rendered.pop(job_id, None)
            if self.last_rendered_job == job_id:
                self.last_rendered_job = None

    # -- workers and tags

    def add_worker(
        self,
        name: str = "worker-1",
        *,
        status: str = "awake",
        can_restart: bool = False,
        platform: str = "linux",
        version: str | None = None,
        supported_task_types: list[str] | None = None,
        tags: list[str] | None = None,
        address: str = "192.0.2.10",
        last_seen: int | float | datetime | None = None,
        worker_id: str | None = None,
    ) -> dict:
        worker = {
            "id": worker_id or _new_uuid(),
            "name": name,
            "status": status,
            "status_change": None,
            "last_seen": self._ns(last_seen),
            "version": version or self.version,
            "can_restart": can_restart,
            "ip_address": address,
            "platform": platform,
            "supported_task_types": list(supported_task_types or ["blender", "ffmpeg", "file-management", "misc"]),
            "tag_ids": list(tags or []),
            "task_id": None,
        }
        with self.lock:
            self.workers[worker["id"]] = worker
        return worker

    def add_tag(self, name: str, description: str | None = None, tag_id: str | None = None) -> dict:
        tag = {"id": tag_id or _new_uuid(), "name": name}
        if description is not None:
            tag["description"] = description
        with self.lock:
            self.tags[tag["id"]] = tag
        return tag

    def apply_worker_status_change(self, worker_id: str) -> None:
        """The worker acknowledges its requested status (what a real Worker does when polling)."""
        with self.lock:
            w = self.workers[worker_id]
            if w["status_change"]:
                w["status"] = w["status_change"]["status"]
                w["status_change"] = None

    # -- job types

    def set_job_type(self, definition: dict) -> dict:
        """Adds/replaces a job type (AvailableJobType dict); computes its etag unless given."""
        d = copy.deepcopy(definition)
        d.setdefault("label", d["name"])
        d.setdefault("settings", [])
        if not d.get("etag"):
            d["etag"] = _job_type_etag(d)
        with self.lock:
            self.job_types[d["name"]] = d
        return d

    def bump_job_type_etag(self, name: str) -> str:
        """Simulates an updated job compiler script: the etag changes."""
        with self.lock:
            jt = self.job_types[name]
            jt["etag"] = hashlib.sha1((jt["etag"] + "+").encode()).hexdigest()
            return jt["etag"]

    # -- variables / paths

    def variable_value(self, name: str, platform: str) -> str | None:
        var = self.variables.get(name)
        if not var:
            return None
        fallback = None
        for v in var.get("values", []):
            if v.get("platform") == platform:
                return v.get("value")
            if v.get("platform") == "all":
                fallback = v.get("value")
        return fallback

    def effective_storage(self) -> str:
        if self.shaman_enabled:
            return self.shared_storage.rstrip("/") + "/jobs"
        return self.shared_storage

    def translate_for_platform(self, path: str, platform: str) -> str:
        """Manager-side path -> the path as seen on `platform`, via two-way variables."""
        for name, var in self.variables.items():
            if not var.get("is_twoway"):
                continue
            mine = self.variable_value(name, self.manager_platform)
            theirs = self.variable_value(name, platform)
            if mine and theirs is not None and path.startswith(mine):
                return theirs + path[len(mine):]
        return path

    def replace_two_way(self, value: str, platform: str) -> str:
        """Submitter's native path -> "{var}/..." (what the Manager does on submit)."""
        if platform == "manager":
            platform = self.manager_platform
        for name, var in self.variables.items():
            if not var.get("is_twoway"):
                continue
            theirs = self.variable_value(name, platform)
            if theirs and value.startswith(theirs):
                return "{" + name + "}" + value[len(theirs):]
        return value

    # -- farm status

    def compute_farm_status(self) -> str:
        with self.lock:
            if self.farm_status:
                return self.farm_status
            workers = [w for w in self.workers.values() if w["status"] not in ("offline", "error")]
            if not workers:
                return "inoperative"
            statuses = {j["status"] for j in self.jobs.values()}
            if "active" in statuses:
                return "active"
            all_asleep = all(w["status"] == "asleep" for w in workers)
            if all_asleep and "queued" in statuses:
                return "waiting"
            if all_asleep:
                return "asleep"
            return "idle"

    # -- internals: state machine (ported from Flamenco's task_state_machine)

    @staticmethod
    def _ns(value: int | float | datetime | None) -> int:
        if value is None:
            return _now_ns()
        if isinstance(value, datetime):
            return int(value.timestamp() * 1e9)
        if isinstance(value, float):
            return int(value * 1e9)
        return int(value)

    @staticmethod
    def _task_status_for_job(job_status: str) -> str:
        return {"completed": "completed", "canceled": "canceled", "failed": "failed",
                "paused": "paused", "active": "queued"}.get(job_status, "queued")

    def _recount_steps(self, job: dict) -> None:
        tasks = self.job_tasks(job["id"])
        job["steps_total"] = sum(t["steps_total"] for t in tasks)
        job["steps_completed"] = sum(t["steps_completed"] for t in tasks)

    def _count(self, job: dict, *statuses: str) -> tuple[int, int]:
        tasks = self.job_tasks(job["id"])
        return sum(1 for t in tasks if t["status"] in statuses), len(tasks)

    def _bulk_task_status(self, job: dict, from_statuses: Iterable[str] | None, to: str, activity: str) -> None:
        now = _now_ns()
        for t in self.job_tasks(job["id"]):
            if from_statuses is None or t["status"] in from_statuses:
                t["status"] = to
                t["activity"] = activity
                t["updated"] = now
                if to == "completed":
                    t["steps_completed"] = t["steps_total"]
                elif to == "queued":
                    t["steps_completed"] = 0
        self._recount_steps(job)

    def _job_status_change(self, job: dict, new: str | None, reason: str) -> None:
        if self.status_change_error:
            raise RuntimeError(self.status_change_error)
        while new and new != job["status"]:
            old = job["status"]
            job["activity"] = f'Changed to status "{new}": {reason}'
            job["status"] = new
            job["updated"] = _now_ns()
            new = self._update_tasks_after_job_status_change(job, old)

    def _update_tasks_after_job_status_change(self, job: dict, old: str) -> str | None:
        status = job["status"]
        if status in ("completed", "canceled", "paused", "active"):
            return None
        if status in ("cancel-requested", "failed"):
            self._bulk_task_status(job, ("active", "queued", "soft-failed"), "canceled",
                                   f'Manager cancelled this task because the job got status "{status}".')
            return "canceled" if status == "cancel-requested" else None
        if status == "pause-requested":
            self._bulk_task_status(job, ("queued", "soft-failed"), "paused",
                                   f'Manager paused this task because the job got status "{status}".')
            active, _ = self._count(job, "active")
            return "paused" if active == 0 else "pause-requested"
        if status == "requeueing":
            msg = f'Queued because job transitioned status from "{old}" to "{status}"'
            if old == "under-construction":
                return None
            if old == "completed":
                self._bulk_task_status(job, None, "queued", msg)
            else:
                self._bulk_task_status(job, ("canceled", "failed", "paused", "soft-failed"), "queued", msg)
            for t in self.job_tasks(job["id"]):
                t["failed_by"] = []
            return "queued"
        if status == "queued":
            done, total = self._count(job, "completed")
            return "completed" if done >= total else None
        return None

    def _task_status_change(self, task: dict, new: str) -> None:
        if self.status_change_error:
            raise RuntimeError(self.status_change_error)
        job = self.jobs[task["job_id"]]
        old = task["status"]
        task["status"] = new
        task["updated"] = _now_ns()
        if new == "completed":
            task["steps_completed"] = task["steps_total"]
        self._recount_steps(job)
        if old != new:
            self.append_log(task["id"], f"task changed status {old} -> {new}", timestamp=True)
        if new == "queued":
            task["failed_by"] = []
            if job["status"] == "completed":
                self._job_status_change(job, "requeueing", "task was queued")
        elif new == "canceled":
            runnable, _ = self._count(job, "active", "queued", "soft-failed")
            if runnable == 0:
                self._job_status_change(job, "canceled", "canceled task was last runnable task of job, canceling job")
            elif self._pausing_complete(job):
                self._job_status_change(job, "paused", "no more active tasks after task cancellation")
        elif new == "failed":
            failed, total = self._count(job, "failed")
            if int(failed / total * 100) >= 10:
                self._job_status_change(job, "failed", "too many tasks failed")
            elif self._pausing_complete(job):
                self._job_status_change(job, "paused", "no more active tasks after task failure")
            elif job["status"] == "queued":
                self._job_status_change(job, "active", "task failed, but not enough to fail the job")
        elif new in ("active", "soft-failed"):
            if job["status"] not in ("active", "cancel-requested"):
                self._job_status_change(job, "active", f"task became {new}")
        elif new == "completed":
            done, total = self._count(job, "completed")
            if done == total:
                self._job_status_change(job, "completed", "all tasks completed")
            elif self._pausing_complete(job):
                self._job_status_change(job, "paused", "no more active tasks after task completion")
            elif job["status"] == "queued":
                self._job_status_change(job, "active", "no more tasks to do")

    def _pausing_complete(self, job: dict) -> bool:
        if job["status"] != "pause-requested":
            return False
        active, _ = self._count(job, "active")
        return active == 0

    def _purge_deleted(self) -> None:
        if not any(j["delete_requested_at"] for j in self.jobs.values()):
            return
        limit = _now_ns() - int(self.delete_delay * 1e9)
        for jid in [j["id"] for j in self.jobs.values()
                    if j["delete_requested_at"] and j["delete_requested_at"] <= limit]:
            self.remove_job(jid)

    # -- internals: job compilation (ported from the shipped job type scripts)

    def _compile(self, sub: dict) -> tuple[dict, list[dict]]:
        jt = self.job_types.get(sub["type"])
        if jt is None:
            raise _CompileError(f'job type "{sub["type"]}" unknown')
        if sub.get("type_etag") and sub["type_etag"] != jt["etag"]:
            raise _EtagMismatch()
        platform = sub["submitter_platform"]
        settings = {k: (self.replace_two_way(v, platform) if isinstance(v, str) else v)
                    for k, v in (sub.get("settings") or {}).items()}
        metadata = {k: self.replace_two_way(v, platform) for k, v in (sub.get("metadata") or {}).items()}
        created = _now_ns()
        if sub["type"] == "simple-blender-render":
            tasks = self._compile_sbr(settings, created)
        elif sub["type"] == "echo-sleep-test":
            tasks = self._compile_echo(settings)
        else:
            tasks = [{"name": "task-1", "task_type": "misc",
                      "commands": [{"name": "echo", "parameters": {"message": sub["name"]}, "total_step_count": 0}]}]
        job = {"name": sub["name"], "type": sub["type"], "priority": sub["priority"], "settings": settings,
               "metadata": metadata, "submitter_platform": platform, "created": created,
               "worker_tag": sub.get("worker_tag") or None,
               "storage": sub.get("storage")}
        return job, tasks

    def _compile_sbr(self, settings: dict, created: int) -> list[dict]:
        fmt = settings.get("format")
        if fmt in ("FFMPEG", "AVI_RAW", "AVI_JPEG"):
            raise _CompileError(f'This job type only renders images, and not "{fmt}"')
        render_output = settings.get("render_output_path")
        if not render_output:
            raise _CompileError("no render_output_path setting!")
        stamp = datetime.fromtimestamp(created / 1e9).strftime("%Y-%m-%d_%H%M%S")
        render_output = re.sub(r"{timestamp}", stamp, str(render_output))
        settings["render_output_path"] = render_output
        pm = _pathmod(render_output)
        render_dir = pm.dirname(render_output)
        chunks = frame_chunker(settings.get("frames"), settings.get("chunk_size"))
        base_args = ["--scene", settings["scene"]] if settings.get("scene") else []
        tasks = []
        for chunk in chunks:
            nframes = len(_frame_range_explode(chunk))
            tasks.append({"name": f"render-{chunk}", "task_type": "blender", "commands": [{
                "name": "blender-render",
                "parameters": {
                    "exe": "{blender}", "exeArgs": "{blenderArgs}", "argsBefore": [],
                    "blendfile": settings.get("blendfile"),
                    "args": base_args + [
                        "--render-output", pm.join(render_dir, pm.basename(render_output)),
                        "--render-format", fmt, "--render-frame", chunk.replace("-", "..")],
                },
                "total_step_count": nframes,
            }]})
        needs_previews = fmt in ("EXR", "MULTILAYER", "OPEN_EXR", "OPEN_EXR_MULTILAYER")
        if not (needs_previews and not settings.get("has_previews")) and settings.get("fps"):
            frames = str(settings.get("frames"))
            if "," in frames:
                singles = frame_chunker(frames, 1)
                frames = f"{singles[0]}-{singles[-1]}"
            blendfile = str(settings.get("blendfile") or "")
            stem = _pathmod(blendfile).splitext(_pathmod(blendfile).basename(blendfile))[0].replace(".flamenco", "")
            ext = ".jpg" if needs_previews else settings.get("image_file_extension", "")
            fps = settings["fps"]
            tasks.append({"name": "preview-video", "task_type": "ffmpeg", "commands": [{
                "name": "frames-to-video",
                "parameters": {
                    "exe": "ffmpeg", "fps": fps, "inputGlob": pm.join(render_dir, f"*{ext}"),
                    "outputFile": pm.join(render_dir, f"{stem}-{frames}.mp4"),
                    "args": ["-c:v", "h264", "-crf", "20", "-g", "18", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
                             "-pix_fmt", "yuv420p", "-r", fps, "-y"],
                },
                "total_step_count": 1,
            }]})
        return tasks

    @staticmethod
    def _compile_echo(settings: dict) -> list[dict]:
        tasks = [{"name": "echo", "task_type": "misc", "commands": [
            {"name": "echo", "parameters": {"message": settings.get("message")}, "total_step_count": 0}]}]
        repeats = settings.get("sleep_repeats")
        n = int(repeats) if isinstance(repeats, (int, float)) and not isinstance(repeats, bool) else 0
        for _ in range(max(0, min(n, 10_000))):
            tasks.append({"name": "sleep", "task_type": "misc", "commands": [
                {"name": "sleep", "parameters": {"duration_in_seconds": settings.get("sleep_duration_seconds")},
                 "total_step_count": 0}]})
        return tasks

    def _store_compiled(self, job_info: dict, tasks: list[dict], status: str) -> dict:
        job = self.add_job(job_info["name"], type=job_info["type"], status=status, priority=job_info["priority"],
                           metadata=job_info["metadata"], settings=job_info["settings"], tasks=0,
                           submitter_platform=job_info["submitter_platform"], worker_tag=job_info["worker_tag"],
                           created=job_info["created"])
        if job_info.get("storage"):
            job["storage"] = job_info["storage"]
        for t in tasks:
            self.add_task(job["id"], t["name"], task_type=t["task_type"], commands=t["commands"], _touch_job=False)
        self._recount_steps(job)
        return job


class _EtagMismatch(Exception):
    pass


# --------------------------------------------------------------------------- requests, faults


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict
    body: bytes
    json: Any
    target: str = ""
    time: float = 0.0
    fault: str | None = None  # kind of the fault applied to it, if any
    status: int | None = None  # status sent (None: no response)


FAULT_KINDS = {
    # kind: allowed keyword arguments (besides `times`)
    "stall": {"seconds"},
    "slow": {"seconds"},
    "status": {"code", "body", "headers", "content_type"},
    "retry_after": {"seconds", "body", "code"},
    "invalid_json": {"body", "code"},
    "wrong_content_type": {"body", "code", "content_type"},
    "reset": {"sent", "abort", "body"},
    "huge": {"size", "chunk_size", "code"},
    "close": set(),
}


@dataclass
class Fault:
    method: str
    path_regex: str
    kind: str
    params: dict
    times: int | None = None
    hits: int = 0
    _regex: re.Pattern = field(default=None, repr=False)  # type: ignore[assignment]

    def matches(self, method: str, path: str) -> bool:
        if self.method not in ("*", "ANY") and self.method != method:
            return False
        return bool(self._regex.fullmatch(path))

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


@dataclass
class _Req:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: _CIDict
    body: bytes
    params: dict = field(default_factory=dict)
    json: Any = None


@dataclass
class _Resp:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict = field(default_factory=dict)


def _json_resp(status: int, obj: Any) -> _Resp:
    return _Resp(status, _go_json(obj), MIME_JSON)


def _api_error(status: int, message: str) -> _Resp:
    """Handler error, like Flamenco's sendAPIError: {code, message}."""
    return _json_resp(status, {"code": status, "message": message})


def _echo_error(status: int, message: str) -> _Resp:
    """Router / request-validator error: {message} only."""
    return _json_resp(status, {"message": message})


def _no_content() -> _Resp:
    return _Resp(204)


# --------------------------------------------------------------------------- the API


class _Api:
    """Request handling: routing via the spec, validation, then one method per operationId."""

    def __init__(self, fm: "FakeManager"):
        self.fm = fm
        self.spec: _Spec = fm.spec
        self.state: FarmState = fm.state
        self.v = version_tuple(fm.version)

    def at_least(self, version: str) -> bool:
        return self.v >= version_tuple(version)

    # -- entry point

    def handle(self, req: _Req) -> _Resp:
        path = req.path
        if path == "/api/v3/openapi3.json":
            if req.method != "GET":
                return _echo_error(405, "Method Not Allowed")
            return _Resp(200, self.spec.json_bytes, MIME_JSON)
        if path.startswith(JOB_FILES_PREFIX + "/"):
            if req.method != "GET":
                return _echo_error(405, "Method Not Allowed")
            with self.state.lock:
                return self.job_file(req)
        try:
            op, params, values = self.spec.route(req.method, path)
        except LookupError as e:
            if str(e) == "405":   # the real Manager (Echo) answers an unknown method on a known path so:
                # 400 up to 3.8, 404 from 3.9 (measured on real 3.5, 3.7, 3.8 and 3.9-beta1 Managers;
                # tests/core/test_fake_matches_real.py)
                return _echo_error(400 if self.v < version_tuple("3.9") else 404, "method not allowed")
            return _echo_error(404, "Not Found")
        req.params = values
        # Path parameters, as the request validator checks them.
        for p in params:
            if p.get("in") != "path":
                continue
            name = p["name"]
            schema = self.spec.merged(p.get("schema", {}))
            value = values.get(name, "")
            # (`format: uuid` is not enforced here: real Managers leave ID checks to their handlers.)
            if schema.get("type") == "integer":
                if not re.fullmatch(r"-?\d+", value):
                    return _echo_error(400, f'parameter "{name}" in path has an error: value {value}: '
                                            f'an invalid integer: invalid syntax')
                values[name] = int(value)
            if "enum" in schema and value not in schema["enum"]:
                return _echo_error(400, f'parameter "{name}" in path has an error: value is not one of the '
                                        f'allowed values {json.dumps(schema["enum"])}')
        # Request body.
        rb = op.get("requestBody")
        if rb:
            content = rb.get("content", {})
            if "application/json" in content:
                err = self._validate_json_body(req, rb, content["application/json"].get("schema", {}))
                if err:
                    return err
        opid = op.get("operationId", "")
        handler: Callable[[_Req], _Resp] | None = getattr(self, f"op_{opid}", None)
        if handler is None:
            return _api_error(501, f"operation {opid} is not implemented by the fake Manager")
        with self.state.lock:
            self.state._purge_deleted()
            return handler(req)

    def _validate_json_body(self, req: _Req, rb: dict, schema: dict) -> _Resp | None:
        if not req.body.strip():
            if rb.get("required"):
                return _echo_error(400, "request body has an error: value is required but missing")
            return None
        ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return _echo_error(400, f'request body has an error: header Content-Type has unexpected value "{ctype}"')
        try:
            req.json = json.loads(req.body)
        except ValueError as e:
            return _echo_error(400, f"request body has an error: failed to decode request body: {e}")
        try:
            self.spec.validate(req.json, schema)
        except _ValidationError as e:
            name = schema.get("$ref", "").rsplit("/", 1)[-1]
            where = f" #/components/schemas/{name}" if name else ""
            return _echo_error(400, f"request body has an error: doesn't match schema{where}: {e}")
        return None

    # -- rendering

    def _prune(self, obj: Any, schema_name: str) -> Any:
        return self.spec.prune(obj, self.spec.schema(schema_name))

    def _task_worker(self, task: dict) -> dict | None:
        wid = task.get("worker_id")
        w = self.state.workers.get(wid) if wid else None
        if w:
            return {"id": w["id"], "name": w["name"], "address": w["ip_address"]}
        if wid:
            return {"id": wid, "name": "", "address": ""}
        if self.at_least("3.7"):
            return {"id": "", "name": "", "address": ""}
        return None

    def render_job(self, job: dict) -> dict:
        out = {
            "name": job["name"],
            "type": job["type"],
            "priority": job["priority"],
            "submitter_platform": "",
            "settings": job["settings"],
            "metadata": job["metadata"],
            "id": job["id"],
            "created": rfc3339(job["created"]),
            "updated": rfc3339(job["updated"]),
            "status": job["status"],
            "activity": job["activity"],
            "steps_completed": job["steps_completed"],
            "steps_total": job["steps_total"],
        }
        storage = job.get("storage") or {}
        if storage.get("shaman_checkout_id"):
            out["storage"] = {"shaman_checkout_id": storage["shaman_checkout_id"]}
        if job.get("worker_tag"):
            out["worker_tag"] = job["worker_tag"]
        if job.get("delete_requested_at"):
            out["delete_requested_at"] = rfc3339(job["delete_requested_at"])
        return self._prune(out, "Job")

    def _task_summary(self, task: dict) -> dict:
        out = {
            "id": task["id"],
            "name": task["name"],
            "status": task["status"],
            "index_in_job": task["index_in_job"],
            "priority": task["priority"],
            "task_type": task["task_type"],
            "updated": rfc3339(task["updated"]),
            "steps_completed": task["steps_completed"],
            "steps_total": task["steps_total"],
        }
        worker = self._task_worker(task)
        if worker is not None:
            out["worker"] = worker
        return out

    def render_task_summary(self, task: dict) -> dict:
        return self._prune(self._task_summary(task), "TaskSummary")

    def render_task(self, task: dict) -> dict:
        out = {
            "id": task["id"],
            "created": rfc3339(task["created"]),
            "updated": rfc3339(task["updated"]),
            "job_id": task["job_id"],
            "index_in_job": task["index_in_job"],
            "name": task["name"],
            "status": task["status"],
            "priority": task["priority"],
            "task_type": task["task_type"],
            "activity": task["activity"],
            "commands": task["commands"],
            "steps_completed": task["steps_completed"],
            "steps_total": task["steps_total"],
            "failed_by_workers": [
                {"id": wid, "name": self.state.workers.get(wid, {}).get("name", ""),
                 "address": self.state.workers.get(wid, {}).get("ip_address", "")}
                for wid in task.get("failed_by", [])],
        }
        worker = self._task_worker(task)
        if worker is not None:
            out["worker"] = worker
        if task.get("last_touched"):
            out["last_touched"] = rfc3339(task["last_touched"])
        return self._prune(out, "Task")

    def _worker_summary(self, w: dict) -> dict:
        out = {"id": w["id"], "name": w["name"], "status": w["status"], "version": w["version"],
               "can_restart": w["can_restart"]}
        if w.get("status_change"):
            out["status_change"] = dict(w["status_change"])
        if w.get("last_seen"):
            out["last_seen"] = rfc3339(w["last_seen"])
        return out

    def render_worker(self, w: dict) -> dict:
        out = self._worker_summary(w)
        out.update({"ip_address": w["ip_address"], "platform": w["platform"],
                    "supported_task_types": w["supported_task_types"]})
        tid = w.get("task_id")
        if tid and tid in self.state.tasks:
            task = self.state.tasks[tid]
            wt = self._task_summary(task)
            wt["job_id"] = task["job_id"]
            out["task"] = wt
        tags = [dict(self.state.tags[t]) for t in w.get("tag_ids", []) if t in self.state.tags]
        if tags:   # left out when there are none, as a real Manager does
            out["tags"] = tags
        return self._prune(out, "Worker")

    def render_job_type(self, jt: dict) -> dict:
        return self._prune(copy.deepcopy(jt), "AvailableJobType")

    def _uuid_param(self, value: str, what: str) -> _Resp | None:
        """The handlers check IDs themselves (a real 3.5 does not enforce its spec's `format: uuid`)."""
        if not _is_uuid(value):
            return _api_error(400, f"{what} ID should be a UUID")
        return None

    def _job_or_error(self, job_id: str) -> tuple[dict | None, _Resp | None]:
        err = self._uuid_param(job_id, "job")
        if err:
            return None, err
        job = self.state.jobs.get(job_id)
        if job is None:
            return None, _api_error(404, "no such job")
        return job, None

    def _task_or_error(self, task_id: str) -> tuple[dict | None, _Resp | None]:
        if not _is_uuid(task_id):
            return None, _api_error(400, "bad task ID")
        task = self.state.tasks.get(task_id)
        if task is None:
            return None, _api_error(404, "no such task")
        return task, None

    def _worker_or_error(self, worker_id: str) -> tuple[dict | None, _Resp | None]:
        err = self._uuid_param(worker_id, "worker")
        if err:
            return None, err
        w = self.state.workers.get(worker_id)
        if w is None:
            return None, _api_error(404, f"worker {worker_id} not found")
        return w, None

    # -- meta

    def op_getVersion(self, req: _Req) -> _Resp:
        v = self.fm.version
        return _json_resp(200, self._prune(
            {"version": v, "shortversion": v, "name": self.state.manager_name, "git": f"v{v}-fake"},
            "FlamencoVersion"))

    def op_getConfiguration(self, req: _Req) -> _Resp:
        return _json_resp(200, self._prune({
            "storageLocation": self.state.shared_storage,
            "shamanEnabled": self.state.shaman_enabled,
            "isFirstRun": self.state.is_first_run,
        }, "ManagerConfiguration"))

    def op_getFarmStatus(self, req: _Req) -> _Resp:
        return _json_resp(200, {"status": self.state.compute_farm_status()})

    def op_getSharedStorage(self, req: _Req) -> _Resp:
        audience, platform = req.params["audience"], req.params["platform"]
        location = self.state.translate_for_platform(self.state.effective_storage(), platform)
        return _json_resp(200, {"location": location, "audience": audience, "platform": platform,
                                "shamanEnabled": self.state.shaman_enabled})

    def op_getVariables(self, req: _Req) -> _Resp:
        audience, platform = req.params["audience"], req.params["platform"]
        out = {}
        for name, var in self.state.variables.items():
            value = None
            for v in var.get("values", []):
                if v.get("audience", "all") not in ("all", audience):
                    continue
                if v.get("platform") == platform:
                    value = v.get("value")
                    break
                if v.get("platform") == "all" and value is None:
                    value = v.get("value")
            if value is not None:
                out[name] = {"value": value, "is_twoway": bool(var.get("is_twoway"))}
        out["jobs"] = {"value": self.state.translate_for_platform(self.state.effective_storage(), platform),
                       "is_twoway": False}
        return _json_resp(200, out)

    # -- job types

    def op_getJobTypes(self, req: _Req) -> _Resp:
        types = [self.render_job_type(jt) for _, jt in sorted(self.state.job_types.items())]
        return _json_resp(200, {"job_types": types})

    def op_getJobType(self, req: _Req) -> _Resp:
        jt = self.state.job_types.get(req.params["typeName"])
        if jt is None:
            return _api_error(404, "no such job type known")
        return _json_resp(200, self.render_job_type(jt))

    # -- jobs

    def _compile_request(self, req: _Req):
        sub = req.json
        try:
            return self.state._compile(sub), None
        except _EtagMismatch:
            return None, _api_error(412, "rejecting job because its settings are outdated, refresh the job type")
        except _CompileError as e:
            return None, _api_error(400, str(e))

    def op_submitJobCheck(self, req: _Req) -> _Resp:
        _compiled, err = self._compile_request(req)
        return err or _no_content()

    def op_submitJob(self, req: _Req) -> _Resp:
        compiled, err = self._compile_request(req)
        if err:
            return err
        job_info, tasks = compiled
        status = "queued"
        if self.at_least("3.6") and req.json.get("initial_status"):
            status = req.json["initial_status"]
        tag = job_info.get("worker_tag")
        if tag and tag not in self.state.tags:
            return _api_error(500, "error persisting job in database")
        job = self.state._store_compiled(job_info, tasks, status)
        return _json_resp(200, self.render_job(job))

    def op_fetchJobs(self, req: _Req) -> _Resp:
        return _json_resp(200, {"jobs": [self.render_job(j) for j in self.state.jobs.values()]})

    _ORDER_COLUMNS = {
        "id": "created", "uuid": "id", "created_at": "created", "updated_at": "updated", "name": "name",
        "job_type": "type", "priority": "priority", "status": "status", "activity": "activity",
        "delete_requested_at": "delete_requested_at",
    }

    def op_queryJobs(self, req: _Req) -> _Resp:
        q = req.json or {}
        jobs = list(self.state.jobs.values())
        if q.get("status_in") is not None:
            jobs = [j for j in jobs if j["status"] in q["status_in"]]

        def json_extract(doc: dict, key: str):
            cur: Any = doc
            for part in key.split("."):  # "$.user.name" is a nested path in SQLite
                if not isinstance(cur, dict) or part not in cur:
                    return None
                cur = cur[part]
            return cur

        def like(value: Any, pattern: str) -> bool:
            if not isinstance(value, str):
                return False
            rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
            return re.fullmatch(rx, value, re.IGNORECASE | re.DOTALL) is not None

        # Flamenco 3.0-3.5 filter "settings" against the metadata column too (an upstream bug).
        for source in ("settings", "metadata"):
            for key, value in (q.get(source) or {}).items():
                if source == "metadata" and isinstance(value, str) and "%" in value:
                    jobs = [j for j in jobs if like(json_extract(j["metadata"], key), value)]
                else:
                    jobs = [j for j in jobs if json_extract(j["metadata"], key) == value]
        for order in reversed([o for o in (q.get("order_by") or []) if o]):
            desc = order.startswith("-")
            col = order.lstrip("+-").strip()
            parts = col.split()
            if len(parts) == 2 and parts[1].lower() in ("asc", "desc"):
                col, desc = parts[0], parts[1].lower() == "desc"
            field_name = self._ORDER_COLUMNS.get(col)
            if field_name is None:
                return _api_error(500, "error querying for jobs: no such column: " + col)
            jobs.sort(key=lambda j: (j.get(field_name) is not None, j.get(field_name) or 0), reverse=desc)
        offset = q.get("offset") or 0
        jobs = jobs[offset:]
        if q.get("limit") is not None:
            jobs = jobs[: q["limit"]]
        return _json_resp(200, {"jobs": [self.render_job(j) for j in jobs]})

    def op_fetchJob(self, req: _Req) -> _Resp:
        job, err = self._job_or_error(req.params["job_id"])
        return err or _json_resp(200, self.render_job(job))

    def op_deleteJob(self, req: _Req) -> _Resp:
        job, err = self._job_or_error(req.params["job_id"])
        if err:
            return err
        if not job["delete_requested_at"]:
            job["delete_requested_at"] = _now_ns()
            job["updated"] = job["delete_requested_at"]
        if self.state.delete_delay <= 0:
            self.state.remove_job(job["id"])
        return _no_content()

    def op_deleteJobWhatWouldItDo(self, req: _Req) -> _Resp:
        job, err = self._job_or_error(req.params["job_id"])
        if err:
            return err
        storage = job.get("storage") or {}
        return _json_resp(200, {"shaman_checkout": bool(self.state.shaman_enabled and storage.get("shaman_checkout_id"))})

    def op_deleteJobMass(self, req: _Req) -> _Resp:
        stamp = (req.json or {}).get("last_updated_max")
        if not stamp:
            return _api_error(400, "invalid format (no last_updated_max)")
        limit = _parse_time_ns(stamp)
        if limit % 1_000_000_000:
            limit = (limit // 1_000_000_000 + 1) * 1_000_000_000
        victims = [j for j in self.state.jobs.values() if j["updated"] <= limit]
        if not victims:
            return _api_error(416, "no jobs modified before timestamp")
        now = _now_ns()
        for j in victims:
            j["delete_requested_at"] = j["delete_requested_at"] or now
            if self.state.delete_delay <= 0:
                self.state.remove_job(j["id"])
        return _no_content()

    def op_setJobStatus(self, req: _Req) -> _Resp:
        job, err = self._job_or_error(req.params["job_id"])
        if err:
            return err
        body = req.json
        try:
            self.state._job_status_change(job, body["status"], body["reason"])
        except RuntimeError:
            return _api_error(500, "unexpected error changing job status")
        return _no_content()

    def op_setJobPriority(self, req: _Req) -> _Resp:
        job, err = self._job_or_error(req.params["job_id"])
        if err:
            return err
        job["priority"] = req.json["priority"]
        job["updated"] = _now_ns()
        return _no_content()

    def op_setJobTag(self, req: _Req) -> _Resp:
        job, err = self._job_or_error(req.params["job_id"])
        if err:
            return err
        body = req.json or {}
        tag_id, name = body.get("id"), body.get("name")
        if tag_id and name:
            return _api_error(400, "give either tag ID or name, not both")
        if not tag_id and not name:
            job["worker_tag"] = None
        else:
            tag = self.state.tags.get(tag_id) if tag_id else next(
                (t for t in self.state.tags.values() if t["name"] == name), None)
            if tag is None:
                return _api_error(422, "no such worker tag")
            job["worker_tag"] = tag["id"]
        job["updated"] = _now_ns()
        return _no_content()

    def op_fetchJobTasks(self, req: _Req) -> _Resp:
        err = self._uuid_param(req.params["job_id"], "job")
        if err:
            return err
        tasks = self.state.job_tasks(req.params["job_id"])
        return _json_resp(200, {"tasks": [self.render_task_summary(t) for t in tasks]})

    def op_fetchJobBlocklist(self, req: _Req) -> _Resp:
        err = self._uuid_param(req.params["job_id"], "job")
        return err or _json_resp(200, [])

    def op_removeJobBlocklist(self, req: _Req) -> _Resp:
        err = self._uuid_param(req.params["job_id"], "job")
        if err:
            return err
        if not req.json:
            return _api_error(400, "empty list of blocklist entries given")
        return _no_content()

    def _last_rendered_info(self, job_id: str) -> dict:
        return {"base": f"{JOB_FILES_PREFIX}/{self._job_dir(job_id)}/last-rendered",
                "suffixes": list(LAST_RENDERED_SUFFIXES)}

    def op_fetchJobLastRenderedInfo(self, req: _Req) -> _Resp:
        job_id = req.params["job_id"]
        err = self._uuid_param(job_id, "job")
        if err:
            return err
        if job_id not in self.state.last_rendered:
            return _no_content()
        return _json_resp(200, self._last_rendered_info(job_id))

    def op_fetchGlobalLastRenderedInfo(self, req: _Req) -> _Resp:
        job_id = self.state.last_rendered_job
        if not job_id or job_id not in self.state.last_rendered:
            return _no_content()
        return _json_resp(200, self._last_rendered_info(job_id))

    # -- tasks

    def op_fetchTask(self, req: _Req) -> _Resp:
        task, err = self._task_or_error(req.params["task_id"])
        return err or _json_resp(200, self.render_task(task))

    def op_setTaskStatus(self, req: _Req) -> _Resp:
        task, err = self._task_or_error(req.params["task_id"])
        if err:
            return err
        task["activity"] = req.json["reason"]
        try:
            self.state._task_status_change(task, req.json["status"])
        except RuntimeError:
            return _api_error(500, "unexpected error changing task status")
        return _no_content()

    def op_fetchTaskLogTail(self, req: _Req) -> _Resp:
        task, err = self._task_or_error(req.params["task_id"])
        if err:
            return err
        log = bytes(self.state.logs.get(task["id"], b""))
        if not log:
            return _no_content()
        if len(log) > LOG_TAIL_SIZE:
            tail = log[-LOG_TAIL_SIZE:]
            nl = tail.find(b"\n")
            if nl >= 0:
                tail = tail[nl + 1:]
            log = tail
        return _Resp(200, log, MIME_TEXT)

    def op_fetchTaskLogInfo(self, req: _Req) -> _Resp:
        task, err = self._task_or_error(req.params["task_id"])
        if err:
            return err
        log = self.state.logs.get(task["id"])
        if not log:
            return _no_content()
        return _json_resp(200, {"task_id": task["id"], "job_id": task["job_id"],
                                "url": f"{JOB_FILES_PREFIX}/{self._task_log_rel(task)}", "size": len(log)})

    # -- workers

    def op_fetchWorkers(self, req: _Req) -> _Resp:
        return _json_resp(200, self._prune(
            {"workers": [self._worker_summary(w) for w in self.state.workers.values()]}, "WorkerList"))

    def op_fetchWorker(self, req: _Req) -> _Resp:
        w, err = self._worker_or_error(req.params["worker_id"])
        return err or _json_resp(200, self.render_worker(w))

    def op_deleteWorker(self, req: _Req) -> _Resp:
        w, err = self._worker_or_error(req.params["worker_id"])
        if err:
            return err
        for t in self.state.tasks.values():
            if t.get("worker_id") == w["id"]:
                t["worker_id"] = None
                if t["status"] == "active":
                    t["status"] = "queued"
        del self.state.workers[w["id"]]
        return _no_content()

    def op_requestWorkerStatusChange(self, req: _Req) -> _Resp:
        w, err = self._worker_or_error(req.params["worker_id"])
        if err:
            return err
        status, lazy = req.json["status"], req.json["is_lazy"]
        if status == "restart" and not w["can_restart"]:
            return _api_error(412, "worker cannot be restarted")
        w["status_change"] = {"status": status, "is_lazy": lazy}
        if self.state.auto_apply_worker_status:
            w["status"] = status
            w["status_change"] = None
        return _no_content()

    def op_setWorkerTags(self, req: _Req) -> _Resp:
        w, err = self._worker_or_error(req.params["worker_id"])
        if err:
            return err
        ids = req.json["tag_ids"]
        missing = [t for t in ids if t not in self.state.tags]
        if missing:
            return _api_error(500, f"error fetching worker tags: {missing[0]} not found")
        w["tag_ids"] = list(ids)
        return _no_content()

    def op_fetchWorkerSleepSchedule(self, req: _Req) -> _Resp:
        w, err = self._worker_or_error(req.params["worker_id"])
        if err:
            return err
        sched = self.state.sleep_schedules.get(w["id"])
        return _json_resp(200, sched) if sched else _no_content()

    def op_setWorkerSleepSchedule(self, req: _Req) -> _Resp:
        w, err = self._worker_or_error(req.params["worker_id"])
        if err:
            return err
        for key in ("start_time", "end_time"):
            if not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", req.json[key]):
                return _api_error(400, f"invalid {key}")
        self.state.sleep_schedules[w["id"]] = dict(req.json)
        return _no_content()

    def op_fetchWorkerTags(self, req: _Req) -> _Resp:
        return _json_resp(200, {"tags": [dict(t) for t in self.state.tags.values()]})

    def op_createWorkerTag(self, req: _Req) -> _Resp:
        body = req.json
        if any(t["name"] == body["name"] for t in self.state.tags.values()):
            return _api_error(500, "error creating worker tag: name already in use")
        tag_id = body.get("id") or _new_uuid()
        if not _is_uuid(tag_id) or tag_id in self.state.tags:
            return _api_error(400, "invalid tag ID")
        tag = self.state.add_tag(body["name"], body.get("description"), tag_id=tag_id)
        return _json_resp(200, dict(tag))

    def _tag_or_error(self, tag_id: str):
        err = self._uuid_param(tag_id, "tag")
        if err:
            return None, err
        tag = self.state.tags.get(tag_id)
        if tag is None:
            return None, _api_error(404, "no such worker tag")
        return tag, None

    def op_fetchWorkerTag(self, req: _Req) -> _Resp:
        tag, err = self._tag_or_error(req.params["tag_id"])
        return err or _json_resp(200, dict(tag))

    def op_updateWorkerTag(self, req: _Req) -> _Resp:
        tag, err = self._tag_or_error(req.params["tag_id"])
        if err:
            return err
        tag["name"] = req.json["name"]
        if "description" in req.json:
            tag["description"] = req.json["description"]
        return _no_content()

    def op_deleteWorkerTag(self, req: _Req) -> _Resp:
        tag, err = self._tag_or_error(req.params["tag_id"])
        if err:
            return err
        del self.state.tags[tag["id"]]
        for w in self.state.workers.values():
            if tag["id"] in w["tag_ids"]:
                w["tag_ids"].remove(tag["id"])
        for j in self.state.jobs.values():
            if j.get("worker_tag") == tag["id"]:
                j["worker_tag"] = None
        return _no_content()

    # -- shaman

    def _shaman_disabled(self) -> _Resp | None:
        if not self.state.shaman_enabled:
            return _api_error(503, "Shaman is disabled")
        return None

    def _shaman(self, req: _Req) -> _Resp:
        """Every Shaman operation: the file-based FakeShaman (tests/fake_shaman.py) under this Manager."""
        err = self._shaman_disabled()
        if err:
            return err
        status, headers, body = self.state.shaman().handle(req.method, req.path, dict(req.headers),
                                                           io.BytesIO(req.body))
        return _Resp(status, body, headers.get("Content-Type"))

    op_shamanCheckoutRequirements = op_shamanFileStoreCheck = op_shamanFileStore = op_shamanCheckout = _shaman

    # -- static job files

    @staticmethod
    def _job_dir(job_id: str) -> str:
        return f"job-{job_id[:4]}/{job_id}"

    def _task_log_rel(self, task: dict) -> str:
        return f"{self._job_dir(task['job_id'])}/task-{task['id']}.txt"

    def _file_bytes(self, rel: str) -> tuple[bytes, str] | None:
        st = self.state
        if rel in st.files:
            ctype = "image/jpeg" if rel.endswith(".jpg") else "text/plain; charset=utf-8" \
                if rel.endswith(".txt") else "application/octet-stream"
            return st.files[rel], ctype
        m = re.fullmatch(r"job-[^/]{4}/([^/]+)/task-([^/]+)\.txt", rel)
        if m and m.group(2) in st.tasks and st.tasks[m.group(2)]["job_id"] == m.group(1):
            log = st.logs.get(m.group(2))
            if log is not None:
                return bytes(log), "text/plain; charset=utf-8"
        m = re.fullmatch(r"job-[^/]{4}/([^/]+)/last-rendered/([^/]+)", rel)
        if m and m.group(2) in st.last_rendered.get(m.group(1), {}):
            return st.last_rendered[m.group(1)][m.group(2)], "image/jpeg"
        return None

    def job_file(self, req: _Req) -> _Resp:
        rel = unquote(req.path[len(JOB_FILES_PREFIX) + 1:])
        found = self._file_bytes(rel)
        if found is None:
            return _echo_error(404, "Not Found")
        data, ctype = found
        total = len(data)
        headers = {"Accept-Ranges": "bytes",
                   "Last-Modified": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())}
        rng = req.headers.get("Range")
        if rng:
            m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", rng)
            if not m or (m.group(1) == "" and m.group(2) == ""):
                return _Resp(416, b"invalid range\n", "text/plain; charset=utf-8",
                             {"Content-Range": f"bytes */{total}"})
            if m.group(1) == "":
                n = int(m.group(2))
                start, end = max(0, total - n), total - 1
            else:
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else total - 1
                end = min(end, total - 1)
            if start >= total or start > end:
                return _Resp(416, b"invalid range: failed to overlap\n", "text/plain; charset=utf-8",
                             {"Content-Range": f"bytes */{total}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
            return _Resp(206, data[start:end + 1], ctype, headers)
        return _Resp(200, data, ctype, headers)


# --------------------------------------------------------------------------- HTTP plumbing


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeFlamencoManager"
    sys_version = ""
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if DEBUG:
            sys.stderr.write("fakemanager: " + (format % args) + "\n")

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        fm = self.server.fake
        split = urlsplit(self.path)
        path = split.path or "/"
        try:
            body = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        headers = _CIDict(self.headers.items())
        parsed = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        rec = Recorded(method=self.command, path=path, query=parse_qs(split.query, keep_blank_values=True),
                       headers=headers, body=body, json=parsed, target=self.path, time=time.time())
        fm._record(rec)
        req = _Req(self.command, path, rec.query, headers, body)
        fault = fm._take_fault(self.command, path)
        if fault is not None:
            rec.fault = fault.kind
            if self._apply_fault(fault, req, rec):
                return
        self._send(self._handle(req), rec)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    def _handle(self, req: _Req) -> _Resp:
        try:
            return self.server.fake._api.handle(req)
        except Exception as e:  # noqa: BLE001 - a fake must answer, like the real one would
            traceback.print_exc()
            return _api_error(500, f"fake Manager internal error: {e}")

    def _send(self, resp: _Resp, rec: Recorded | None = None) -> None:
        if rec is not None:
            rec.status = resp.status
        try:
            self.send_response(resp.status)
            if resp.content_type:
                self.send_header("Content-Type", resp.content_type)
            for k, v in resp.headers.items():
                self.send_header(k, v)
            no_body = resp.status in (204, 304) or 100 <= resp.status < 200
            if not no_body:
                self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if resp.body and not no_body and self.command != "HEAD":
                self.wfile.write(resp.body)
        except OSError:
            self.close_connection = True

    def _hang_up(self, rst: bool = False) -> None:
        self.close_connection = True
        if rst:
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            except OSError:
                pass

    def _apply_fault(self, fault: Fault, req: _Req, rec: Recorded) -> bool:
        """Returns True when the fault took care of the whole exchange."""
        fm = self.server.fake
        p = fault.params
        kind = fault.kind
        if kind == "stall":
            fm._stopping.wait(p.get("seconds"))
            self._hang_up()
            return True
        if kind == "slow":
            if fm._stopping.wait(p.get("seconds", 1.0)):
                self._hang_up()
                return True
            return False
        if kind == "close":
            self._hang_up()
            return True
        if kind == "status":
            code = p.get("code", 500)
            body = p.get("body", _MISSING)
            if body is _MISSING:
                body = {"code": code, "message": f"injected fault: HTTP {code}"}
            raw = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else _go_json(body)
            ctype = p.get("content_type") or (MIME_JSON if not isinstance(body, (bytes, str)) else MIME_TEXT)
            self._send(_Resp(code, raw, ctype, dict(p.get("headers") or {})), rec)
            return True
        if kind == "retry_after":
            code = p.get("code", 503)
            seconds = p.get("seconds", 1)
            body = p.get("body", {"code": code, "message": "database is busy, try again later"})
            raw = body if isinstance(body, bytes) else _go_json(body)
            self._send(_Resp(code, raw, MIME_JSON, {"Retry-After": str(seconds)}), rec)
            return True
        if kind == "invalid_json":
            body = p.get("body", b'{"jobs": [{"id": "8f1c2b9e", "name": "trunc')
            raw = body.encode() if isinstance(body, str) else body
            self._send(_Resp(p.get("code", 200), raw, MIME_JSON), rec)
            return True
        if kind == "wrong_content_type":
            body = p.get("body", "<html><head><title>Sign in</title></head>"
                                 "<body><h1>Proxy authentication required</h1></body></html>")
            raw = body.encode() if isinstance(body, str) else body
            self._send(_Resp(p.get("code", 200), raw, p.get("content_type", "text/html; charset=utf-8")), rec)
            return True
        if kind == "reset":
            self._send_reset(req, rec, p)
            return True
        if kind == "huge":
            self._send_huge(rec, p)
            return True
        raise AssertionError(kind)

    def _send_reset(self, req: _Req, rec: Recorded, p: dict) -> None:
        if "body" in p:
            resp = _Resp(200, p["body"] if isinstance(p["body"], bytes) else _go_json(p["body"]), MIME_JSON)
        else:
            resp = self._handle(req)
            if len(resp.body) < 2:
                resp = _Resp(200, _go_json({"jobs": [], "padding": "x" * 4000}), MIME_JSON)
        sent = p.get("sent")
        sent = len(resp.body) // 2 if sent is None else max(0, min(int(sent), len(resp.body) - 1))
        try:
            rec.status = resp.status
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type or MIME_JSON)
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            self.wfile.write(resp.body[:sent])
            time.sleep(0.05)  # let the bytes reach the client before the RST
        except OSError:
            pass
        self._hang_up(rst=p.get("abort", True))

    def _send_huge(self, rec: Recorded, p: dict) -> None:
        fm = self.server.fake
        size = int(p.get("size", 50 * 1024 * 1024))
        chunk = int(p.get("chunk_size", 64 * 1024))
        prefix, suffix = b'{"jobs":[],"padding":"', b'"}'
        if size < len(prefix) + len(suffix):
            prefix, suffix = b"{}", b""
        pad = max(0, size - len(prefix) - len(suffix))
        try:
            rec.status = p.get("code", 200)
            self.send_response(p.get("code", 200))
            self.send_header("Content-Type", MIME_JSON)
            self.send_header("Content-Length", str(len(prefix) + pad + len(suffix)))
            self.end_headers()
            self.wfile.write(prefix)
            filler = (b"x" if suffix else b" ") * chunk
            while pad > 0:
                if fm._stopping.is_set():
                    self._hang_up()
                    return
                n = min(pad, chunk)
                self.wfile.write(filler[:n])
                pad -= n
            self.wfile.write(suffix)
        except OSError:
            self.close_connection = True


_MISSING = object()


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = False
    request_queue_size = 128

    def __init__(self, fake: "FakeManager"):
        self.fake = fake
        self._fm_lock = threading.Lock()
        self._fm_conns: set[socket.socket] = set()
        self._fm_threads: set[threading.Thread] = set()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # Not HTTPServer.server_bind: that one does a reverse DNS lookup (getfqdn).
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = host, port

    def process_request(self, request, client_address) -> None:
        t = threading.Thread(target=self._fm_run, args=(request, client_address), daemon=True,
                             name=f"fakemanager-conn-{client_address[1]}")
        with self._fm_lock:
            self._fm_conns.add(request)
            self._fm_threads.add(t)
        t.start()

    def _fm_run(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001
            if DEBUG and not self.fake._stopping.is_set():
                self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._fm_lock:
                self._fm_conns.discard(request)
                self._fm_threads.discard(threading.current_thread())

    def handle_error(self, request, client_address) -> None:
        if DEBUG:
            super().handle_error(request, client_address)

    def abort_connections(self, timeout: float) -> None:
        with self._fm_lock:
            conns, threads = list(self._fm_conns), list(self._fm_threads)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))


# --------------------------------------------------------------------------- public class


class FakeManager:
    """A fake Flamenco Manager of the given version on http://127.0.0.1:<ephemeral port>."""

    def __init__(self, version: str = DEFAULT_VERSION, shaman: bool = False, *,
                 spec_dir: str | os.PathLike | None = None, name: str | None = None):
        self.version = version
        self.version_tuple = version_tuple(version)
        self.spec_path = find_spec_file(version, Path(spec_dir) if spec_dir else None)
        self.spec = _Spec(self.spec_path)
        self.state = FarmState(version, shaman)
        if name:
            self.state.manager_name = name
        self.requests: list[Recorded] = []
        self._requests_lock = threading.RLock()
        self._requests_cond = threading.Condition(self._requests_lock)
        self._faults: list[Fault] = []
        self._faults_lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None
        self._api = _Api(self)

    # -- lifecycle

    def start(self) -> "FakeManager":
        if self._server is not None:
            raise RuntimeError("FakeManager already running")
        self._stopping.clear()
        self._server = _Server(self)
        host, port = self._server.server_address[:2]
        self._url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name=f"fakemanager-{port}")
        self._thread.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        """Stops accepting, wakes stalled/slow handlers and drops every open connection."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.abort_connections(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None
        self._thread = None
        if self.state._shaman is not None:
            import shutil
            shutil.rmtree(self.state._shaman.root, ignore_errors=True)
            self.state._shaman = None

    def __enter__(self) -> "FakeManager":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("FakeManager not started")
        return self._url

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("FakeManager not running")
        host, port = self._server.server_address[:2]
        return host, port

    @property
    def port(self) -> int:
        return self.address[1]

    def api_url(self, path: str) -> str:
        """url + path; a path not starting with '/' is taken relative to /api/v3/."""
        return self.url + (path if path.startswith("/") else "/api/v3/" + path)

    def at_least(self, version: str) -> bool:
        return self.version_tuple >= version_tuple(version)

    def has_operation(self, operation_id: str) -> bool:
        return operation_id in self.spec.operation_ids

    # -- requests

    def _record(self, rec: Recorded) -> None:
        with self._requests_cond:
            self.requests.append(rec)
            self._requests_cond.notify_all()

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Requests seen, optionally by method and path (exact, or a full-match regex)."""
        return len(self.find(method, path))

    def find(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        with self._requests_lock:
            reqs = list(self.requests)
        out = []
        for r in reqs:
            if method and r.method != method.upper():
                continue
            if path is not None and r.path != path:
                try:
                    if not re.fullmatch(path, r.path):
                        continue
                except re.error:
                    continue
            out.append(r)
        return out

    def last(self, method: str | None = None, path: str | None = None) -> Recorded | None:
        found = self.find(method, path)
        return found[-1] if found else None

    def clear_requests(self) -> None:
        with self._requests_lock:
            self.requests.clear()

    def wait_for(self, method: str | None = None, path: str | None = None, count: int = 1,
                 timeout: float = 5.0) -> bool:
        """Blocks until `count` matching requests arrived. Returns False on timeout."""
        deadline = time.monotonic() + timeout
        with self._requests_cond:
            while True:
                if len(self.find(method, path)) >= count:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._requests_cond.wait(left)

    # -- faults

    def fault(self, method: str, path_regex: str, kind: str, **kw: Any) -> Fault:
        """Installs a fault for requests whose method matches (``"*"`` = any) and whose path
        (no query) fully matches `path_regex`. ``times=N`` limits it to the next N such requests.
        The first installed, not yet exhausted, matching fault wins.

        Kinds and their options:
          stall(seconds=None)       read the request, never answer; hang up after `seconds`/stop()
          slow(seconds=1.0)         wait, then answer normally
          status(code=500, body={code,message}, headers=None, content_type=None)
                                    body: dict/list -> JSON, str/bytes -> sent as is
          retry_after(seconds=1, code=503, body={code,message})  with a Retry-After header
          invalid_json(body=..., code=200)    application/json that does not parse
          wrong_content_type(body="<html>...", code=200, content_type="text/html; charset=utf-8")
          reset(sent=len/2, abort=True, body=None)  headers + Content-Length + part of the real
                                    answer, then RST (abort=False: a plain FIN instead)
          huge(size=50 MiB, chunk_size=64 KiB, code=200)  valid JSON of exactly `size` bytes
          close()                   hang up without any answer
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)}")
        times = kw.pop("times", None)
        unknown = set(kw) - FAULT_KINDS[kind]
        if unknown:
            raise TypeError(f"fault {kind!r} does not take {sorted(unknown)}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1")
        method = (method or "*").upper()
        f = Fault(method, path_regex, kind, kw, times)
        f._regex = re.compile(path_regex)
        with self._faults_lock:
            self._faults.append(f)
        return f

    def clear_faults(self) -> None:
        with self._faults_lock:
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        with self._faults_lock:
            return list(self._faults)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._faults_lock:
            for f in self._faults:
                if not f.exhausted and f.matches(method, path):
                    f.hits += 1
                    return f
        return None


def iter_versions() -> Iterator[str]:
    """Versions for which a spec is available, oldest first."""
    found = []
    for p in openapi_dir().glob("flamenco-openapi-*.yaml"):
        m = _SPEC_NAME_RE.match(p.name)
        if m:
            found.append((version_tuple(m.group(1)), m.group(1)))
    return iter(v for _, v in sorted(found))
