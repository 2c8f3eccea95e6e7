# SPDX-License-Identifier: GPL-3.0-or-later
"""Shaman: send a job's files to the Manager's content-addressed store and check them out.

The protocol (Manager 3.x, `shaman*` operations in the OpenAPI spec):
1. POST /shaman/checkout/requirements `{files: [{sha, size, path}]}` → the files the Manager
   does not have yet, each `unknown` (upload it) or `uploading` (someone else is on it).
2. POST /shaman/files/{sha}/{size} per needed file, body streamed from disk:
   204 stored, 208 already there, 417 size/checksum mismatch, 425 "defer, someone else uploads".
3. POST /shaman/checkout/create `{files, checkoutPath}` → `{checkoutPath}`; the Manager may
   change the path to make it unique. The spec says 409 = path taken, 424 = files missing; a real
   Manager adds a random suffix to a taken path and answers missing files with a 500.

Files are hashed once and remembered in a `HashCache` (path, size, mtime_ns), so a resubmit
of an unchanged project hashes nothing and uploads nothing. Uploads stream from disk with a
per-read timeout; no upload is retried beyond the protocol's own rules.
"""
from __future__ import annotations

import base64
import collections
import dataclasses
import hashlib
import json
import os
import random
import string
import tempfile
import time
from typing import Any, Callable, Iterable, Mapping

import requests

from . import client as client_module
from . import errors
from .client import API, ManagerClient

Progress = Callable[[dict], None]
ShouldAbort = Callable[[], bool]

CHUNK = 1024 * 1024
HASH_CACHE_FILE = "shaman-hashes.json"
HASH_CACHE_VERSION = 1
MAX_CACHE_ENTRIES = 50_000
RACY_SECONDS = 3.0          # a file changed this recently may change again within its mtime granularity
MAX_DEFERRALS = 3           # per file; after that it is uploaded without offering to defer
DEFER_WAIT_SECONDS = 1.0    # pause when only deferred files are left (grows per round, capped)
MAX_DEFER_WAIT_SECONDS = 5.0
MAX_CHECKOUT_ATTEMPTS = 3   # 409 "path in use": retries with a random suffix
MAX_ERROR_BODY = 64 * 1024
PROGRESS_INTERVAL = 0.1


class ShamanError(errors.FlamencoError):
    """The Shaman protocol could not complete (file keeps changing, Manager keeps refusing)."""


@dataclasses.dataclass
class ShamanResult:
    checkout_path: str
    """As the Manager accepted it: use it for `storage.shaman_checkout_id` and the blend file path."""
    bytes_uploaded: int
    """Bytes this upload sent and the Manager stored (0 when it had everything already)."""
    files_uploaded: int
    files_total: int
    """Files in the checkout."""
    bytes_total: int = 0
    """Bytes of distinct content in the checkout (what an empty Manager would need)."""


@dataclasses.dataclass
class _File:
    path: str       # absolute local path
    rel: str        # path in the checkout, forward slashes
    sha: str = ""
    size: int = 0

    @property
    def key(self) -> tuple[str, int]:
        return self.sha, self.size

    def spec(self) -> dict:
        return {"sha": self.sha, "size": self.size, "path": self.rel}


# --------------------------------------------------------------------------- hashing


def sha256_file(path: str, chunk: int = CHUNK, on_chunk: Callable[[int], None] | None = None) -> str:
    """Hex SHA-256 of a file, read in `chunk`-sized pieces (never the whole file in memory).

    `on_chunk(n)` is called after each piece with its length; it may raise to stop.
    """
    digest = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while True:
            n = fh.readinto(buf)
            if not n:
                return digest.hexdigest()
            digest.update(view[:n])
            if on_chunk:
                on_chunk(n)


