# SPDX-License-Identifier: GPL-3.0-or-later
"""ManagerClient: every call the extension makes to a Flamenco Manager.

Built on `requests` (Blender ships it). Every request has a (connect, read)
timeout and an overall deadline; bodies are streamed and capped so a broken
or hostile Manager cannot stall or exhaust Blender's helper process.
Idempotent GETs retry boundedly on connection errors and on 503 with
Retry-After; requests that create or change things are never retried.
"""
from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Mapping
from urllib.parse import quote, urlsplit

import requests
import urllib3

from . import errors
from .models import (Job, LastRendered, SharedStorage, Task, TaskLogInfo, TaskSummary, Version, Worker,
                     WorkerTag, from_link, parse_variables)

API = "/api/v3"
MAX_JSON_BYTES = 32 * 1024 * 1024       # large farms: 10,000 jobs ≈ 15 MB of JSON
MAX_TEXT_BYTES = 4 * 1024 * 1024
MAX_IMAGE_BYTES = 16 * 1024 * 1024
MAX_SPEC_BYTES = 4 * 1024 * 1024
GET_RETRIES = 2
MAX_RETRY_AFTER = 5.0
PLATFORMS = ("linux", "windows", "darwin")


@dataclasses.dataclass(frozen=True)
class Connection:
    """How to reach one Manager; built from the add-on preferences."""
    url: str
    timeout: float = 10.0                 # read timeout, seconds
    connect_timeout: float = 5.0
    verify_tls: bool = True
    ca_bundle: str = ""
    ignore_proxy: bool = False
    header_name: str = ""
    header_value: str = dataclasses.field(default="", repr=False)  # never printed

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "Connection":
        return from_link(cls, data)


def check_url(url: str) -> str:
    """The Manager URL, or a ConfigurationError saying what is wrong with it."""
    url = url.strip()
    if not url:
        raise errors.ConfigurationError("No Manager URL set: enter it in the Flamenco Panel preferences")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.ConfigurationError(f"Manager URL must look like http://host:8080, not {url!r}")
    return url.rstrip("/")


@dataclasses.dataclass
class Capabilities:
    """What this Manager can do, detected from its spec rather than its version string."""
    version: Version
    operations: frozenset = frozenset()
    job_statuses: frozenset = frozenset()
    spec_known: bool = False

    def has(self, operation_id: str) -> bool:
        """Case-insensitive: the Manager serves `FetchJobs` where its YAML says `fetchJobs`."""
        return operation_id.lower() in self.operations

    @property
    def can_pause(self) -> bool:
        if self.spec_known:
            return "pause-requested" in self.job_statuses
        numbers = self.version.numbers
        return numbers is None or numbers >= (3, 6)

    @property
    def lists_jobs_with_get(self) -> bool:
        if self.spec_known:
            return self.has("fetchJobs")
        numbers = self.version.numbers
        return numbers is None or numbers >= (3, 6)

    @property
    def has_initial_status(self) -> bool:
        return self.can_pause

    def to_dict(self) -> dict:
        return {"version": dataclasses.asdict(self.version), "operations": sorted(self.operations),
                "job_statuses": sorted(self.job_statuses), "spec_known": self.spec_known}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Capabilities":
        return cls(Version(**data.get("version", {})), frozenset(data.get("operations", ())),
                   frozenset(data.get("job_statuses", ())), bool(data.get("spec_known")))


def capabilities_from_spec(version: Version, spec: Any) -> Capabilities:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("paths"), Mapping):
        return Capabilities(version)
    ops = set()
    for item in spec["paths"].values():
        if isinstance(item, Mapping):
            ops.update(op["operationId"].lower() for op in item.values()
                       if isinstance(op, Mapping) and isinstance(op.get("operationId"), str))
    schemas = spec.get("components", {}).get("schemas", {}) if isinstance(spec.get("components"), Mapping) else {}
    statuses = schemas.get("JobStatus", {}).get("enum", []) if isinstance(schemas, Mapping) else []
    return Capabilities(version, frozenset(ops), frozenset(s for s in statuses if isinstance(s, str)), True)


_CAPABILITIES: dict[str, Capabilities] = {}


