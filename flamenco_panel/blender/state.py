# SPDX-License-Identifier: GPL-3.0-or-later
"""Runtime farm data on the WindowManager (not saved), and how results apply to it.

`bpy.context.window_manager.flamenco_panel` has collections `jobs`, `tasks`,
`workers`. This module is their only writer. Applying a refresh updates items
in place and only touches the ones that changed, so large farms stay cheap.
"""
from __future__ import annotations

import functools
import itertools
import time
from typing import Iterable, Iterator

import bpy

from ..core import rules
from ..core.models import Job, TaskSummary, Worker, from_link, progress_from_tasks

CONNECTION_STATES = [
    ('OFFLINE', "Offline", "Blender's online access is off"),
    ('UNCONFIGURED', "Unconfigured", "No Manager URL set"),
    ('IDLE', "Not Connected", "Not contacted yet"),
    ('CONNECTING', "Connecting", "Waiting for the Manager"),
    ('CONNECTED', "Connected", "Data is current"),
    ('ERROR', "Error", "The last request failed; older data is kept"),
]


class FLAMENCO_PG_job(bpy.types.PropertyGroup):
    id: bpy.props.StringProperty()
    # `name` comes from PropertyGroup
    status: bpy.props.StringProperty()
    type: bpy.props.StringProperty()
    progress: bpy.props.FloatProperty(min=0.0, max=1.0, subtype='FACTOR')
    has_progress: bpy.props.BoolProperty()
    priority: bpy.props.IntProperty()
    is_mine: bpy.props.BoolProperty()
    user_name: bpy.props.StringProperty()
    activity: bpy.props.StringProperty()
    created: bpy.props.StringProperty()
    updated: bpy.props.StringProperty()


class FLAMENCO_PG_task(bpy.types.PropertyGroup):
    id: bpy.props.StringProperty()
    status: bpy.props.StringProperty()
    worker: bpy.props.StringProperty()
    progress: bpy.props.FloatProperty(min=0.0, max=1.0, subtype='FACTOR')
    index_in_job: bpy.props.IntProperty()
    task_type: bpy.props.StringProperty()


class FLAMENCO_PG_worker(bpy.types.PropertyGroup):
    id: bpy.props.StringProperty()
    status: bpy.props.StringProperty()
    status_change: bpy.props.StringProperty()
    version: bpy.props.StringProperty()
    last_seen: bpy.props.StringProperty()
    task: bpy.props.StringProperty()
    tags: bpy.props.StringProperty()
    can_restart: bpy.props.BoolProperty()


# Full job data by id for the selected job's details (settings); the collections keep only what lists need.
job_details: dict[str, Job] = {}
_applying = False
select_after_refresh = ""   # a just-submitted job to select once the list has it


def _job_selected(self, context) -> None:
    """A new job selected by the user: fetch its tasks and last-rendered image (in the helper)."""
    if _applying:
        return
    job = selected_job(self)
    if job is None:
        return
    from . import preview, runtime
    runtime.dispatch("job_tasks", {"job_id": job.id}, _tasks_arrived, functools.partial(_tasks_failed, job.id))
    preview.request(job.id)


def _tasks_failed(job_id: str, ex) -> None:
    """A job deleted on the farm since the last refresh has no tasks to show; that is not an error."""
    if getattr(ex, "status", 0) == 404:
        _tasks_arrived({"job_id": job_id, "tasks": []})
    elif get() is not None:
        apply_error(get(), ex.message)


def _tasks_arrived(data: dict) -> None:
    """Tasks of a job that is still the selected one (the user may have clicked on since)."""
    st = get()
    job = selected_job(st) if st is not None else None
    if job is not None and job.id == data["job_id"]:
        apply_tasks(st, data["job_id"], data["tasks"])