class HashCache:
    """SHA-256 per (absolute path, size, mtime_ns), kept in a small JSON file.

    A missing or corrupt file just means an empty cache; writes are atomic (temp file +
    rename) so two Blenders saving at once leave one valid file. Files modified in the last
    few seconds are hashed but not remembered: on file systems with coarse timestamps a
    second change could keep the same size and mtime, and a stale hash would make the farm
    render old content. `location=None` keeps the cache in memory only.
    """

    def __init__(self, location: str | os.PathLike | None = None, max_entries: int = MAX_CACHE_ENTRIES) -> None:
        """`location`: a folder (the file is `shaman-hashes.json` in it) or the `.json` file itself."""
        text = os.fspath(location) if location else ""
        self.file = (text if text.endswith(".json") else os.path.join(text, HASH_CACHE_FILE)) if text else None
        self.max_entries = max_entries
        self.entries: dict[str, list] = {}    # path → [size, mtime_ns, sha, last used]
        self.dirty = False
        self.hits = 0
        self.misses = 0
        self._load()

    def _load(self) -> None:
        if not self.file:
            return
        try:
            with open(self.file, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return
        entries = data.get("entries") if isinstance(data, dict) and data.get("version") == HASH_CACHE_VERSION else None
        if not isinstance(entries, dict):
            return
        for path, entry in entries.items():
            if (isinstance(entry, list) and len(entry) == 4 and all(isinstance(v, int) for v in entry[:2])
                    and isinstance(entry[2], str) and len(entry[2]) == 64 and isinstance(entry[3], (int, float))):
                self.entries[path] = entry

    def lookup(self, path: str, st: os.stat_result) -> str | None:
        entry = self.entries.get(os.path.abspath(path))
        if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            entry[3] = int(time.time())
            self.dirty = True
            return entry[2]
        return None

    def store(self, path: str, st: os.stat_result, sha: str) -> None:
        if time.time() - st.st_mtime < RACY_SECONDS:
            self.entries.pop(os.path.abspath(path), None)
            return
        self.entries[os.path.abspath(path)] = [st.st_size, st.st_mtime_ns, sha, int(time.time())]
        self.dirty = True

    def checksum(self, path: str, on_chunk: Callable[[int], None] | None = None,
                 use_cache: bool = True) -> tuple[str, int]:
        """(sha256, size) of the file as it is now; from the cache when it is unchanged."""
        st = os.stat(path)
        if use_cache:
            sha = self.lookup(path, st)
            if sha:
                self.hits += 1
                if on_chunk:
                    on_chunk(st.st_size)
                return sha, st.st_size
        self.misses += 1
        for _attempt in range(2):
            sha = sha256_file(path, on_chunk=on_chunk)
            after = os.stat(path)
            if (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns):
                self.store(path, after, sha)
                return sha, after.st_size
            st = after
        raise ShamanError(f"{path} kept changing while it was being read; try again once it is saved")

    def save(self) -> None:
        """Write the cache if it changed; failures are ignored (it is only an optimisation)."""
        if not self.file or not self.dirty:
            return
        if len(self.entries) > self.max_entries:
            newest = sorted(self.entries.items(), key=lambda kv: kv[1][3], reverse=True)[: self.max_entries]
            self.entries = dict(newest)
        folder = os.path.dirname(self.file)
        try:
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".shaman-hashes-", suffix=".tmp", dir=folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump({"version": HASH_CACHE_VERSION, "entries": self.entries}, fh, separators=(",", ":"))
                os.replace(tmp, self.file)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            return
        self.dirty = False


# --------------------------------------------------------------------------- upload


def upload(client: ManagerClient, files: Iterable[tuple[str, str]], checkout_path: str, cache: HashCache,
           progress: Progress | None = None, should_abort: ShouldAbort | None = None) -> ShamanResult:
    """Hash, upload what the Manager lacks, and create the checkout. Returns the accepted path.

    `files` are (absolute local path, path inside the checkout). `progress(dict)` gets
    `{phase, files_done, files_total, bytes_done, bytes_total, current}` with phases hashing,
    checking, uploading, checkout, done; it may raise `errors.Aborted` (as `should_abort()`
    may return True) to stop: nothing is checked out then.
    """
    tracker = _Tracker(progress, should_abort)
    checkout_path = _check_checkout_path(checkout_path)
    entries = _check_files(files)
    try:
        _hash_all(entries, cache, tracker)
    finally:
        cache.save()
    session = _Session(client, entries, cache, tracker)
    session.upload_missing()
    accepted = session.checkout(checkout_path)
    tracker.update(phase="done", current="")
    return ShamanResult(checkout_path=accepted, bytes_uploaded=session.bytes_uploaded,
                        files_uploaded=session.files_uploaded, files_total=len(entries),
                        bytes_total=sum(size for _sha, size in {e.key for e in entries}))


def file_status(client: ManagerClient, sha: str, size: int) -> str:
    """`unknown`, `uploading` or `stored`: the Manager's view of one file."""
    payload = client.request("GET", f"{API}/shaman/files/{sha}/{int(size)}")[1]
    return str(payload.get("status", "unknown")) if isinstance(payload, Mapping) else "unknown"


class _Tracker:
    """Progress dicts, throttled; raises errors.Aborted when asked to stop."""

    def __init__(self, progress: Progress | None, should_abort: ShouldAbort | None) -> None:
        self.progress = progress
        self.should_abort = should_abort
        self.state = {"phase": "hashing", "files_done": 0, "files_total": 0, "bytes_done": 0, "bytes_total": 0,
                      "current": ""}
        self.last_sent = 0.0

    def update(self, force: bool = True, **changes: Any) -> None:
        self.state.update(changes)
        now = time.monotonic()
        if not force and now - self.last_sent < PROGRESS_INTERVAL:
            return
        self.last_sent = now
        self.check_abort()
        if self.progress is not None:
            self.progress(dict(self.state))

    def check_abort(self) -> None:
        if self.should_abort is not None and self.should_abort():
            raise errors.Aborted("Upload aborted")

    def add_bytes(self, n: int) -> None:
        self.update(force=False, bytes_done=self.state["bytes_done"] + n)


def _check_checkout_path(path: str) -> str:
    text = str(path).replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts or text.startswith("/") or ".." in parts or ":" in parts[0]:
        raise errors.ConfigurationError(f"Shaman checkout path {path!r} must be a relative path without '..'")
    return "/".join(parts)


def _check_files(files: Iterable[tuple[str, str]]) -> list[_File]:
    entries: list[_File] = []
    seen: dict[str, str] = {}
    for local, rel in files:
        text = str(rel).replace("\\", "/")
        parts = [p for p in text.split("/") if p not in ("", ".")]
        if not parts or text.startswith("/") or ".." in parts or ":" in parts[0]:
            raise errors.ConfigurationError(f"Path in the checkout {rel!r} must be relative, without '..'")
        rel_clean = "/".join(parts)
        local_abs = os.path.abspath(local)
        if rel_clean in seen and seen[rel_clean] != local_abs:
            raise errors.ConfigurationError(f"Two files want the same place in the checkout: {rel_clean}")
        if rel_clean not in seen:
            seen[rel_clean] = local_abs
            entries.append(_File(local_abs, rel_clean))
    return entries


def _hash_all(entries: list[_File], cache: HashCache, tracker: _Tracker) -> None:
    sizes: dict[str, int] = {}
    for e in entries:
        try:
            sizes.setdefault(e.path, os.stat(e.path).st_size)
        except OSError as ex:
            raise ShamanError(f"Cannot read {e.path}: {ex.strerror or ex}") from None
    tracker.update(phase="hashing", files_done=0, files_total=len(entries), bytes_done=0,
                   bytes_total=sum(sizes.values()))
    hashed: dict[str, tuple[str, int]] = {}
    for i, e in enumerate(entries):
        tracker.update(force=False, files_done=i, current=e.rel)
        if e.path not in hashed:
            hashed[e.path] = cache.checksum(e.path, on_chunk=tracker.add_bytes)
        e.sha, e.size = hashed[e.path]
    tracker.update(files_done=len(entries), current="")


class _FileChanged(Exception):
    """The file got shorter than when it was hashed (raised while streaming it)."""


class _Body:
    """A file as a request body: exactly `size` bytes, streamed, with progress and abort.

    `requests` takes the Content-Length from `__len__`; urllib3 reads it in small blocks.
    """

    def __init__(self, fh, size: int, on_bytes: Callable[[int], None]) -> None:
        self.fh = fh
        self.size = size
        self.sent = 0
        self.on_bytes = on_bytes

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.sent
        if left <= 0:
            return b""
        data = self.fh.read(left if n is None or n < 0 else min(n, left))
        if not data:
            raise _FileChanged()
        self.sent += len(data)
        self.on_bytes(len(data))
        return data


class _Session:
    """One upload: the files, their state on the Manager, and the counters."""

    def __init__(self, client: ManagerClient, entries: list[_File], cache: HashCache, tracker: _Tracker) -> None:
        self.client = client
        self.entries = entries
        self.cache = cache
        self.tracker = tracker
        self.bytes_uploaded = 0
        self.files_uploaded = 0
        self.rehashed: set[str] = set()

    # --- requirements and uploads -------------------------------------------------------

    def requirements(self) -> list[tuple[_File, str]]:
        """The files the Manager lacks, each with its status (unknown first, then uploading)."""
        self.tracker.update(phase="checking", current="")
        by_key = {e.key: e for e in self.entries}
        try:
            payload = self.client.request("POST", f"{API}/shaman/checkout/requirements",
                                          body={"files": [e.spec() for e in self.entries]})[1]
        except errors.ManagerHTTPError as ex:
            if ex.no_such_operation or ex.status == 503:
                raise ShamanError(f"Shaman is not available on this Manager ({ex.message}); turn it on in the "
                                  "Manager's settings or submit without Shaman", status=ex.status) from None
            raise
        items = payload.get("files") if isinstance(payload, Mapping) else None
        needed: list[tuple[_File, str]] = []
        for item in items or []:   # Go sends `null` when nothing is missing
            if not isinstance(item, Mapping):
                raise errors.MalformedResponse("Shaman's requirements answer has a malformed entry")
            entry = by_key.get((str(item.get("sha", "")), _int(item.get("size"))))
            if entry is None:
                raise errors.MalformedResponse("Shaman asked for a file that was not offered")
            needed.append((entry, str(item.get("status", "unknown"))))
        needed.sort(key=lambda pair: pair[1] == "uploading")
        return needed

    def upload_missing(self) -> None:
        self._upload(self.requirements())

    def _upload(self, needed: list[tuple[_File, str]]) -> None:
        queue = collections.deque((f, status == "uploading") for f, status in needed)
        total = sum(f.size for f, _ in needed)
        self.tracker.update(phase="uploading", files_done=0, files_total=len(queue), bytes_done=0,
                            bytes_total=total)
        deferrals: collections.Counter = collections.Counter()
        done = 0
        wait_round = 0
        while queue:
            f, can_defer = queue.popleft()
            self.tracker.update(force=False, files_done=done, current=f.rel)
            outcome = self._store(f, can_defer)
            if outcome == "defer":
                deferrals[f.key] += 1
                queue.append((f, deferrals[f.key] < MAX_DEFERRALS))
                if all(deferrals[g.key] for g, _ in queue):  # only deferred files left: give the other uploader time
                    wait_round += 1
                    self._sleep(min(DEFER_WAIT_SECONDS * wait_round, MAX_DEFER_WAIT_SECONDS))
                continue
            if outcome == "mismatch":
                queue.appendleft((self._rehash(f), False))
                self.tracker.update(bytes_total=self.tracker.state["bytes_total"] + f.size)
                continue
            done += 1
        self.tracker.update(files_done=done, current="")

    def _store(self, f: _File, can_defer: bool) -> str:
        """One upload attempt: stored | exists | defer | mismatch."""
        headers = {"Content-Type": "application/octet-stream",
                   "X-Shaman-Original-Filename": _header_filename(f.rel)}
        if can_defer:
            headers["X-Shaman-Can-Defer-Upload"] = "true"
        path = f"{API}/shaman/files/{f.sha}/{f.size}"
        start = self.tracker.state["bytes_done"]
        try:
            with open(f.path, "rb") as fh:
                status, response, content = stream_upload(self.client, path, _Body(fh, f.size, self.tracker.add_bytes),
                                                          headers)
        except _FileChanged:
            return "mismatch"
        except OSError as ex:
            raise ShamanError(f"Cannot read {f.path}: {ex.strerror or ex}") from None
        except errors.ManagerUnreachable:
            # The Manager may answer early (208, 425) and hang up on the rest of a big body, and it
            # closes an upload when another client finished the same file first: ask how it stands.
            state = file_status(self.client, f.sha, f.size)
            if state == "stored":
                self.tracker.update(force=False, bytes_done=start + f.size)
                return "exists"
            if state == "uploading" and can_defer:
                self.tracker.update(force=False, bytes_done=start)
                return "defer"
            raise
        if status in (200, 201, 204):
            self.bytes_uploaded += f.size
            self.files_uploaded += 1
            return "stored"
        if status == 208:
            self.tracker.update(force=False, bytes_done=start + f.size)
            return "exists"
        if status == 425:
            self.tracker.update(force=False, bytes_done=start)
            return "defer"
        if status == 417:
            return "mismatch"
        raise client_module._http_error(response, content)

    def _rehash(self, f: _File) -> _File:
        """After a 417: hash the file again, once; every checkout entry of that file follows."""
        if f.path in self.rehashed:
            raise ShamanError(f"{f.rel} changed while it was being uploaded, twice; save your work and submit again")
        self.rehashed.add(f.path)
        sha, size = self.cache.checksum(f.path, use_cache=False)
        self.cache.save()
        for e in self.entries:
            if e.path == f.path:
                e.sha, e.size = sha, size
        return f

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self.tracker.check_abort()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.1))

    # --- checkout ---------------------------------------------------------------------------

    def checkout(self, checkout_path: str) -> str:
        requested = checkout_path
        reuploaded = False
        conflicts = 0
        while True:
            self.tracker.update(phase="checkout", current=requested)
            try:
                status, payload, _ = self.client.request(
                    "POST", f"{API}/shaman/checkout/create", ok_statuses=(200, 201, 204),
                    body={"files": [e.spec() for e in self.entries], "checkoutPath": requested})
            except errors.ManagerHTTPError as ex:
                if ex.status == 409 and conflicts + 1 < MAX_CHECKOUT_ATTEMPTS:
                    conflicts += 1
                    requested = f"{checkout_path}-{_token()}"
                    continue
                if ex.status == 409:
                    raise ShamanError(f"The Shaman checkout path {checkout_path!r} is in use; tried "
                                      f"{MAX_CHECKOUT_ATTEMPTS} names") from None
                missing = _files_missing(ex)
                if missing and not reuploaded:
                    reuploaded = True   # ask the requirements again to learn which ones, upload those
                    self._upload(self.requirements())
                    continue
                if missing:
                    raise ShamanError("The Manager still misses files after uploading them again; try again") from None
                raise
            accepted = payload.get("checkoutPath") if isinstance(payload, Mapping) else None
            return str(accepted) if accepted else requested