def _http_error(response: requests.Response, body: bytes) -> errors.ManagerHTTPError:
    """Takes the message from either error shape: `{code, message}` or `{message}`."""
    detail = ""
    try:
        payload = json.loads(body.decode("utf-8", "replace")) if body else None
        if isinstance(payload, Mapping):
            detail = str(payload.get("message", "")).strip()
    except ValueError:
        pass
    if not detail:
        detail = response.reason or "error"
    detail = detail[:300]
    status = response.status_code
    cls = errors.JobTypeStale if status == 412 else errors.ManagerHTTPError
    if status == 412:
        detail = f"the job type changed on the Manager ({detail})"
    return cls(f"Manager answered {status}: {detail}", status=status)


class ManagerClient:
    """One requests session per Manager URL."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.base = check_url(connection.url)
        session = requests.Session()
        session.trust_env = not connection.ignore_proxy
        session.verify = (connection.ca_bundle or True) if connection.verify_tls else False
        session.headers["User-Agent"] = "flamenco-panel"
        if connection.header_name.strip():
            try:   # checked here, without echoing it: an HTTP library error would quote the value
                connection.header_name.strip().encode("ascii")
                connection.header_value.encode("latin-1")
            except UnicodeEncodeError:
                raise errors.ConfigurationError("The extra header's name or value has characters HTTP headers "
                                                "cannot carry; use plain ASCII") from None
            session.headers[connection.header_name.strip()] = connection.header_value
        self.session = session

    def __repr__(self) -> str:
        return f"ManagerClient({self.base!r})"

    def close(self) -> None:
        self.session.close()

    # --- transport -------------------------------------------------------------------------

    def request(self, method: str, path: str, *, body: Any = None, params: Mapping | None = None,
                expect: str = "json", max_bytes: int = MAX_JSON_BYTES, headers: Mapping | None = None,
                data: Any = None, ok_statuses: tuple = (200, 201, 204, 206)) -> tuple[int, Any, Mapping]:
        """(status, parsed body, response headers). `expect` is json | text | bytes | none."""
        retries = GET_RETRIES if method == "GET" else 0
        attempt = 0
        while True:
            try:
                return self._request_once(method, path, body, params, expect, max_bytes, headers, data,
                                          ok_statuses)
            except errors.ManagerHTTPError as ex:
                retry_after = getattr(ex, "retry_after", None)
                if ex.status != 503 or retry_after is None or attempt >= retries:
                    raise
                time.sleep(retry_after)
            except errors.ManagerUnreachable:
                if attempt >= retries:
                    raise
                time.sleep(0.2 * (attempt + 1))
            attempt += 1

    def _request_once(self, method, path, body, params, expect, max_bytes, headers, data, ok_statuses):
        url = self.base + path   # always this Manager: paths come from here, never whole URLs
        conn = self.connection
        timeout = (conn.connect_timeout, conn.timeout)
        # The read timeout is per socket read; the deadline bounds a Manager that drips bytes.
        deadline = time.monotonic() + conn.connect_timeout + conn.timeout * 3
        try:
            # verify passed per call: with trust_env, requests would let REQUESTS_CA_BUNDLE override the session's
            with self.session.request(method, url, json=body, params=params, timeout=timeout, stream=True,
                                      headers=headers, data=data, allow_redirects=False,
                                      verify=self.session.verify) as response:
                content = self._read_capped(response, max_bytes, deadline)
        except requests.exceptions.SSLError as ex:
            raise errors.ManagerUnreachable(
                f"TLS check failed for {self.base}: set a CA bundle in the preferences if the Manager "
                f"uses its own certificate ({type(ex).__name__})") from None
        except requests.exceptions.ConnectTimeout:
            raise errors.ManagerTimeout(f"Manager at {self.base} did not accept a connection within "
                                        f"{conn.connect_timeout:g} s") from None
        except (requests.exceptions.ReadTimeout, TimeoutError, urllib3.exceptions.ReadTimeoutError):
            raise errors.ManagerTimeout(f"Manager at {self.base} did not answer within {conn.timeout:g} s") from None
        except requests.exceptions.ProxyError:
            raise errors.ManagerUnreachable(f"Proxy refused the connection to {self.base}: try \"Ignore system "
                                            "proxy\" in the preferences") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError, urllib3.exceptions.HTTPError, OSError) as ex:
            raise errors.ManagerUnreachable(_connection_message(self.base, ex)) from None
        except requests.exceptions.RequestException as ex:
            raise errors.ManagerUnreachable(f"Request to {self.base} failed ({type(ex).__name__})") from None

        status = response.status_code
        if status not in ok_statuses:
            error = _http_error(response, content)
            if status == 503:
                error.retry_after = _retry_after(response.headers.get("Retry-After"))
            raise error
        if status == 204 or expect == "none":
            return status, None, response.headers
        if expect == "bytes":
            return status, content, response.headers
        if expect == "text":
            return status, content.decode("utf-8", "replace"), response.headers
        ctype = response.headers.get("Content-Type", "")
        if "json" not in ctype:
            raise errors.MalformedResponse(f"{self.base}{path} answered with {ctype or 'no content type'}, "
                                           "not JSON: is this URL a Flamenco Manager?")
        try:
            return status, json.loads(content), response.headers
        except ValueError:
            raise errors.MalformedResponse(f"{self.base}{path} answered with invalid JSON") from None

    @staticmethod
    def _read_capped(response: requests.Response, max_bytes: int, deadline: float) -> bytes:
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise errors.MalformedResponse(f"Manager's answer is too large ({int(length) // 1024 // 1024} MB)")
        chunks, size = [], 0
        for chunk in _pieces(response):
            size += len(chunk)
            if size > max_bytes:
                raise errors.MalformedResponse(f"Manager's answer is too large (over {max_bytes // 1024 // 1024} MB)")
            if time.monotonic() > deadline:
                raise errors.ManagerTimeout("Manager is sending its answer too slowly")
            chunks.append(chunk)
        return b"".join(chunks)

    def get_json(self, path: str, **kw) -> Any:
        return self.request("GET", API + path, **kw)[1]

    def post(self, path: str, body: Any, **kw) -> Any:
        return self.request("POST", API + path, body=body, **kw)[1]

    # --- version and capabilities ----------------------------------------------------------

    def version(self) -> Version:
        try:
            payload = self.get_json("/version")
        except errors.MalformedResponse as ex:
            raise errors.NotAManager(f"{self.base} does not look like a Flamenco Manager ({ex.message})") from None
        except errors.ManagerHTTPError as ex:
            if ex.no_such_operation:
                raise errors.NotAManager(f"{self.base} does not look like a Flamenco Manager "
                                         f"(no /api/v3/version)") from None
            raise
        if not isinstance(payload, Mapping) or not payload.get("version") and not payload.get("shortversion"):
            raise errors.NotAManager(f"{self.base} does not look like a Flamenco Manager")
        version = Version.from_api(payload)
        numbers = version.numbers
        if numbers is not None and numbers < (3, 0):
            raise errors.NotAManager(f"Flamenco Manager {version.shortversion} is too old; Flamenco Panel "
                                     "needs Manager 3 (tested with 3.5 to 3.9)")
        return version

    def capabilities(self, refresh: bool = False, version: Version | None = None) -> Capabilities:
        """Cached per URL; detected from the operations the Manager's spec lists. With `version` (just
        fetched), detected again when the cached detection was for another version (an upgrade)."""
        cached = _CAPABILITIES.get(self.base)
        if not refresh and cached is not None and (version is None or cached.version == version):
            return cached
        version = version or self.version()
        try:
            spec = self.request("GET", API + "/openapi3.json", max_bytes=MAX_SPEC_BYTES)[1]
            caps = capabilities_from_spec(version, spec)
        except (errors.ManagerHTTPError, errors.MalformedResponse) as ex:
            caps = Capabilities(version)
            if not (isinstance(ex, errors.ManagerHTTPError) and ex.no_such_operation):
                return caps   # a passing failure: detect again next time rather than keep this guess
        _CAPABILITIES[self.base] = caps
        return caps

    def farm_status(self) -> str:
        try:
            payload = self.get_json("/status")
        except errors.ManagerHTTPError as ex:
            if ex.no_such_operation:  # before 3.5
                return "unknown"
            raise
        return str(payload.get("status", "unknown")) if isinstance(payload, Mapping) else "unknown"

    def configuration(self) -> dict:
        payload = self.get_json("/configuration")
        return dict(payload) if isinstance(payload, Mapping) else {}

    def shared_storage(self, platform: str) -> SharedStorage:
        return SharedStorage.from_api(self.get_json(f"/configuration/shared-storage/users/{_platform(platform)}"))

    def variables(self, platform: str) -> dict:
        return parse_variables(self.get_json(f"/configuration/variables/users/{_platform(platform)}"))

    # --- job types and submission ----------------------------------------------------------

    def job_types(self) -> list[dict]:
        """Raw AvailableJobType dicts; core.jobtypes parses them."""
        payload = self.get_json("/jobs/types")
        types = payload.get("job_types") if isinstance(payload, Mapping) else None
        return [t for t in types if isinstance(t, Mapping)] if isinstance(types, list) else []

    def job_type(self, name: str) -> dict:
        payload = self.get_json(f"/jobs/type/{_seg(name)}")
        if not isinstance(payload, Mapping):
            raise errors.MalformedResponse(f"Job type {name!r}: unexpected answer")
        return dict(payload)

    def check_job(self, submitted: Mapping) -> None:
        """POST /jobs/check: 204 when the Manager would accept the job; raises JobTypeStale on 412."""
        self.request("POST", API + "/jobs/check", body=dict(submitted), expect="none")

    def submit_job(self, submitted: Mapping) -> Job:
        """POST /jobs, exactly once (never retried: it creates a job)."""
        return Job.from_api(self.post("/jobs", dict(submitted)))

    # --- jobs and tasks --------------------------------------------------------------------

    def jobs(self) -> list[Job]:
        """All jobs: GET /jobs on 3.6+, POST /jobs/query on 3.5 (also when GET /jobs is not there)."""
        caps = self.capabilities()
        if caps.lists_jobs_with_get:
            try:
                return _parse_jobs(self.get_json("/jobs"))
            except errors.ManagerHTTPError as ex:
                if not ex.no_such_operation:
                    raise
        return _parse_jobs(self.request("POST", API + "/jobs/query", body={})[1])

    def job(self, job_id: str) -> Job:
        return Job.from_api(self.get_json(f"/jobs/{_seg(job_id)}"))

    def job_tasks(self, job_id: str) -> list[TaskSummary]:
        payload = self.get_json(f"/jobs/{_seg(job_id)}/tasks")
        tasks = payload.get("tasks") if isinstance(payload, Mapping) else None
        return [TaskSummary.from_api(t) for t in tasks if isinstance(t, Mapping)] if isinstance(tasks, list) else []

    def task(self, task_id: str) -> Task:
        return Task.from_api(self.get_json(f"/tasks/{_seg(task_id)}"))

    def set_job_status(self, job_id: str, status: str, reason: str) -> None:
        self.request("POST", API + f"/jobs/{_seg(job_id)}/setstatus", body={"status": status, "reason": reason},
                     expect="none")

    def set_job_priority(self, job_id: str, priority: int) -> None:
        if not 0 <= int(priority) <= 100:
            raise errors.ConfigurationError("Priority must be between 0 and 100")
        self.request("POST", API + f"/jobs/{_seg(job_id)}/setpriority", body={"priority": int(priority)},
                     expect="none")

    def delete_job(self, job_id: str) -> None:
        self.request("DELETE", API + f"/jobs/{_seg(job_id)}", expect="none")

    def set_task_status(self, task_id: str, status: str, reason: str) -> None:
        self.request("POST", API + f"/tasks/{_seg(task_id)}/setstatus", body={"status": status, "reason": reason},
                     expect="none")

    # --- logs ------------------------------------------------------------------------------

    def task_log_tail(self, task_id: str) -> str:
        """The last ≤2 KiB of the task log; "" when there is none (204)."""
        status, text, _ = self.request("GET", API + f"/tasks/{_seg(task_id)}/logtail", expect="text",
                                       max_bytes=MAX_TEXT_BYTES)
        return text or ""

    def task_log_info(self, task_id: str) -> TaskLogInfo | None:
        status, payload, _ = self.request("GET", API + f"/tasks/{_seg(task_id)}/log")
        return None if status == 204 or payload is None else TaskLogInfo.from_api(payload)

    def read_task_log(self, task_id: str, offset: int = 0, max_bytes: int = MAX_TEXT_BYTES) -> tuple[bytes, int, int]:
        """(bytes, start, end): only what was added since `offset`.

        Uses a Range request; if the Manager ignores it (200), slices the full body. `start`
        differs from `offset` when the log shrank (task requeued: read from zero) or when more
        than `max_bytes` was added (only the newest part is read).
        """
        info = self.task_log_info(task_id)
        if info is None or not info.url:
            return b"", 0, 0
        if info.size < offset:
            offset = 0
        if info.size == offset:
            return b"", offset, offset
        start = max(offset, info.size - max_bytes)
        status, data, headers = self.request("GET", _host_relative(info.url), expect="bytes",
                                             headers={"Range": f"bytes={start}-"}, max_bytes=max_bytes + 65536,
                                             ok_statuses=(200, 206))
        data = data or b""
        if status == 200:
            data = data[start:]
        return data, start, start + len(data)

    # --- workers ---------------------------------------------------------------------------

    def workers(self) -> list[Worker]:
        payload = self.get_json("/worker-mgt/workers")
        items = payload.get("workers") if isinstance(payload, Mapping) else None
        return [Worker.from_api(w) for w in items if isinstance(w, Mapping)] if isinstance(items, list) else []

    def worker(self, worker_id: str) -> Worker:
        return Worker.from_api(self.get_json(f"/worker-mgt/workers/{_seg(worker_id)}"))

    def set_worker_status(self, worker_id: str, status: str, is_lazy: bool) -> None:
        self.request("POST", API + f"/worker-mgt/workers/{_seg(worker_id)}/setstatus",
                     body={"status": status, "is_lazy": bool(is_lazy)}, expect="none")

    def worker_tags(self) -> list[WorkerTag]:
        try:
            payload = self.get_json("/worker-mgt/tags")
        except errors.ManagerHTTPError as ex:
            if ex.no_such_operation:  # before 3.3
                return []
            raise
        items = payload.get("tags") if isinstance(payload, Mapping) else None
        return [WorkerTag.from_api(t) for t in items if isinstance(t, Mapping)] if isinstance(items, list) else []

    # --- last rendered ---------------------------------------------------------------------

    def last_rendered(self, job_id: str) -> LastRendered | None:
        status, payload, _ = self.request("GET", API + f"/jobs/{_seg(job_id)}/last-rendered")
        return None if status == 204 or payload is None else LastRendered.from_api(payload)

    def last_rendered_image(self, info: LastRendered, suffix: str = "") -> bytes:
        return self.request("GET", _host_relative(info.url(suffix)), expect="bytes", max_bytes=MAX_IMAGE_BYTES)[1]


def _pieces(response: requests.Response):
    """The body as it arrives: with urllib3 2, whatever one socket read gives (so the overall deadline is
    checked even when a Manager drips bytes); else requests' fixed-size chunks."""
    raw = response.raw
    if not hasattr(raw, "read1"):
        yield from response.iter_content(64 * 1024)
        return
    while True:
        piece = raw.read1(64 * 1024, decode_content=True)
        if not piece:
            return
        yield piece