class FLAMENCO_PG_state(bpy.types.PropertyGroup):
    connection: bpy.props.EnumProperty(items=CONNECTION_STATES, default='IDLE')
    message: bpy.props.StringProperty(description="Last error or notice")
    manager_name: bpy.props.StringProperty()
    manager_version: bpy.props.StringProperty()
    farm_status: bpy.props.StringProperty()
    can_pause: bpy.props.BoolProperty(default=True)
    last_refresh: bpy.props.FloatProperty(description="time.time() of the last good refresh")
    jobs: bpy.props.CollectionProperty(type=FLAMENCO_PG_job)
    tasks: bpy.props.CollectionProperty(type=FLAMENCO_PG_task)
    workers: bpy.props.CollectionProperty(type=FLAMENCO_PG_worker)
    tasks_job_id: bpy.props.StringProperty(description="Job whose tasks are listed")
    active_job_index: bpy.props.IntProperty(default=-1, update=_job_selected)
    active_task_index: bpy.props.IntProperty(default=-1)
    active_worker_index: bpy.props.IntProperty(default=-1)
    show_all_jobs: bpy.props.BoolProperty(name="All Jobs", description="Show every user's jobs, not only yours")
    notice: bpy.props.StringProperty(description="Latest notification shown in the panel")
    submit_status: bpy.props.StringProperty(description="Phase of the submission in progress, if any")
    submit_progress: bpy.props.FloatProperty(min=0.0, max=1.0, subtype='FACTOR')
    last_submitted_id: bpy.props.StringProperty()


CLASSES = (FLAMENCO_PG_job, FLAMENCO_PG_task, FLAMENCO_PG_worker, FLAMENCO_PG_state)


def get(context=None):
    wm = (context or bpy.context).window_manager
    return getattr(wm, "flamenco_panel", None)


def _sync(collection, items: list, fill, key=lambda item: item.id) -> None:
    """Makes `collection` mirror `items` in order, writing only properties that changed."""
    while len(collection) > len(items):
        collection.remove(len(collection) - 1)
    while len(collection) < len(items):
        collection.add()
    for slot, item in zip(collection, items):
        fill(slot, item)


def _set(slot, **values) -> None:
    for name, value in values.items():
        if getattr(slot, name) != value:
            setattr(slot, name, value)


def _fill_task(slot, task: TaskSummary) -> None:
    _set(slot, id=task.id, name=task.name[:200], status=task.status, worker=task.worker_name or task.worker_id,
         progress=task.progress, index_in_job=task.index_in_job, task_type=task.task_type)


def _fill_worker(slot, worker: Worker) -> None:
    _set(slot, id=worker.id, name=worker.name[:200], status=worker.status, status_change=worker.status_change,
         version=worker.version, last_seen=worker.last_seen, task=worker.task_name or worker.task_id,
         tags=", ".join(worker.tags), can_restart=worker.can_restart)


def selected_job(state):
    if 0 <= state.active_job_index < len(state.jobs):
        return state.jobs[state.active_job_index]
    return None


def apply_refresh(state, data: dict, user_name: str) -> list:
    """Applies a refresh result; returns the jobs of mine that just finished (for notifications)."""
    global _applying
    _applying = True
    try:
        return _apply_refresh(state, data, user_name)
    finally:
        _applying = False


