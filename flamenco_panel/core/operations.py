# SPDX-License-Identifier: GPL-3.0-or-later
"""The work the extension asks of a Manager, as named operations.

Each operation is `fn(client, args, progress) -> JSON-able result`. The helper
process runs them for the interactive UI; background-mode operators and the
CLI call the same functions directly: one code path, two ways to drive it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Callable, Mapping

from . import errors, rules, submitting
from .client import ManagerClient
from .models import Job, timestamp

Progress = Callable[[dict], None]


def _jobs_payload(jobs: list[Job]) -> list[dict]:
    return [dataclasses.asdict(j) for j in jobs]


def ping(client: ManagerClient, args: Mapping, progress: Progress) -> dict:
    caps = client.capabilities(refresh=True)
    return {"version": dataclasses.asdict(caps.version), "farm_status": client.farm_status(),
            "capabilities": caps.to_dict()}


# What the panel's job list needs, one list per job: cheap to send, compare and apply on Blender's
# main thread even with thousands of jobs (the helper does the parsing and sorting).
JOB_ROW_FIELDS = ("id", "name", "status", "type", "progress", "priority", "user_name", "activity", "created",
                  "updated")


def job_row(job: Job) -> list:
    progress = job.progress
    return [job.id, job.name[:200], job.status, job.type, -1.0 if progress is None else round(progress, 4),
            job.priority, job.user_name, job.activity[:200], job.created, job.updated]


# The rows last sent, by digest (this lives in the helper process): lets a refresh send Blender only
# the rows that changed since the rows it holds.
_sent_rows: dict[str, list] = {}


def _rows_update(rows: list, known_digest: str) -> dict:
    """Nothing when Blender's rows are current; the changed/added rows when it holds an older list
    with the same jobs in the same places; else all rows."""
    digest = hashlib.sha1(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()
    update: dict = {"job_rows_digest": digest}
    previous = _sent_rows.get(known_digest)
    if digest == known_digest:
        pass
    elif previous is not None and len(rows) >= len(previous) and all(
            row[0] == old[0] for row, old in zip(rows, previous)):
        update["job_rows_changed"] = [[i, row] for i, row in enumerate(rows)
                                      if i >= len(previous) or row != previous[i]]
        update["job_rows_count"] = len(rows)
    else:
        update["job_rows"] = rows
    _sent_rows.clear()
    _sent_rows[digest] = rows
    return update


def refresh(client: ManagerClient, args: Mapping, progress: Progress) -> dict:
    """Everything the farm view shows; the tasks of `job_id` when one is selected.

    With `compact`, jobs come as rows (JOB_ROW_FIELDS), oldest first so new jobs append at the end,
    plus the selected job in full; otherwise as full Job dicts.
    """
    caps = client.capabilities(version=client.version())   # detected again after an upgrade
    jobs = client.jobs()
    result = {
        "version": dataclasses.asdict(caps.version),
        "capabilities": caps.to_dict(),
        "farm_status": client.farm_status(),
        "workers": [dataclasses.asdict(w) for w in client.workers()],
        "tags": [dataclasses.asdict(t) for t in client.worker_tags()],
        "job_id": args.get("job_id", ""),
        "tasks": [],
    }
    if args.get("compact"):
        jobs.sort(key=lambda j: (timestamp(j.created), j.id))
        rows = [job_row(j) for j in jobs]
        result.update(_rows_update(rows, str(args.get("rows_digest") or "")))
        selected = next((j for j in jobs if j.id == args.get("job_id")), None)
        result["selected_job"] = dataclasses.asdict(selected) if selected else None
    else:
        result["jobs"] = _jobs_payload(jobs)
    if args.get("job_id"):
        try:
            result["tasks"] = [dataclasses.asdict(t) for t in client.job_tasks(args["job_id"])]
        except errors.ManagerHTTPError as ex:
            if ex.status != 404:  # the job was deleted meanwhile
                raise
    return result


def job(client: ManagerClient, args: Mapping, progress: Progress) -> dict:
    return dataclasses.asdict(client.job(args["job_id"]))


def job_tasks(client: ManagerClient, args: Mapping, progress: Progress) -> dict:
    tasks = client.job_tasks(args["job_id"])
    if not tasks:
        client.job(args["job_id"])   # a real Manager lists no tasks for an unknown job: its 404 says so
    return {"job_id": args["job_id"], "tasks": [dataclasses.asdict(t) for t in tasks]}


def job_action(client: ManagerClient, args: Mapping, progress: Progress) -> dict:
    """Cancel / pause / requeue / delete, re-checked against the job as the Manager has it now.

    The ownership and status rules run on fresh data, so a stale list can never make us act on
    someone else's job or from a status the web UI would not allow.
    """
    job = client.job(args["job_id"])
    caps = client.capabilities()
    rule = rules.check_job_action(args["action"], job, str(args.get("user_name", "")),
                                  allow_others=bool(args.get("allow_others")), can_pause=caps.can_pause)
    if rule.name == "delete":
        client.delete_job(job.id)
    else:
        client.set_job_status(job.id, rule.target_status, str(args.get("reason") or "requested from Flamenco Panel"))
    return {"job_id": job.id, "action": rule.name, "status": rule.target_status or "deleted",
            "job_name": job.name}


def job_priority(client: ManagerClient, args: Mapping, progress: Progress) -> dict:
    job = client.job(args["job_id"])
    if not args.get("allow_others") and not rules.is_mine(job, str(args.get("user_name", ""))):
        raise errors.ActionNotAllowed(f"Job \"{job.name}\" is not yours")
    client.set_job_priority(job.id, int(args["priority"]))
    return {"job_id": job.id, "priority": int(args["priority"])}


def worker_status(client: ManagerClient, args: Mapping, progress: Progress) -> dict:
    worker = client.worker(args["worker_id"])
    status = rules.check_worker_status(str(args["status"]), worker.can_restart)
    client.set_worker_status(worker.id, status, bool(args.get("lazy", True)))
    return {"worker_id": worker.id, "status": status, "lazy": bool(args.get("lazy", True)),
            "worker_name": worker.name}


def task_log(client: ManagerClient, args: Mapping, progress: Progress) -> dict:
    """The log tail, or with `follow` only the bytes added since `offset` (full log, Range reads)."""
    task_id = args["task_id"]
    task = client.task(task_id)
    result = {"task_id": task_id, "task_name": task.name, "task_status": task.status, "job_id": task.job_id}
    if args.get("follow"):
        offset = int(args.get("offset", 0))
        data, start, end = client.read_task_log(task_id, offset, max_bytes=int(args.get("max_bytes", 1024 * 1024)))
        complete = data.rfind(b"\n") + 1   # consume whole lines only: never split a UTF-8 sequence
        if complete:
            data, end = data[:complete], start + complete
        result.update(text=data.decode("utf-8", "replace"), offset=end, incremental=True, restarted=start != offset)
    else:
        result.update(text=client.task_log_tail(task_id), offset=0, incremental=False)
    return result


def last_rendered(client: ManagerClient, args: Mapping, progress: Progress) -> dict:
    """Fetches the job's last-rendered image into `dest` (a file under the extension's user folder)."""
    info = client.last_rendered(args["job_id"])
    if info is None:
        return {"job_id": args["job_id"], "path": ""}
    wanted = str(args.get("suffix", ""))
    data = client.last_rendered_image(info, wanted if wanted in info.suffixes else "")
    dest = str(args["dest"])
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = dest + ".part"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, dest)
    return {"job_id": args["job_id"], "path": dest, "size": len(data)}


OPERATIONS: dict[str, Callable[[ManagerClient, Mapping, Progress], Any]] = {
    "ping": ping,
    "refresh": refresh,
    "job": job,
    "job_tasks": job_tasks,
    "job_action": job_action,
    "job_priority": job_priority,
    "worker_status": worker_status,
    "task_log": task_log,
    "last_rendered": last_rendered,
    "catalog": submitting.catalog,
    "submit": submitting.submit,
    "check": submitting.check,
}


def run(name: str, client: ManagerClient, args: Mapping, progress: Progress | None = None) -> Any:
    fn = OPERATIONS.get(name)
    if fn is None:
        raise errors.ConfigurationError(f"Unknown operation {name!r}")
    try:
        return fn(client, args, progress or (lambda _p: None))
    except errors.FlamencoError:
        raise
    except KeyError as ex:
        raise errors.ConfigurationError(f"Operation {name!r} is missing its {ex.args[0]!r} argument") from None
    except ValueError as ex:   # e.g. a path rule (UNC, relative shared storage) or a bad value
        raise errors.ConfigurationError(str(ex)) from None
    except OSError as ex:
        raise errors.FlamencoError(f"File error: {ex.strerror or ex} ({ex.filename or ''})") from None
    except TypeError:
        raise errors.MalformedResponse("The Manager's answer had an unexpected shape") from None
