# SPDX-License-Identifier: GPL-3.0-or-later
"""A real Flamenco Manager and Worker on loopback, for end-to-end tests (no pytest fixtures in here).

The binaries come from `tests/setup.sh`'s cache (`$FLAMENCO_PANEL_CACHE` or ~/.cache/flamenco-panel,
`flamenco-<version>/`), or from `$FLAMENCO_BIN_ROOT/flamenco-<version>/` (same layout) when that is set, or
for the main version from `$FLAMENCO_BIN_DIR`. Everything the farm writes
stays under one temp folder: the Manager's config, database and storage, the shared storage, the Worker's
home and working folder. `blender` is tests/blender_standin.py run by this Python (real `bpy`); `ffmpeg`
is a shell stand-in on the Worker's PATH (the render job type ends with a preview-video task).
Nothing listens on or talks to non-loopback addresses: the Manager listens on 127.0.0.1 with
autodiscovery off, the Worker is given the Manager's URL (no multicast search).
"""
from __future__ import annotations

import json
import os
import pathlib
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

VERSION = "3.9-beta1"
TESTS = pathlib.Path(__file__).resolve().parent
STANDIN = TESTS / "blender_standin.py"
WORKER_NAME = "flamenco-panel-test-worker"
MANAGER_NAME = "Flamenco Panel Test Manager"


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("FLAMENCO_PANEL_CACHE") or pathlib.Path.home() / ".cache" / "flamenco-panel")


def _explicit() -> bool:
    return bool(os.environ.get("FLAMENCO_BIN_DIR") or os.environ.get("FLAMENCO_BIN_ROOT"))


def bin_dir(version: str = VERSION) -> pathlib.Path:
    if version == VERSION and os.environ.get("FLAMENCO_BIN_DIR"):
        return pathlib.Path(os.environ["FLAMENCO_BIN_DIR"])
    root = os.environ.get("FLAMENCO_BIN_ROOT")
    return (pathlib.Path(root) if root else cache_dir()) / f"flamenco-{version}"


def missing_reason(version: str = VERSION) -> str | None:
    """Why the real farm cannot run here (None: it can)."""
    where = bin_dir(version)
    missing = [name for name in ("flamenco-manager", "flamenco-worker") if not os.access(where / name, os.X_OK)]
    if not missing:
        return None
    reason = f"real Flamenco {version} not installed ({', '.join(missing)} missing in {where})"
    log = cache_dir() / f"flamenco-{version}.build.log"
    if not _explicit() and log.is_file():
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            reason += f"; build log {log} ends: {lines[-1][-1000:]}"
    return reason


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _q(value) -> str:
    """A YAML scalar (JSON strings are valid YAML)."""
    return json.dumps(str(value))