def _apply_refresh(state, data: dict, user_name: str) -> list:
    selected = selected_job(state)
    selected_id = selected.id if selected else ""

    version = data.get("version", {})
    _set(state, manager_name=version.get("name", ""), manager_version=version.get("shortversion", "")
         or version.get("version", ""), farm_status=str(data.get("farm_status", "")), connection='CONNECTED',
         message="", last_refresh=time.time())
    caps = data.get("capabilities", {})
    if caps.get("spec_known"):
        _set(state, can_pause="pause-requested" in caps.get("job_statuses", ()))

    if "job_rows" in data:
        finished = _apply_job_rows(state, data["job_rows"], user_name)
    elif "job_rows_changed" in data:   # only what changed since the rows we hold
        finished = _apply_changed_rows(state, data["job_rows_changed"], data["job_rows_count"], user_name)
    else:   # unchanged since the rows we hold (the helper checked the digest)
        finished = _apply_job_rows(state, _rows, user_name) if len(state.jobs) == len(_rows) else []
    in_step = finished is not None and len(state.jobs) == len(_rows)
    _rows_digest[0] = data.get("job_rows_digest", "") if in_step else ""   # "": the next refresh sends all
    finished = finished or []
    job_details.clear()
    if data.get("selected_job"):
        detail = from_link(Job, data["selected_job"])
        job_details[detail.id] = detail

    global select_after_refresh
    ids = None
    if select_after_refresh:
        ids = [row[0] for row in _rows]
        if select_after_refresh in ids:
            selected_id, select_after_refresh = select_after_refresh, ""
    if selected_id and (state.active_job_index < 0 or state.active_job_index >= len(state.jobs)
                        or state.jobs[state.active_job_index].id != selected_id):
        ids = ids or [row[0] for row in _rows]
        index = ids.index(selected_id) if selected_id in ids else -1
        if state.active_job_index != index:
            state.active_job_index = index
    elif not selected_id and state.active_job_index != -1:
        state.active_job_index = -1

    workers = data.get("workers", [])
    if workers != _workers or len(state.workers) != len(workers):
        _sync(state.workers, [from_link(Worker, w) for w in workers], _fill_worker)
        _workers[:] = workers
    job = selected_job(state)
    if data.get("job_id") and job is not None and job.id == data["job_id"]:
        apply_tasks(state, data["job_id"], data.get("tasks", []))
    return finished


# Mirrors of what the collections hold, so an unchanged refresh costs a list comparison.
_rows: list = []
_rows_user = [""]
_rows_digest = [""]


def rows_digest(state) -> str:
    """The digest of the job rows Blender holds, so the helper can skip sending them again."""
    return _rows_digest[0] if len(state.jobs) == len(_rows) else ""
_workers: list = []


def _write_row(slot, row: list, user_name: str, previous_status: str | None) -> bool:
    """Fills one list item; True when it is my job that just finished (for a notification)."""
    job_id, name, status, type_, progress, priority, owner, activity, created, updated = row
    slot.id, slot.name, slot.status, slot.type = job_id, name, status, type_
    slot.progress, slot.has_progress = max(0.0, progress), progress >= 0
    slot.priority, slot.user_name, slot.activity = priority, owner, activity
    slot.created, slot.updated = created, updated
    slot.is_mine = bool(user_name.strip()) and owner.strip() == user_name.strip()
    return (slot.is_mine and status in rules.FINISHED_JOB_STATUSES and previous_status is not None
            and previous_status not in rules.FINISHED_JOB_STATUSES)


def _resize(jobs, count: int) -> None:
    while len(jobs) > count:
        jobs.remove(len(jobs) - 1)
    while len(jobs) < count:
        jobs.add()


def _walk(collection, indices: Iterable[int]) -> Iterator:
    """(index, item) for increasing `indices` (all within the collection).

    `collection[i]` of a Python-defined collection steps from its start on every lookup (about 90 µs for
    the last of 10,000); one walk through it costs about six such steps per item, so a few lookups win
    when they add up to less than that, and the walk wins for many or for a whole list."""
    indices = list(indices)
    if not indices:
        return
    if sum(indices) < 6 * indices[-1]:
        for index in indices:
            yield index, collection[index]
        return
    items, position = iter(collection), 0
    for index in indices:
        yield index, next(itertools.islice(items, index - position, None))
        position = index + 1


