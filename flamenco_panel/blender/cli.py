# SPDX-License-Identifier: GPL-3.0-or-later
"""`blender -c flamenco …`: the farm from a terminal, on the same core and rules as the panel.

Blender runs commands in background mode, so every operation runs synchronously
through `runtime.dispatch` (same online check, same connection as the panel).
Exit codes: 0 success, 1 Manager or job error, 2 usage error. Only the command's
own output goes to stdout (a table, or one JSON document with --json); progress,
errors and Blender's own chatter go to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import re
import sys
import time

import bpy

from ..core import errors, jobtypes, logs, rules
from ..core.client import check_url
from ..core.models import Job, TaskSummary, Worker, from_link, timestamp
from . import logview, preferences, runtime, settings, state, submit

PROG = "blender -c flamenco"
OFFLINE = "Online access is off: pass --online-mode before -c (blender --online-mode -c flamenco …)"
MIN_PREFIX = 4
POLL_SECONDS = 2.0            # tests make it shorter
DEFAULT_TIMEOUT = 3600.0
DEFAULT_JOB_TYPE = "simple-blender-render"   # when neither --type nor the file names one
FIRST_LOG_BYTES = 2048        # --follow starts like `tail -f`: the end of the log, then what is added
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class UsageError(Exception):
    """Wrong arguments: exit code 2, nothing sent."""

    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.usage = usage


class _Exit(Exception):
    """argparse wants to end the program (after --help): Blender must keep control."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of calling sys.exit() inside Blender."""

    def error(self, message):
        raise UsageError(message, self.format_usage())

    def exit(self, status=0, message=None):
        if message:
            sys.stderr.write(message)
        raise _Exit(status)


# --- arguments -------------------------------------------------------------------------------