def _tail(path: pathlib.Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class FarmError(RuntimeError):
    pass


class RealFarm:
    """Start with `start()` (or as a context manager); `stop()` always ends both processes."""

    def __init__(self, root: pathlib.Path, version: str = VERSION, shaman: bool = False,
                 python: str = sys.executable) -> None:
        self.root = pathlib.Path(root).resolve()
        self.version = version
        self.shaman = shaman
        self.bins = bin_dir(version)
        self.python = python
        self.port = 0
        self.manager_dir = self.root / "manager"
        self.worker_dir = self.root / "worker"
        self.tools = self.root / "tools"
        self.shared = self.root / "shared"
        self.manager_log = self.root / "manager.log"
        self.worker_log = self.root / "worker.log"
        self.manager: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None

    # --- life cycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "RealFarm":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        try:
            self._write_files()
            self._start_manager(timeout)
            self._start_worker(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Worker first (it signs off at the Manager), then the Manager; by PID, kill if they hang."""
        for attr in ("worker", "manager"):
            self._end(attr)
        for handle in getattr(self, "_logs", []):
            handle.close()
        self._logs = []

    def _end(self, attr: str) -> None:
        proc = getattr(self, attr)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        setattr(self, attr, None)

    def stop_manager(self) -> None:
        """The Manager alone goes down (its database and port are kept for `restart_manager`)."""
        self._end("manager")

    def restart_manager(self, timeout: float = 60.0) -> None:
        self._start_manager(timeout)

    # --- set-up ------------------------------------------------------------------------------

    def _write_files(self) -> None:
        for d in (self.manager_dir, self.worker_dir / "home", self.worker_dir / "tmp", self.worker_dir / "blender-user",
                  self.tools, self.shared, self.manager_dir / "storage"):
            d.mkdir(parents=True, exist_ok=True)
        blender = self.tools / "blender"
        blender.write_text(f'#!/bin/sh\nexec {shlex.quote(self.python)} {shlex.quote(str(STANDIN))} "$@"\n')
        blender.chmod(0o755)
        ffmpeg = self.tools / "ffmpeg"
        ffmpeg.write_text(
            "#!/bin/sh\n"
            "# ffmpeg stand-in for the real-farm tests: answers -version, writes an empty output file.\n"
            'if [ "$1" = "-version" ]; then\n'
            '  echo "ffmpeg version 0.0-flamenco-panel-standin Copyright (c) none"\n'
            '  echo "stand-in: writes an empty video file"\n'
            "  exit 0\n"
            "fi\n"
            'for last; do :; done\n'
            ': > "$last" || exit 1\n'
            'echo "ffmpeg stand-in: wrote $last"\n')
        ffmpeg.chmod(0o755)
        self.port = free_port()
        (self.manager_dir / "flamenco-manager.yaml").write_text("\n".join([
            "_meta:",
            "  version: 3",
            f"manager_name: {_q(MANAGER_NAME)}",
            f"database: {_q(self.manager_dir / 'flamenco-manager.sqlite')}",
            f"listen: {_q(f'127.0.0.1:{self.port}')}",
            "autodiscoverable: false",
            f"local_manager_storage_path: {_q(self.manager_dir / 'storage')}",
            f"shared_storage_path: {_q(self.shared)}",
            "shaman:",
            f"  enabled: {'true' if self.shaman else 'false'}",
            "variables:",
            "  blender:",
            "    values:",
            "      - platform: all",
            f"        value: {_q(blender)}",
            "  blenderArgs:",
            "    values:",
            "      - platform: all",
            "        value: \"-b -y\"",
            ""]))
        (self.worker_dir / "flamenco-worker.yaml").write_text(
            f"manager_url: {_q(self.url + '/')}\nworker_name: {_q(WORKER_NAME)}\n")

    def _env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLAMENCO_")}
        # No proxy for loopback; the stand-ins first on the PATH.
        env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
                   PATH=f"{self.tools}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}", **extra)
        env.pop("DISPLAY", None)   # nothing may open a browser or a window
        env.pop("WAYLAND_DISPLAY", None)
        return env

    def _spawn(self, args: list[str], cwd: pathlib.Path, log: pathlib.Path, env: dict) -> subprocess.Popen:
        handle = open(log, "ab")
        self._logs = getattr(self, "_logs", []) + [handle]
        return subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def _start_manager(self, timeout: float) -> None:
        self.manager = self._spawn([str(self.bins / "flamenco-manager")], self.manager_dir, self.manager_log,
                                   self._env())
        self._wait(lambda: self.api("GET", "/api/v3/version"), timeout, "the Manager to answer",
                   self.manager, self.manager_log)

    def _start_worker(self, timeout: float) -> None:
        # Blender (the stand-in) makes a session folder in TMPDIR and reads its user resources: both stay
        # in the farm's folder rather than piling up in /tmp, one per render.
        self.worker = self._spawn([str(self.bins / "flamenco-worker"), "-manager", self.url + "/"],
                                  self.worker_dir, self.worker_log,
                                  self._env(FLAMENCO_HOME=str(self.worker_dir / "home"),
                                            TMPDIR=str(self.worker_dir / "tmp"),
                                            BLENDER_USER_RESOURCES=str(self.worker_dir / "blender-user")))
        self._wait(lambda: self.awake_worker(), timeout, "the Worker to be listed as awake", self.worker,
                   self.worker_log)

    def _wait(self, probe, timeout: float, what: str, proc: subprocess.Popen, log: pathlib.Path):
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise FarmError(f"{proc.args[0]} exited ({proc.returncode}) while waiting for {what}:\n{_tail(log)}")
            try:
                result = probe()
            except (OSError, ValueError):
                result = None
            if result:
                return result
            if time.monotonic() > deadline:
                raise FarmError(f"timed out after {timeout:g} s waiting for {what}:\n{_tail(log)}")
            time.sleep(0.3)

    # --- talking to the Manager directly (urllib: not seen by tests that record `requests`) ---

    def api(self, method: str, path: str, body=None, timeout: float = 10.0):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # loopback: never a proxy
        with opener.open(req, timeout=timeout) as resp:
            raw = resp.read()
            if not raw:
                return None
            return json.loads(raw) if "json" in resp.headers.get("Content-Type", "") else raw

    def spec(self) -> dict:
        return self.api("GET", "/api/v3/openapi3.json")

    def workers(self) -> list[dict]:
        return self.api("GET", "/api/v3/worker-mgt/workers").get("workers", [])

    def awake_worker(self) -> dict | None:
        return next((w for w in self.workers() if w.get("name") == WORKER_NAME and w.get("status") == "awake"), None)

    def job(self, job_id: str) -> dict:
        return self.api("GET", f"/api/v3/jobs/{job_id}")

    def tasks(self, job_id: str) -> list[dict]:
        return self.api("GET", f"/api/v3/jobs/{job_id}/tasks").get("tasks", [])

    def submit_echo(self, name: str, user: str, seconds: int = 1, repeats: int = 1, priority: int = 50,
                    paused: bool = False) -> dict:
        """A job submitted straight to the Manager, as another submitter (another user.name) would;
        `paused` keeps it from the Worker (3.6+)."""
        job = {"name": name, "type": "echo-sleep-test", "priority": priority, "submitter_platform": "linux",
               "settings": {"message": f"from {user}", "sleep_duration_seconds": seconds, "sleep_repeats": repeats},
               "metadata": {"user.name": user}}
        if paused:
            job["initial_status"] = "paused"
        return self.api("POST", "/api/v3/jobs", job)

    def logs(self, lines: int = 40) -> str:
        return (f"--- manager log ({self.manager_log}) ---\n{_tail(self.manager_log, lines)}\n"
                f"--- worker log ({self.worker_log}) ---\n{_tail(self.worker_log, lines)}")
