# SPDX-License-Identifier: GPL-3.0-or-later
"""Small dataclasses for the Manager's API objects, parsed tolerantly.

The Manager is a versioned peer (3.5 … 3.9): enums are open (unknown values
are kept as strings), keys added after 3.0 may be missing, and a wrong type in
one field never loses the whole object. Field names double as the JSON shape
used across the helper link (`dataclasses.asdict` / `cls(**data)`).
"""
from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Mapping


def _map(payload: Any) -> Mapping:
    return payload if isinstance(payload, Mapping) else {}


def _str(data: Mapping, key: str, default: str = "") -> str:
    value = data.get(key, default)
    if value is None or isinstance(value, (dict, list)):
        return default
    return str(value)


def _int(data: Mapping, key: str, default: int = 0) -> int:
    value = data.get(key, default)
    if isinstance(value, bool):
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return default


def _bool(data: Mapping, key: str, default: bool = False) -> bool:
    value = data.get(key, default)
    return value if isinstance(value, bool) else default


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value if isinstance(v, (str, int, float))] if isinstance(value, list) else []


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if not isinstance(v, (dict, list))}


def timestamp(text: str) -> float:
    """RFC 3339 (with nanoseconds) → POSIX seconds; 0.0 when absent or unparsable."""
    if not text:
        return 0.0
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def from_link(cls, data: Mapping):
    """Rebuilds a model from its `asdict` form, ignoring unknown keys."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclasses.dataclass
class Version:
    version: str = ""
    shortversion: str = ""
    name: str = ""
    git: str = ""

    @classmethod
    def from_api(cls, payload: Any) -> "Version":
        d = _map(payload)
        return cls(_str(d, "version"), _str(d, "shortversion"), _str(d, "name"), _str(d, "git"))

    @property
    def numbers(self) -> tuple[int, int] | None:
        """(major, minor) from "3.9-beta1"; None for unversioned builds ("set-during-build")."""
        head = (self.shortversion or self.version).split("-")[0].split(" ")[0]
        parts = head.split(".")
        try:
            return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
        except ValueError:
            return None


@dataclasses.dataclass
class SharedStorage:
    location: str = ""
    audience: str = ""
    platform: str = ""
    shaman_enabled: bool = False

    @classmethod
    def from_api(cls, payload: Any) -> "SharedStorage":
        d = _map(payload)
        return cls(_str(d, "location"), _str(d, "audience"), _str(d, "platform"), _bool(d, "shamanEnabled"))


@dataclasses.dataclass
class Variable:
    name: str
    value: str = ""
    is_twoway: bool = False


def parse_variables(payload: Any) -> dict[str, Variable]:
    out = {}
    for name, item in _map(payload).items():
        item = _map(item)
        out[str(name)] = Variable(str(name), _str(item, "value"), _bool(item, "is_twoway"))
    return out


def _worker_ref(value: Any) -> tuple[str, str]:
    """TaskWorker → (id, name); absent (≤3.6) and `{"id": ""}` (3.7+) both mean unassigned."""
    d = _map(value)
    return _str(d, "id"), _str(d, "name")


@dataclasses.dataclass
class Job:
    id: str
    name: str = ""
    type: str = ""
    status: str = ""
    priority: int = 50
    activity: str = ""
    created: str = ""
    updated: str = ""
    submitter_platform: str = ""
    worker_tag: str = ""
    steps_completed: int = -1   # -1: the Manager (< 3.8) does not report steps
    steps_total: int = -1
    delete_requested_at: str = ""
    settings: dict = dataclasses.field(default_factory=dict)
    metadata: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_api(cls, payload: Any) -> "Job":
        d = _map(payload)
        settings = d.get("settings")
        return cls(
            id=_str(d, "id"), name=_str(d, "name"), type=_str(d, "type"), status=_str(d, "status"),
            priority=_int(d, "priority", 50), activity=_str(d, "activity"), created=_str(d, "created"),
            updated=_str(d, "updated"), submitter_platform=_str(d, "submitter_platform"),
            worker_tag=_str(d, "worker_tag"), steps_completed=_int(d, "steps_completed", -1),
            steps_total=_int(d, "steps_total", -1), delete_requested_at=_str(d, "delete_requested_at"),
            settings=dict(settings) if isinstance(settings, Mapping) else {},
            metadata=_string_map(d.get("metadata")),
        )

    @property
    def progress(self) -> float | None:
        """0..1 from steps (3.8+); None when the Manager gives no steps (use task counts)."""
        if self.steps_total > 0 and self.steps_completed >= 0:
            return min(1.0, self.steps_completed / self.steps_total)
        if self.status == "completed":
            return 1.0
        return None

    @property
    def user_name(self) -> str:
        return self.metadata.get("user.name", "")


@dataclasses.dataclass
class TaskSummary:
    id: str
    name: str = ""
    status: str = ""
    priority: int = 0
    task_type: str = ""
    updated: str = ""
    index_in_job: int = -1
    steps_completed: int = -1
    steps_total: int = -1
    worker_id: str = ""
    worker_name: str = ""

    @classmethod
    def from_api(cls, payload: Any) -> "TaskSummary":
        d = _map(payload)
        worker_id, worker_name = _worker_ref(d.get("worker"))
        return cls(
            id=_str(d, "id"), name=_str(d, "name"), status=_str(d, "status"), priority=_int(d, "priority"),
            task_type=_str(d, "task_type"), updated=_str(d, "updated"), index_in_job=_int(d, "index_in_job", -1),
            steps_completed=_int(d, "steps_completed", -1), steps_total=_int(d, "steps_total", -1),
            worker_id=worker_id, worker_name=worker_name,
        )

    @property
    def progress(self) -> float:
        if self.steps_total > 0 and self.steps_completed >= 0:
            return min(1.0, self.steps_completed / self.steps_total)
        return 1.0 if self.status == "completed" else 0.0


@dataclasses.dataclass
class Task(TaskSummary):
    job_id: str = ""
    activity: str = ""
    created: str = ""
    last_touched: str = ""
    failed_by_workers: list = dataclasses.field(default_factory=list)
    commands: list = dataclasses.field(default_factory=list)

    @classmethod
    def from_api(cls, payload: Any) -> "Task":
        d = _map(payload)
        base = dataclasses.asdict(TaskSummary.from_api(d))
        commands = d.get("commands")
        return cls(
            **base, job_id=_str(d, "job_id"), activity=_str(d, "activity"), created=_str(d, "created"),
            last_touched=_str(d, "last_touched"),
            failed_by_workers=[_worker_ref(w)[1] or _worker_ref(w)[0] for w in d.get("failed_by_workers") or []
                               if isinstance(w, Mapping)],
            commands=[dict(c) for c in commands if isinstance(c, Mapping)] if isinstance(commands, list) else [],
        )


def progress_from_tasks(tasks: list[TaskSummary]) -> float:
    """Job progress for Managers without `steps_*`: the share of completed tasks."""
    if not tasks:
        return 0.0
    return sum(t.progress for t in tasks) / len(tasks)


@dataclasses.dataclass
class WorkerTag:
    id: str
    name: str = ""
    description: str = ""

    @classmethod
    def from_api(cls, payload: Any) -> "WorkerTag":
        d = _map(payload)
        return cls(_str(d, "id"), _str(d, "name"), _str(d, "description"))


@dataclasses.dataclass
class Worker:
    """WorkerSummary, plus the detail fields when fetched one by one."""
    id: str
    name: str = ""
    status: str = ""
    version: str = ""
    last_seen: str = ""
    can_restart: bool = False
    status_change: str = ""          # requested status, "" when none
    status_change_lazy: bool = False
    ip_address: str = ""
    platform: str = ""
    supported_task_types: list = dataclasses.field(default_factory=list)
    task_id: str = ""
    task_name: str = ""
    task_job_id: str = ""
    tags: list = dataclasses.field(default_factory=list)   # tag names

    @classmethod
    def from_api(cls, payload: Any) -> "Worker":
        d = _map(payload)
        change = _map(d.get("status_change"))
        task = _map(d.get("task"))
        return cls(
            id=_str(d, "id"), name=_str(d, "name"), status=_str(d, "status"), version=_str(d, "version"),
            last_seen=_str(d, "last_seen"), can_restart=_bool(d, "can_restart"),
            status_change=_str(change, "status"), status_change_lazy=_bool(change, "is_lazy"),
            ip_address=_str(d, "ip_address"), platform=_str(d, "platform"),
            supported_task_types=_strings(d.get("supported_task_types")),
            task_id=_str(task, "id"), task_name=_str(task, "name"), task_job_id=_str(task, "job_id"),
            tags=[WorkerTag.from_api(t).name for t in d.get("tags") or [] if isinstance(t, Mapping)],
        )


@dataclasses.dataclass
class LastRendered:
    base: str
    suffixes: list = dataclasses.field(default_factory=list)

    @classmethod
    def from_api(cls, payload: Any) -> "LastRendered":
        d = _map(payload)
        return cls(_str(d, "base"), _strings(d.get("suffixes")))

    def url(self, suffix: str = "") -> str:
        """Host-relative URL of one image size; the largest-named suffix when none given."""
        chosen = suffix or (self.suffixes[-1] if self.suffixes else "")
        return f"{self.base.rstrip('/')}/{chosen}"


@dataclasses.dataclass
class TaskLogInfo:
    task_id: str
    job_id: str = ""
    url: str = ""
    size: int = 0

    @classmethod
    def from_api(cls, payload: Any) -> "TaskLogInfo":
        d = _map(payload)
        return cls(_str(d, "task_id"), _str(d, "job_id"), _str(d, "url"), _int(d, "size"))