def _priority(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number 0…100, got {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"priority must be 0…100, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def build_parser() -> argparse.ArgumentParser:
    # The global options work before and after the subcommand; SUPPRESS keeps a subcommand's
    # parser from resetting a value given before it.
    def add_globals(parser, suppress: bool) -> None:
        dflt = (lambda value: argparse.SUPPRESS) if suppress else (lambda value: value)
        group = parser.add_argument_group("global options")
        group.add_argument("--manager", metavar="URL", default=dflt(None),
                           help="Manager URL for this run (default: the preference)")
        group.add_argument("--user", metavar="NAME", default=dflt(None),
                           help="user name for this run (default: the preference); marks your jobs")
        group.add_argument("--json", action="store_true", default=dflt(False),
                           help="print one JSON document on stdout instead of a table")

    common = _Parser(add_help=False, allow_abbrev=False)
    add_globals(common, suppress=True)
    main = _Parser(prog=PROG, allow_abbrev=False,
                   description="Submit, watch and control Flamenco render farm jobs from the command line.",
                   epilog="Network access needs --online-mode: blender --online-mode -c flamenco status")
    add_globals(main, suppress=False)
    commands = main.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_: str):
        return commands.add_parser(name, help=help_, description=help_, parents=[common], allow_abbrev=False)

    command("status", "Manager name, version and farm status")
    command("types", "job types and their settings")
    p = command("jobs", "your jobs, newest first")
    p.add_argument("--all", action="store_true", help="every user's jobs, not only yours")
    p.add_argument("--status", nargs="+", action="extend", metavar="S", default=[],
                   help="only jobs with one of these statuses")
    command("workers", "the farm's workers")
    p = command("tasks", "the tasks of a job")
    p.add_argument("job", help="job id, unique id prefix (4+ characters) or exact name of one of your jobs")
    p = command("submit", "submit a blend file")
    p.add_argument("blendfile", help="the .blend file to submit (it is not modified)")
    p.add_argument("--type", metavar="T",
                   help=f"job type (default: the one saved in the file, else {DEFAULT_JOB_TYPE})")
    p.add_argument("--name", metavar="N", help="job name (default: the one saved in the file, else the file name)")
    p.add_argument("--priority", metavar="P", type=_priority, help="0…100 (default: the one saved in the file)")
    p.add_argument("--set", metavar="KEY=VALUE", type=_key_value, action="append", default=[], dest="overrides",
                   help="a job-type setting (repeatable); see `types` for the keys")
    p.add_argument("--tag", metavar="NAME", help="worker tag by name (\"\" for all workers)")
    p.add_argument("--paused", action="store_true", help="queue the job paused (Manager 3.6+)")
    p.add_argument("--wait", action="store_true", help="wait until the job completes, fails or is canceled; "
                                                       "exit 0 only when it completed")
    p.add_argument("--timeout", metavar="SECONDS", type=_seconds, default=DEFAULT_TIMEOUT,
                   help=f"give up waiting after this long (default {DEFAULT_TIMEOUT:g})")
    for name, help_ in (("cancel", "cancel a job"), ("pause", "pause a job (Manager 3.6+)"),
                        ("requeue", "requeue or resume a job")):
        p = command(name, help_)
        p.add_argument("job", help="job id, unique id prefix (4+ characters) or exact name of one of your jobs")
    p = command("log", "a task's log (the end of it)")
    p.add_argument("task", help="task id or unique id prefix (4+ characters)")
    p.add_argument("--job", help="look for the task in this job (default: in your jobs)")
    p.add_argument("--follow", action="store_true", help="keep printing new lines while the task runs")
    p.add_argument("--timeout", metavar="SECONDS", type=_seconds, default=DEFAULT_TIMEOUT,
                   help=f"stop following after this long (default {DEFAULT_TIMEOUT:g})")
    p = command("worker", "ask a worker to wake up, sleep or go offline")
    p.add_argument("worker", help="worker id, unique id prefix (4+ characters) or exact name")
    p.add_argument("status", choices=("awake", "asleep", "offline"))
    p.add_argument("--now", action="store_true", help="interrupt the current task (default: after it)")
    return main


# --- entry point -----------------------------------------------------------------------------


def execute(argv: list[str]) -> int:
    """The `flamenco` command; returns the exit code (Blender's -c calls it with the arguments)."""
    command = ""
    try:
        args = build_parser().parse_args(list(argv))
        command = args.command
        if args.manager is not None:
            try:
                args.manager = check_url(args.manager)
            except errors.ConfigurationError as ex:
                raise UsageError(f"--manager: {ex.message}") from None
        if not bpy.app.online_access:
            print(OFFLINE, file=sys.stderr)
            return 1
        with _overrides(args.manager, args.user):
            return COMMANDS[args.command](args)
    except _Exit as ex:
        return ex.code
    except UsageError as ex:
        sys.stderr.write(ex.usage or f"usage: {PROG} {command} … (see {PROG} {command} --help)\n")
        print(f"{PROG}: error: {ex}", file=sys.stderr)
        return 2
    except errors.FlamencoError as ex:
        print(f"Error: {ex.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _overrides(manager: str | None, user: str | None):
    """--manager and --user change the preferences for this run only."""
    prefs = preferences.get()
    if prefs is None:
        raise errors.ConfigurationError("Flamenco Panel is not enabled")
    saved = {"manager_url": prefs.manager_url, "user_name": prefs.user_name}
    if manager is not None:
        prefs.manager_url = manager
    if user is not None:
        prefs.user_name = user
    try:
        yield
    finally:
        prefs = preferences.get()   # looked up again: the struct outlives a file load, but be safe
        if prefs is not None:
            for name, value in saved.items():
                if getattr(prefs, name) != value:
                    setattr(prefs, name, value)


def _user() -> str:
    return preferences.get().user_name


def _call(op: str, args: dict) -> dict:
    """One core operation, run to the end (synchronously in background mode)."""
    outcome: dict = {}
    request_id = runtime.dispatch(op, args, lambda data: outcome.update(result=data),
                                  lambda ex: outcome.update(error=ex))
    while request_id and not outcome:   # only when something forced the helper path
        runtime.drain()
        time.sleep(0.02)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _job(job_id: str) -> Job:
    """One job as the Manager has it now."""
    return from_link(Job, _call("job", {"job_id": job_id}))


def _jobs() -> list[Job]:
    jobs = [from_link(Job, j) for j in _call("refresh", {})["jobs"]]
    return sorted(jobs, key=lambda j: timestamp(j.created), reverse=True)


# --- output ----------------------------------------------------------------------------------


def _emit(args, data, text: str) -> None:
    if args.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cell(value, width: int = 48) -> str:
    """Manager text made safe for a terminal (no escape sequences) and cut to fit a column."""
    text = logs.clean(str(value)).replace("\n", " ").replace("\t", " ")
    return text if len(text) <= width else text[:width - 1] + "…"


def table(headers: list[str], rows: list[list]) -> str:
    """Left-aligned columns, two spaces apart."""
    cells = [[_cell(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells) + "\n"


def _when(text: str) -> str:
    seconds = timestamp(text)
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M") if seconds else ""


def _percent(progress: float | None) -> str:
    return "" if progress is None else f"{progress * 100:.0f}%"


def _short(identifier: str) -> str:
    return identifier[:8]


# --- finding things by id prefix or name -----------------------------------------------------


def pick(kind: str, text: str, items: list, named: list = (), hint: str = ""):
    """The one item `text` means: its full id, a unique id prefix (4+ characters) or an exact name in `named`."""
    for item in items:
        if item.id == text:
            return item
    found = {item.id: item for item in named if item.name == text}
    if len(text) >= MIN_PREFIX:
        found.update((item.id, item) for item in items if item.id.lower().startswith(text.lower()))
    if len(found) == 1:
        return next(iter(found.values()))
    if len(found) > 1:
        listing = "; ".join(f"{_short(i.id)} {_cell(i.name, 40)} ({i.status})" for i in found.values())
        raise UsageError(f"{text!r} matches {len(found)} {kind}s: {listing}")
    if len(text) < MIN_PREFIX:
        raise UsageError(f"no {kind} named {text!r}; an id prefix needs at least {MIN_PREFIX} characters")
    raise errors.FlamencoError(f"No {kind} matches {text!r}{hint}")


def _job_id(text: str) -> str:
    if _UUID.match(text):
        return text     # the operation fetches it fresh anyway (and says so when it does not exist)
    jobs = _jobs()
    user = _user()
    return pick("job", text, jobs, [j for j in jobs if rules.is_mine(j, user)],
                " (names match only your own jobs; ids match any)").id


# --- commands --------------------------------------------------------------------------------


def _status(args) -> int:
    data = _call("ping", {})
    version = data.get("version", {})
    out = {"url": preferences.get().manager_url, "name": version.get("name", ""),
           "version": version.get("shortversion") or version.get("version", ""),
           "farm_status": data.get("farm_status", ""), "user_name": _user()}
    rows = [["Manager", out["name"]], ["URL", out["url"]], ["Version", out["version"]],
            ["Farm", out["farm_status"]], ["User", out["user_name"]]]
    _emit(args, out, "\n".join(f"{k:<8} {_cell(v, 200)}" for k, v in rows))
    return 0


def _setting_value(setting: jobtypes.JobSetting) -> str:
    if setting.eval:
        return f"auto: {setting.eval}"
    return "" if setting.default is None else str(setting.default)


def _types(args) -> int:
    types = jobtypes.parse_job_types({"job_types": _call("catalog", {})["job_types"]})
    parts = []
    for job_type in sorted(types, key=lambda t: t.name):
        rows = [[s.key, s.type + (f" ({', '.join(s.choices)})" if s.choices else ""), "yes" if s.required else "",
                 _setting_value(s), s.description] for s in job_type.settings]
        header = f"{job_type.name}  {job_type.label}" + (f": {job_type.description}" if job_type.description else "")
        body = table(["SETTING", "TYPE", "REQUIRED", "VALUE", "DESCRIPTION"], rows) if rows else "(no settings)\n"
        parts.append(_cell(header, 200) + "\n" + "".join("  " + line + "\n" for line in body.splitlines()))
    text = "\n".join(parts) if parts else "The Manager has no job types.\n"
    _emit(args, {"job_types": [dataclasses.asdict(t) for t in types]}, text)
    return 0


def _jobs_cmd(args) -> int:
    user = _user()
    jobs = [j for j in _jobs() if (args.all or rules.is_mine(j, user)) and (not args.status or j.status in args.status)]
    if not args.all and not user.strip():
        _progress("No user name set (preference or --user), so no job is yours; --all lists every job")
    headers = ["ID", "NAME", "STATUS", "PROGRESS", "PRIORITY", "TYPE"] + (["USER"] if args.all else []) + ["CREATED"]
    rows = [[_short(j.id), j.name, j.status, _percent(j.progress), j.priority, j.type]
            + ([j.user_name] if args.all else []) + [_when(j.created)] for j in jobs]
    data = {"jobs": [{**dataclasses.asdict(j), "progress": j.progress, "is_mine": rules.is_mine(j, user)}
                     for j in jobs]}
    _emit(args, data, table(headers, rows) if jobs else "No jobs.")
    return 0


def _workers(args) -> int:
    workers = sorted((from_link(Worker, w) for w in _call("refresh", {})["workers"]), key=lambda w: w.name)

    def status(w: Worker) -> str:
        if not w.status_change:
            return w.status
        return f"{w.status} → {w.status_change}" + (" (lazy)" if w.status_change_lazy else "")

    rows = [[_short(w.id), w.name, status(w), w.version, w.task_name or _short(w.task_id), _when(w.last_seen)]
            for w in workers]
    _emit(args, {"workers": [dataclasses.asdict(w) for w in workers]},
          table(["ID", "NAME", "STATUS", "VERSION", "TASK", "LAST SEEN"], rows) if workers else "No workers.")
    return 0


def _task_list(job_id: str) -> list[TaskSummary]:
    tasks = [from_link(TaskSummary, t) for t in _call("job_tasks", {"job_id": job_id})["tasks"]]
    return sorted(tasks, key=lambda t: (t.index_in_job, t.name))


def _tasks(args) -> int:
    job_id = _job_id(args.job)
    tasks = _task_list(job_id)
    rows = [[_short(t.id), t.name, t.status, _percent(t.progress), t.worker_name or _short(t.worker_id), t.task_type]
            for t in tasks]
    data = {"job_id": job_id, "tasks": [{**dataclasses.asdict(t), "progress": t.progress} for t in tasks]}
    _emit(args, data, table(["ID", "NAME", "STATUS", "PROGRESS", "WORKER", "TYPE"], rows) if tasks else "No tasks.")
    return 0


def _job_action(args) -> int:
    """Through the same operation as the panel: ownership and status re-checked on fresh data."""
    prefs = preferences.get()
    result = _call("job_action", {"job_id": _job_id(args.job), "action": args.command, "user_name": prefs.user_name,
                                  "allow_others": bool(prefs.allow_others), "reason": f"requested from {PROG}"})
    _emit(args, result, f"Job \"{_cell(result.get('job_name', ''), 200)}\" ({_short(result['job_id'])}): "
                        f"{result['status']}")
    return 0


def _worker(args) -> int:
    workers = [from_link(Worker, w) for w in _call("refresh", {})["workers"]]
    worker = pick("worker", args.worker, workers, workers)
    result = _call("worker_status", {"worker_id": worker.id, "status": args.status, "lazy": not args.now})
    _emit(args, result, f"Worker \"{_cell(result.get('worker_name', ''), 200)}\": {result['status']}"
                        + (" (after its current task)" if result["lazy"] else " (now)"))
    return 0


def _task_id(args) -> str:
    if _UUID.match(args.task):
        return args.task
    if args.job:
        job_ids = [_job_id(args.job)]
    else:
        user = _user()
        job_ids = [j.id for j in _jobs() if rules.is_mine(j, user)]
    tasks = [task for job_id in job_ids for task in _task_list(job_id)]
    return pick("task", args.task, tasks).id


def _log_document(data: dict, text: str) -> dict:
    return {**{k: data.get(k, "") for k in ("task_id", "task_name", "task_status", "job_id")}, "text": text}


def _log(args) -> int:
    task_id = _task_id(args)
    if not args.follow:
        data = _call("task_log", {"task_id": task_id})
        text = logs.clean(data.get("text", ""))
        if not text:
            _progress(f"Task \"{_cell(data.get('task_name', ''), 80)}\" has no log yet")
        _emit(args, _log_document(data, text), text)
        return 0
    deadline = time.monotonic() + args.timeout
    request = {"task_id": task_id, "follow": True, "offset": 0, "max_bytes": FIRST_LOG_BYTES}
    collected: list[str] = []
    first = True
    while True:
        data = _call("task_log", request)
        text = logs.clean(data.get("text", ""))
        if data.get("restarted"):
            if first:   # started inside the log: drop the cut first line
                text = text.split("\n", 1)[1] if "\n" in text else ""
            else:
                _progress("(the log started again: the task was requeued)")
        first = False
        request.update(offset=data.get("offset", 0), max_bytes=1024 * 1024)
        collected.append(text)
        if text and not args.json:
            sys.stdout.write(text)
            sys.stdout.flush()
        if data.get("task_status") not in logview.ACTIVE_TASK_STATUSES:
            break
        if time.monotonic() >= deadline:
            raise errors.FlamencoError(f"Stopped following after {args.timeout:g} s: the task is still "
                                       f"{data.get('task_status')}")
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
    if args.json:
        _emit(args, _log_document(data, "".join(collected)), "")
    return 0


@contextlib.contextmanager
def _blender_output_to_stderr():
    """Blender prints "Read blend…" and operator reports on stdout; keep stdout for the command's output."""
    def flush_c() -> None:
        try:
            import ctypes
            (ctypes.CDLL("ucrtbase") if os.name == "nt" else ctypes.CDLL(None)).fflush(None)
        except (OSError, AttributeError):
            pass

    sys.stdout.flush()
    flush_c()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        flush_c()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _op_message(ex: RuntimeError) -> str:
    """bpy.ops turns an ERROR report into RuntimeError("Error: <message>")."""
    return re.sub(r"^\s*Error:\s*", "", str(ex)).strip()


def _tag_id(name: str) -> str:
    if name.strip().lower() in ("", "all"):
        return ""
    for tag in settings.worker_tags:
        if name in (tag.get("name"), tag.get("id")):
            return tag["id"]
    known = ", ".join(sorted(t.get("name") or t.get("id", "") for t in settings.worker_tags)) or "none"
    raise UsageError(f"unknown worker tag {name!r}; the Manager has: {known}")


def _submit(args) -> int:
    path = os.path.abspath(os.path.expanduser(args.blendfile))
    if not os.path.isfile(path):
        raise UsageError(f"no such file: {path}")
    _progress(f"Opening {path}")
    try:
        with _blender_output_to_stderr():
            bpy.ops.wm.open_mainfile(filepath=path, load_ui=False, use_scripts=False)   # never run its scripts
    except RuntimeError as ex:
        raise errors.FlamencoError(f"Cannot open {path}: {_op_message(ex)}") from None
    _progress("Loading job types")
    submit.load_catalog_now()
    props = bpy.context.scene.flamenco_panel
    job_type = args.type or props.job_type or DEFAULT_JOB_TYPE
    if job_type not in settings.catalog:
        known = ", ".join(sorted(settings.catalog)) or "none"
        raise UsageError(f"unknown job type {job_type!r}; the Manager has: {known}")
    props.job_type = job_type
    if args.priority is not None:
        props.priority = args.priority
    if args.tag is not None:
        props.worker_tag = _tag_id(args.tag)
    props.submit_paused = args.paused
    st = state.get()
    st.last_submitted_id = ""
    _progress(f"Submitting ({job_type})")
    try:
        with _blender_output_to_stderr():
            bpy.ops.flamenco_panel.submit_job(job_type=job_type, job_name=args.name or "",
                                              priority=-1 if args.priority is None else args.priority,
                                              settings=json.dumps(dict(args.overrides)))
    except RuntimeError as ex:
        raise errors.FlamencoError(_op_message(ex)) from None
    st = state.get()
    if not st.last_submitted_id:
        raise errors.FlamencoError("Nothing was submitted")
    _progress(f"Submitted job {st.last_submitted_id}")   # before any follow-up request that could fail
    try:
        job = _job(st.last_submitted_id)
    except errors.FlamencoError as ex:   # the job exists: a pipeline must not resubmit it
        _progress(f"Could not read the submitted job back: {ex.message}")
        job = Job(id=st.last_submitted_id, name=args.name or "", status="queued")
        if args.wait:
            raise
    if args.wait:
        job = _wait(job, args.timeout)
    _emit(args, {"job": {**dataclasses.asdict(job), "progress": job.progress}},
          f"Job \"{_cell(job.name, 200)}\" {job.id}: {job.status}")
    return 0 if not args.wait or job.status == "completed" else 1


def _wait(job: Job, timeout: float) -> Job:
    """Polls the job until it completes, fails or is canceled; prints each change on stderr."""
    deadline = time.monotonic() + timeout
    seen = None
    while True:
        now = (job.status, _percent(job.progress) if job.status == "active" else "")
        if now != seen:
            _progress(f"Job \"{_cell(job.name, 80)}\": {job.status}" + (f" {now[1]}" if now[1] else ""))
            seen = now
        if job.status in rules.FINISHED_JOB_STATUSES:
            return job
        if time.monotonic() >= deadline:
            _progress(f"Gave up waiting after {timeout:g} s: the job is still {job.status}")
            return job
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        job = _job(job.id)


COMMANDS = {
    "status": _status, "types": _types, "jobs": _jobs_cmd, "workers": _workers, "tasks": _tasks,
    "submit": _submit, "cancel": _job_action, "pause": _job_action, "requeue": _job_action,
    "log": _log, "worker": _worker,
}