def _files_missing(ex: errors.ManagerHTTPError) -> bool:
    """The checkout failed for files the Manager lacks (say, removed by its cleanup since the upload):
    424 in the spec; a real Manager (3.5 … 3.9) answers 500 "unknown files requested in checkout"."""
    return ex.status == 424 or (ex.status == 500 and "unknown files" in ex.message.lower())


# --------------------------------------------------------------------------- transport


def stream_upload(client: ManagerClient, path: str, body: Any, headers: Mapping) -> tuple[int, Any, bytes]:
    """POST a streamed body through the client's session: (status, response, first bytes of the answer).

    Unlike `ManagerClient.request` there is no overall deadline (an upload takes as long as
    it takes) and no status check. The timeout is per socket operation; while the body is
    being sent urllib3 applies the *connect* timeout to each write, so it is raised to the
    read timeout here: a busy Manager may pause reading for longer than it takes to connect.
    """
    conn = client.connection
    timeout = (max(conn.connect_timeout, conn.timeout), conn.timeout)
    url = client.base + path
    try:
        with client.session.post(url, data=body, headers=dict(headers), timeout=timeout, stream=True,
                                 allow_redirects=False, verify=client.session.verify) as response:
            content = b""
            deadline = time.monotonic() + conn.timeout * 3
            for chunk in response.iter_content(16 * 1024):
                content += chunk
                if len(content) > MAX_ERROR_BODY or time.monotonic() > deadline:
                    break
            return response.status_code, response, content
    except requests.exceptions.SSLError:
        raise errors.ManagerUnreachable(f"TLS check failed for {client.base}") from None
    except requests.exceptions.ConnectTimeout:
        raise errors.ManagerTimeout(f"Manager at {client.base} did not accept a connection within "
                                    f"{conn.connect_timeout:g} s") from None
    except (requests.exceptions.ReadTimeout, requests.exceptions.Timeout, TimeoutError):
        raise errors.ManagerTimeout(f"Manager at {client.base} stopped taking the upload for "
                                    f"{conn.timeout:g} s") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as ex:
        raise errors.ManagerUnreachable(client_module._connection_message(client.base, ex)) from None
    except requests.exceptions.RequestException as ex:
        raise errors.ManagerUnreachable(f"Upload to {client.base} failed ({type(ex).__name__})") from None


def _header_filename(rel: str) -> str:
    """X-Shaman-Original-Filename: ASCII as is, anything else as an RFC 2047 UTF-8 word."""
    if rel.isascii() and rel.isprintable():
        return rel
    return "=?utf-8?b?" + base64.b64encode(rel.encode("utf-8", "replace")).decode("ascii") + "?="


def _token() -> str:
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(4))


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1