def _apply_job_rows(state, rows: list, user_name: str) -> list:
    """Writes only the job rows that changed; returns rows of my jobs that just finished."""
    jobs = state.jobs
    old = _rows if len(jobs) == len(_rows) else []   # the collection was changed elsewhere: rewrite all
    if old == rows and _rows_user[0] == user_name:
        return []
    user_changed = _rows_user[0] != user_name
    old_status = {row[0]: row[2] for row in old}
    _resize(jobs, len(rows))
    finished = []
    changed = (i for i, row in enumerate(rows) if user_changed or i >= len(old) or old[i] != row)
    for index, slot in _walk(jobs, changed):
        if _write_row(slot, rows[index], user_name, old_status.get(rows[index][0])):
            finished.append(rows[index])
    _rows[:] = rows
    _rows_user[0] = user_name
    return finished


def _apply_changed_rows(state, changes: list, count: int, user_name: str) -> list | None:
    """Applies a delta from the helper: (index, row) pairs against the rows we hold."""
    jobs = state.jobs
    by_index = dict((index, row) for index, row in changes)
    if (len(jobs) != len(_rows) or _rows_user[0] != user_name or count < len(_rows)
            or len(by_index) != len(changes) or not all(0 <= index < count for index in by_index)
            or not all(index in by_index for index in range(len(_rows), count))):
        return None   # out of step with the helper, or a delta that does not add up: next time, all rows
    _resize(jobs, count)
    _rows.extend([None] * (count - len(_rows)))
    finished = []
    for index, slot in _walk(jobs, sorted(by_index)):
        row, previous = by_index[index], _rows[index]
        same_job = previous is not None and previous[0] == row[0]
        if _write_row(slot, row, user_name, previous[2] if same_job else None):
            finished.append(row)
        _rows[index] = row
    return finished


def forget_mirrors() -> None:
    """After the collections were cleared from outside (tests, unregister)."""
    _rows.clear()
    _workers.clear()
    _rows_digest[0] = ""


def apply_tasks(state, job_id: str, tasks: list[dict]) -> None:
    items = sorted((from_link(TaskSummary, t) for t in tasks), key=lambda t: (t.index_in_job, t.name))
    job = selected_job(state)
    if job is not None and job.id == job_id and items and not (job.has_progress and job.progress > 0):
        # Managers before 3.8 report no steps: the job's progress is its share of completed tasks.
        _set(job, progress=progress_from_tasks(items), has_progress=True)
    if state.tasks_job_id != job_id:
        state.tasks_job_id = job_id
        state.tasks.clear()
        state.active_task_index = -1
    _sync(state.tasks, items, _fill_task)


def output_folder(job_item) -> str:
    """The selected job's render output folder on this computer ("" when unknown)."""
    from ..core import paths
    from . import settings
    job = job_details.get(job_item.id) if job_item is not None else None
    output = str(job.settings.get("render_output_path", "")) if job is not None else ""
    if not output:
        return ""
    variables = {k: v.get("value", "") for k, v in settings.farm_info.get("variables", {}).items()}
    try:
        return paths.output_folder(output, variables, paths.submitter_platform())
    except ValueError:
        return ""


def apply_error(state, message: str) -> None:
    """Keeps the last good data (marked stale by the panel) and shows the message."""
    _set(state, connection='ERROR', message=message[:500])


def apply_job_status(state, job_id: str, status: str) -> None:
    """Optimistic update: shows the requested status at once; the next refresh confirms it."""
    for index, job in enumerate(state.jobs):
        if job.id == job_id:
            _set(job, status=status)
            if index < len(_rows) and _rows[index][0] == job_id:
                _rows[index] = _rows[index][:2] + [status] + _rows[index][3:]
                _rows_digest[0] = ""   # the next refresh sends the Manager's rows, which correct it
            return


def remove_job(state, job_id: str) -> None:
    for i, job in enumerate(state.jobs):
        if job.id == job_id:
            state.jobs.remove(i)
            if state.active_job_index >= len(state.jobs):
                state.active_job_index = len(state.jobs) - 1
            return


def apply_worker_status(state, worker_id: str, status: str) -> None:
    for worker in state.workers:
        if worker.id == worker_id:
            _set(worker, status_change=status)
            return