def _parse_jobs(payload: Any) -> list[Job]:
    jobs = payload.get("jobs") if isinstance(payload, Mapping) else None
    if not isinstance(jobs, list):
        raise errors.MalformedResponse("Manager's job list has no 'jobs'")
    return [Job.from_api(j) for j in jobs if isinstance(j, Mapping)]


def _seg(value: str) -> str:
    """An id as one URL path segment: ids from anywhere can never walk the API."""
    return quote(str(value), safe="")


def _platform(platform: str) -> str:
    if platform not in PLATFORMS:
        raise errors.ConfigurationError(f"Unknown platform {platform!r}")
    return platform


def _host_relative(url: str) -> str:
    """Manager-given URLs are host-relative; refuse absolute ones so nothing leaves this Manager."""
    if "://" in url or url.startswith("//"):
        raise errors.MalformedResponse("Manager gave a URL to another host; refusing to follow it")
    return url if url.startswith("/") else "/" + url


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, min(MAX_RETRY_AFTER, float(value))) if value is not None else None
    except ValueError:
        return None


def _connection_message(base: str, ex: Exception) -> str:
    text = str(ex)
    if "Connection refused" in text or "NewConnectionError" in text:
        return f"Cannot connect to the Manager at {base}: is it running, and is the URL right?"
    if "Name or service not known" in text or "getaddrinfo" in text or "nodename nor servname" in text:
        return f"Cannot find the host of {base}: check the Manager URL"
    if "reset" in text.lower() or "IncompleteRead" in text or "RemoteDisconnected" in text or "aborted" in text.lower():
        return f"The Manager at {base} closed the connection mid-answer; try again"
    return f"Cannot reach the Manager at {base} ({type(ex).__name__})"

