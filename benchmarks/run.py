# SPDX-License-Identifier: GPL-3.0-or-later
"""Flamenco Panel benchmarks: one table of medians, each against a baseline measured in the same run.

Run from anywhere, with a test venv's Python (real `bpy` in module mode):

    ~/.cache/flamenco-panel/venv-bpy-4.2.23/bin/python benchmarks/run.py [--quick] [--markdown FILE]
    ~/.cache/flamenco-panel/venv-bpy-5.0.1/bin/python benchmarks/run.py

The extension zip is built with build.py into a temp folder (or taken from $FLAMENCO_PANEL_ZIP) and
installed into bpy exactly as tests/blender/conftest.py does, with BLENDER_USER_RESOURCES pointing at a
temp folder (your own Blender config is never touched), and online access turned on. The fake Manager
comes from tests/fakemanager.py. Nothing here asserts: it prints the table (plain, then Markdown with
the date, commit and machine), marks goals met or missed, and profiles the main-thread refresh work
when it misses its 15 ms goal.
`--quick` takes fewer repeats and smaller files (a smoke run, ~20 s; the full run takes ~35 s).
"""
from __future__ import annotations

import argparse
import cProfile
import copy
import datetime
import io
import json
import os
import pathlib
import platform
import pstats
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = pathlib.Path(__file__).resolve().parent
MODULE = "bl_ext.user_default.flamenco_panel"
USER = "ana"
WORKERS = 500
MB = 1024 * 1024

_USER_DIR = tempfile.mkdtemp(prefix="flamenco-panel-bench-user-")
os.environ["BLENDER_USER_RESOURCES"] = _USER_DIR
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "blender"), str(BENCH)]

import bpy  # noqa: E402  (after BLENDER_USER_RESOURCES is set)
import requests  # noqa: E402

from fakemanager import FakeManager  # noqa: E402
from scenes import save_shot_with_dependencies  # noqa: E402
from recording_layout import draw_panel  # noqa: E402
from shaman_sink import ShamanSink  # noqa: E402


# --------------------------------------------------------------------------- measuring and the table


def samples(fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] | None = None,
            number: int = 1) -> list[float]:
    """Seconds per call, one sample per repeat (each sample: `number` calls after `setup()`)."""
    out = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        start = time.perf_counter()
        for _ in range(number):
            fn()
        out.append((time.perf_counter() - start) / number)
    return out


def median(fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] | None = None, number: int = 1) -> float:
    return statistics.median(samples(fn, repeats, setup, number))


def paired(fn_a: Callable[[], Any], fn_b: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Medians of a and b, measured alternately so drifting machine load hits both alike."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeats):
        a += samples(fn_a, 1)
        b += samples(fn_b, 1)
    return statistics.median(a), statistics.median(b)


def fast_median(fn: Callable[[], Any], repeats: int, sample_seconds: float = 0.02) -> float:
    """For calls far below a millisecond: enough calls per sample to last `sample_seconds`."""
    fn()
    number, start = 1, time.perf_counter()
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        if time.perf_counter() - start >= sample_seconds / 4 or number >= 1 << 20:
            break
        number *= 4
    number = max(1, int(number * sample_seconds / max(time.perf_counter() - start, 1e-9)))
    return median(fn, repeats, number=number)


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: float) -> str:
    if abs(n) >= MB:
        return f"{n / MB:.1f} MiB"
    if abs(n) >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{int(n)} B"


@dataclass
class Row:
    name: str
    value: str
    baseline: str = "—"
    ratio: str = "—"
    goal: str = "—"
    met: bool | None = None

    def goal_text(self) -> str:
        if self.met is None:
            return self.goal
        return f"{self.goal} (met)" if self.met else f"{self.goal} (MISSED)"


ROWS: list[Row] = []
NOTES: list[str] = []


def add(name: str, value: str, baseline: str = "—", ratio: float | str | None = None, goal: str = "—",
        met: bool | None = None) -> None:
    if ratio is None or isinstance(ratio, str):
        text = ratio or "—"
    else:
        text = f"{ratio:.2f}×" if ratio >= 0.1 else f"{ratio:.2g}×"
    row = Row(name, value, baseline, text, goal, met)
    ROWS.append(row)
    print(f"  {name}: {value} | baseline {baseline} | ratio {text} | goal {row.goal_text()}", flush=True)


def time_row(name: str, value: float, base: float | None, base_label: str, goal_s: float | None = None,
             goal: str = "—") -> None:
    met = None if goal_s is None else value <= goal_s
    add(name, fmt_time(value), f"{fmt_time(base)} ({base_label})" if base is not None else "—",
        value / base if base else None, goal, met)


def table_plain() -> str:
    header = ("name", "value", "baseline", "ratio", "goal")
    cells = [header] + [(r.name, r.value, r.baseline, r.ratio, r.goal_text()) for r in ROWS]
    widths = [max(len(c[i]) for c in cells) for i in range(5)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(5)).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table_markdown() -> str:
    lines = ["| name | value | baseline | ratio | goal |", "|---|---|---|---|---|"]
    for r in ROWS:
        goal = r.goal if r.met is None else (f"{r.goal} ✓" if r.met else f"{r.goal} **✗ missed**")
        lines.append(f"| {r.name} | {r.value} | {r.baseline} | {r.ratio} | {goal} |")
    return "\n".join(lines)


def profile_text(profiler: cProfile.Profile, entries: int) -> str:
    """The top `entries` by own time, with the long folder names cut off."""
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(entries)
    body = "\n".join(line for line in text.getvalue().splitlines()
                     if line.strip() and not line.lstrip().startswith(("Ordered by", "List reduced")))
    extension = pathlib.Path(sub("core").__file__).resolve().parents[2]
    for prefix in (str(extension) + os.sep, os.path.dirname(os.__file__) + os.sep):
        body = body.replace(prefix, "")
    return body


def revision() -> str:
    """The commit measured, "+changes" when flamenco_panel/ differs from it (what build.py packs)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "flamenco_panel",
                                "blender_manifest.toml"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + (" +changes" if dirty else "")


def machine() -> str:
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cores} cores (nproc){', ' + cpu if cpu else ''}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}; bpy {bpy.app.version_string}")


# --------------------------------------------------------------------------- installing the extension


def built_zip(tmp: pathlib.Path) -> pathlib.Path:
    explicit = os.environ.get("FLAMENCO_PANEL_ZIP")
    if explicit:
        return pathlib.Path(explicit)
    out = tmp / "dist"
    subprocess.run([sys.executable, str(ROOT / "build.py"), "--output-dir", str(out)], check=True,
                   capture_output=True)
    return next(out.glob("flamenco_panel-*.zip"))


def install(tmp: pathlib.Path):
    result = bpy.ops.extensions.package_install_files(filepath=str(built_zip(tmp)), repo="user_default",
                                                      enable_on_install=True)
    if result != {'FINISHED'}:
        raise SystemExit(f"installing the extension failed: {result}")
    bpy.context.preferences.system.use_online_access = True
    return sys.modules[MODULE]


def uninstall() -> None:
    from importlib import import_module
    import_module(MODULE + ".blender.runtime").stop()
    repos = bpy.context.preferences.extensions.repos
    index = next(i for i, r in enumerate(repos) if r.module == "user_default")
    bpy.ops.extensions.package_uninstall(repo_index=index, pkg_id="flamenco_panel")


def sub(name: str):
    from importlib import import_module
    return import_module(f"{MODULE}.{name}")


def prefs():
    return bpy.context.preferences.addons[MODULE].preferences


# --------------------------------------------------------------------------- 1. register()


def bench_register(module, repeats: int) -> None:
    print("register()", flush=True)
    reg, unreg = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        module.unregister()
        unreg.append(time.perf_counter() - start)
        start = time.perf_counter()
        module.register()
        reg.append(time.perf_counter() - start)

    class BENCH_OT_trivial(bpy.types.Operator):
        bl_idname = "bench.trivial"
        bl_label = "Trivial"

        def execute(self, context):
            return {'FINISHED'}

    base_reg, base_unreg = [], []
    for _ in range(max(repeats, 20)):
        start = time.perf_counter()
        bpy.utils.register_class(BENCH_OT_trivial)
        base_reg.append(time.perf_counter() - start)
        start = time.perf_counter()
        bpy.utils.unregister_class(BENCH_OT_trivial)
        base_unreg.append(time.perf_counter() - start)
    label = "1 trivial Operator"
    time_row(f"register() (median of {repeats} unregister/register cycles)", statistics.median(reg),
             statistics.median(base_reg), label, 0.030, "≤ 30 ms")
    time_row("unregister()", statistics.median(unreg), statistics.median(base_unreg), label)
    bpy.context.preferences.system.use_online_access = True


# --------------------------------------------------------------------------- 5. packing, 7. Shaman


def write_png(path: pathlib.Path, rng: random.Random, side: int = 512) -> None:
    """An RGBA noise PNG of about side²·4 bytes (noise does not compress): a real image, quickly."""
    row = side * 4
    pixels = rng.randbytes(side * row)
    raw = b"".join(b"\x00" + pixels[y * row:(y + 1) * row] for y in range(side))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


def make_project(root: pathlib.Path, images: int) -> pathlib.Path:
    """<root>/scenes/shot.blend using `images` ~1 MiB PNGs in textures/set_*/ and a linked libs/lib.blend."""
    rng = random.Random(42)
    paths = [root / "textures" / f"set_{i % 5}" / f"tex_{i:02d}.png" for i in range(images)]
    for path in paths:
        write_png(path, rng)
    bpy.ops.wm.read_homefile(use_empty=True)
    shot = save_shot_with_dependencies(root, paths)
    bpy.ops.wm.read_homefile(use_empty=True)
    # An hour old: the Shaman hash cache does not remember files changed in the last few seconds.
    old = time.time() - 3600
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (old, old))
    return shot


def bench_pack(tmp: pathlib.Path, project: pathlib.Path, shot: pathlib.Path, repeats: int) -> None:
    print("BAT pack", flush=True)
    packing = sub("core.packing")
    results = []

    def pack_once():
        target = tmp / f"pack-{len(results)}"
        results.append(packing.pack(str(shot), str(project), str(target)))
        shutil.rmtree(target)

    pack_once()
    result = results[-1]
    sources = sorted(result.packed)
    copies = []

    def copy_once():
        target = tmp / f"copy-{len(copies)}"
        copies.append(packing.copy_files(sources, str(project), str(target)))
        shutil.rmtree(target)

    value, base = paired(pack_once, copy_once, repeats)
    time_row(f"BAT pack: {result.files} files, {fmt_bytes(result.bytes)} (missing: {len(result.missing)})",
             value, base, f"copy_files of the same {copies[-1].files} files")


def bench_shaman_resubmit(tmp: pathlib.Path, project: pathlib.Path, shot: pathlib.Path, repeats: int) -> None:
    print("Shaman resubmit", flush=True)
    packing, shaman = sub("core.packing"), sub("core.shaman")
    client_module = sub("core.client")
    start = time.perf_counter()
    collected = packing.collect(str(shot), str(project), str(tmp / "collect-work"))
    collect_time = time.perf_counter() - start
    files = collected.files
    cache_dir = tmp / "hash-cache"
    with FakeManager(shaman=True) as fm:
        client = client_module.ManagerClient(client_module.Connection(url=fm.url, timeout=60.0, ignore_proxy=True))
        start = time.perf_counter()
        first = shaman.upload(client, files, "bench/first", shaman.HashCache(cache_dir))
        first_time = time.perf_counter() - start
        add(f"Shaman first upload: {first.files_total} files", f"{fmt_bytes(first.bytes_uploaded)} sent",
            f"{fmt_bytes(collected.bytes)} collected", first.bytes_uploaded / collected.bytes if collected.bytes else None,
            "all of it")
        add("↳ first upload: time, hashing included", fmt_time(first_time), fmt_time(collect_time) +
            " (packing.collect before it)")
        sent, runs = [], []
        stores_before = fm.count("POST", r"/api/v3/shaman/files/.*")

        def resubmit():
            cache = shaman.HashCache(cache_dir)   # loaded from disk, as a new submission would
            result = shaman.upload(client, files, f"bench/again-{len(runs)}", cache)
            runs.append(result)
            sent.append(result.bytes_uploaded)

        value = median(resubmit, repeats)
        stores = fm.count("POST", r"/api/v3/shaman/files/.*") - stores_before
        local = [path for path, _rel in files]
        base = fast_median(lambda: [os.stat(p) for p in local], 5)
        add(f"Shaman resubmit unchanged: bytes sent (max of {repeats})", f"{fmt_bytes(max(sent))}",
            f"{stores} file uploads seen by the fake", None, "0 B", max(sent) == 0)
        time_row("Shaman resubmit unchanged: time", value, base, f"os.stat of the {len(local)} files")
        cache = shaman.HashCache(cache_dir)
        specs = []
        for path, rel in files:
            sha, size = cache.checksum(path)
            specs.append({"sha": sha, "size": size, "path": rel})
        session = requests.Session()
        session.trust_env = False

        def protocol_only():
            for path, body in (("requirements", {"files": specs}),
                               ("create", {"files": specs, "checkoutPath": f"bench/raw-{time.perf_counter_ns()}"})):
                response = session.post(f"{fm.url}/api/v3/shaman/checkout/{path}", json=body, timeout=60)
                response.raise_for_status()
                response.json()

        protocol_only()
        value, base = paired(resubmit, protocol_only, repeats)
        time_row("↳ the same, against the protocol's floor", value, base,
                 "requests.post of its 2 requests: requirements, checkout")
        session.close()
        client.close()
    shutil.rmtree(tmp / "collect-work", ignore_errors=True)


# --------------------------------------------------------------------------- 6. SHA-256


def bench_sha(tmp: pathlib.Path, size: int, repeats: int) -> None:
    print("SHA-256", flush=True)
    shaman = sub("core.shaman")
    import hashlib
    path = tmp / "hash.bin"
    block = random.Random(7).randbytes(MB)
    with open(path, "wb") as fh:
        for _ in range(size // MB):
            fh.write(block)
    data = path.read_bytes()   # also puts the file in the page cache
    value, base = paired(lambda: shaman.sha256_file(str(path)), lambda: hashlib.sha256(data).hexdigest(), repeats)
    mbs = size / MB
    add(f"SHA-256 sha256_file, {size // MB} MiB in page cache", f"{mbs / value:.0f} MiB/s ({fmt_time(value)})",
        f"{mbs / base:.0f} MiB/s (hashlib on bytes in memory)", value / base)
    del data
    path.unlink()


# --------------------------------------------------------------------------- 8. memory of a big upload


def bench_upload_memory(tmp: pathlib.Path, size: int) -> None:
    print("Shaman upload memory", flush=True)
    big, tiny = tmp / "big.bin", tmp / "tiny.bin"
    with open(big, "wb") as fh:
        fh.truncate(size)          # sparse: no disk space, reads as zeros
    tiny.write_bytes(b"warm-up\n")
    extension_dir = pathlib.Path(sub("core").__file__).resolve().parents[1]
    paths = [str(extension_dir.parent)] + [p for p in sys.path if p]
    with ShamanSink() as sink:
        # Peak RSS comes from the child's own VmHWM: its ru_maxrss (wait4, RUSAGE_CHILDREN) also counts the
        # parent's RSS at fork/exec time (Linux keeps the pre-exec high-water mark), i.e. this bpy process.
        proc = subprocess.Popen([sys.executable, "-I", str(BENCH / "upload_child.py"), json.dumps(paths),
                                 extension_dir.name, sink.url, str(big), str(tiny)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=600)
        received = sink.bytes_received
    big.unlink()
    if proc.returncode != 0 or not out.strip():
        add(f"Helper peak RSS, {size // MB} MiB Shaman upload", "failed", "—", None, "—", False)
        NOTES.append("upload child failed:\n" + err.decode(errors="replace")[-2000:])
        return
    info = json.loads(out.strip().splitlines()[-1])
    peak, base = info["peak_hwm_kib"] * 1024, info["baseline_rss_kib"] * 1024
    growth = peak - base
    add(f"Helper peak RSS (VmHWM), {size // MB} MiB sparse file via Shaman",
        f"{fmt_bytes(peak)} (+{fmt_bytes(growth)})", f"{fmt_bytes(base)} (RSS before the upload)", peak / base,
        "streamed: +≤ 32 MiB", growth <= 32 * MB)
    add("↳ upload time; bytes the sink received", fmt_time(info["seconds"]),
        f"{fmt_bytes(received)} received, {fmt_bytes(info['bytes_uploaded'])} reported sent")


# --------------------------------------------------------------------------- 2–4. the farm view


def add_jobs(fm: FakeManager, count: int, start: int) -> None:
    """`count` jobs, half mine, in a mix of statuses (some with progress from steps)."""
    statuses = ("active", "queued", "completed", "failed", "paused", "canceled", "active", "completed")
    per = count // len(statuses)
    for k, status in enumerate(statuses):
        n = per if k < len(statuses) - 1 else count - per * (len(statuses) - 1)
        for user, part in ((USER, n // 2), ("bob", n - n // 2)):
            ids = fm.state.add_jobs(part, name=f"shot {start + k}-{user}-{{i:05d}}", status=status,
                                    metadata={"user.name": user}, activity=f"{status} for a while")
            if status == "active":
                for i, job_id in enumerate(ids):
                    job = fm.state.jobs[job_id]
                    job["steps_total"], job["steps_completed"] = 100, i % 100


def add_workers(fm: FakeManager, count: int) -> None:
    tag = fm.state.add_tag("gpu")
    for i in range(count):
        fm.state.add_worker(f"worker-{i:03d}", status=("awake", "asleep", "offline")[i % 3],
                            tags=[tag["id"]] if i % 4 == 0 else [])


def fetch_refresh() -> tuple[dict, dict]:
    """The refresh operator's own request against the fake: (its args, the result the helper would send).

    Runs `bpy.ops.flamenco_panel.refresh()` (synchronous in module mode) with `operations.run`
    wrapped, so the args are exactly what the panel sends, whatever they become.
    """
    operations = sub("core.operations")
    real, seen = operations.run, []

    def recording(name, client, args, progress=None):
        result = real(name, client, args, progress)
        if name == "refresh":
            seen.append((copy.deepcopy(dict(args)), result))
        return result

    operations.run = recording
    try:
        bpy.ops.flamenco_panel.refresh()
    finally:
        operations.run = real
    return seen[-1]


def changed_copy(data: dict, fraction: float = 0.01) -> dict:
    """The same refresh result with `fraction` of the jobs changed (status, progress, updated, activity)."""
    other = copy.deepcopy(data)
    step = int(1 / fraction)
    if "job_rows" in other:
        fields = list(sub("core.operations").JOB_ROW_FIELDS)
        status, progress, updated, activity = (fields.index(f) for f in ("status", "progress", "updated", "activity"))
        for row in other["job_rows"][::step]:
            row[status] = "completed" if row[status] != "completed" else "active"
            row[progress] = 0.77
            row[updated] = row[updated][:-1] + ("1" if row[updated][-1] != "1" else "2")
            row[activity] = "changed"
        other["job_rows_digest"] = "changed"
    else:
        for job in other.get("jobs", [])[::step]:
            job["status"] = "completed" if job["status"] != "completed" else "active"
            job["steps_total"], job["steps_completed"] = 100, 77
            job["updated"] = job["updated"][:-1] + ("1" if job["updated"][-1] != "1" else "2")
            job["activity"] = "changed"
    return other


def bench_roundtrip(fm: FakeManager, n: int, args: dict, repeats: int) -> float:
    operations, client_module = sub("core.operations"), sub("core.client")
    client = client_module.ManagerClient(client_module.Connection(url=fm.url, timeout=60.0, ignore_proxy=True))
    operations.run("refresh", client, args)          # also caches the capabilities (version, spec)
    session = requests.Session()
    session.trust_env = False
    endpoints = ["/status", "/jobs", "/worker-mgt/workers", "/worker-mgt/tags"]

    def raw():
        for path in endpoints:
            response = session.get(fm.url + "/api/v3" + path, timeout=60)
            response.raise_for_status()
            response.json()

    raw()
    value, base = paired(lambda: operations.run("refresh", client, args), raw, repeats)
    time_row(f"Refresh round trip (helper side), {n:,} jobs, {WORKERS} workers", value, base,
             "requests.get + .json() of status, jobs, workers, tags")
    client.close()
    session.close()
    return value


def bench_interactive(fm: FakeManager, n: int, helper_side: float, apply_changed: float, repeats: int) -> None:
    """The panel's real path: refresh operator → helper process → JSON line over the pipe → timer tick applies it.

    Before each refresh 1% of the farm's jobs change, so the helper sends the rows again. The timer is
    modelled as ticking every TICK_BUSY from the moment of the click (Blender's persistent timer may
    first wait up to TICK_IDLE). Records the time until the result is applied and the longest tick.
    """
    runtime = sub("blender.runtime")
    ids = list(fm.state.jobs)

    def one_refresh(r: int, profiler: cProfile.Profile | None = None) -> tuple[float, list[float]]:
        for k, job_id in enumerate(ids[r % 100::100]):
            fm.state.set_job_status(job_id, ("active", "completed", "queued")[(r + k) % 3])
        start = time.perf_counter()
        bpy.ops.flamenco_panel.refresh()
        tick_times = []
        while runtime.busy() and time.perf_counter() - start < 60:
            time.sleep(runtime.TICK_BUSY)
            if profiler is not None:
                profiler.enable()
            t0 = time.perf_counter()
            runtime.tick()
            tick_times.append(time.perf_counter() - t0)
            if profiler is not None:
                profiler.disable()
        return time.perf_counter() - start, tick_times

    goal_s, goal = (0.015, "≤ 15 ms") if n >= 10_000 else (None, "—")
    latencies, longest, totals, ticks = [], [], [], []
    runtime.force_interactive = True
    try:
        one_refresh(0)                  # starts the helper: not counted
        for r in range(1, repeats + 1):
            latency, tick_times = one_refresh(r)
            latencies.append(latency)
            longest.append(max(tick_times))
            totals.append(sum(tick_times))
            ticks.append(len(tick_times))
        if goal_s is not None and statistics.median(longest) > goal_s:
            profiler = cProfile.Profile()
            for r in range(repeats + 1, repeats + 4):
                one_refresh(r, profiler)
            body = profile_text(profiler, 12)
            NOTES.append(f"cProfile of the timer ticks of 3 interactive refreshes (1% changed), {n:,} jobs, "
                         f"by own time:\n{body}")
    finally:
        runtime.force_interactive = False
        runtime.stop()          # ends the helper process; the timer is registered again below
        runtime.start_timer()
    st = sub("blender.state").get()
    if st.connection != 'CONNECTED' or len(st.jobs) != n:
        NOTES.append(f"interactive refresh at {n} jobs ended {st.connection} with {len(st.jobs)} jobs: {st.message}")
    value = statistics.median(latencies)
    add(f"Refresh via helper process, {n:,} jobs, 1% changed: click → applied (ticks every 0.1 s)",
        f"{fmt_time(value)} ({statistics.median(ticks):.0f} ticks)", f"{fmt_time(helper_side)} (helper-side round trip)",
        value / helper_side)
    time_row(f"↳ longest main-thread tick of it (drain + decode + apply), {n:,} jobs", statistics.median(longest),
             apply_changed, "apply only, 1% changed", goal_s, goal)
    add(f"↳ main-thread time of all its ticks, {n:,} jobs", fmt_time(statistics.median(totals)))


def bench_helper_message(data: dict, n: int, repeats: int) -> None:
    """What Channel.drain() does on the main thread with the result line: LineBuffer in pipe-sized reads + JSON."""
    protocol = sub("link.protocol")
    line = protocol.encode(protocol.result(1, data))
    pieces = [line[i:i + 65536] for i in range(0, len(line), 65536)]   # Linux pipe capacity

    def drain_like():
        buffer = protocol.LineBuffer()
        for piece in pieces:
            for complete in buffer.feed(piece):
                protocol.decode(complete)

    value = median(drain_like, repeats)
    base = median(lambda: json.loads(line), repeats)
    time_row(f"Helper result → dict on main thread, {n:,} jobs ({fmt_bytes(len(line))} in 64 KiB reads)",
             value, base, "json.loads of the line")


def clear_state(st) -> None:
    state = sub("blender.state")
    st.jobs.clear()
    st.workers.clear()
    st.tasks.clear()
    st.active_job_index = -1
    state.job_details.clear()
    forget = getattr(state, "forget_mirrors", None)   # the row mirrors of the compact refresh
    if forget is not None:
        forget()


def bench_apply(data: dict, n: int, repeats: int) -> float:
    state = sub("blender.state")
    st = state.get()
    changed = changed_copy(data)

    def touch_each():
        for job in st.jobs:
            job.id

    state.apply_refresh(st, data, USER)
    base = median(touch_each, repeats)
    label = "reading .id of every job item once"
    goal_s, goal = (0.015, "≤ 15 ms") if n >= 10_000 else (None, "—")
    first = median(lambda: state.apply_refresh(st, data, USER), max(3, repeats // 2), setup=lambda: clear_state(st))
    time_row(f"Apply refresh, first (empty state), {n:,} jobs, {WORKERS} workers", first, base, label)
    state.apply_refresh(st, data, USER)
    twins = [copy.deepcopy(data), data]    # equal but not the same objects, as decoded from each answer

    def apply_same():
        state.apply_refresh(st, twins[0], USER)
        twins.reverse()

    same = median(apply_same, repeats)
    time_row(f"Apply refresh, steady state, same data, {n:,} jobs", same, base, label, goal_s, goal)
    flip = [changed, data]

    def apply_changed():
        state.apply_refresh(st, flip[0], USER)
        flip.reverse()

    one_percent = median(apply_changed, repeats)
    time_row(f"Apply refresh, steady state, 1% of jobs changed, {n:,} jobs", one_percent, base, label, goal_s, goal)
    if "job_rows" in data:   # the usual case: the helper saw the same digest and left the rows out
        state.apply_refresh(st, data, USER)
        skipped = {k: v for k, v in data.items() if k != "job_rows"}
        value = median(lambda: state.apply_refresh(st, skipped, USER), repeats)
        time_row(f"Apply refresh, unchanged (rows left out by digest), {n:,} jobs", value, base, label, goal_s, goal)
    if goal_s is not None and max(same, one_percent) > goal_s:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(6):
            apply_changed()
        profiler.disable()
        body = profile_text(profiler, 14)
        NOTES.append(f"cProfile of 6 steady-state applies (1% changed), {n:,} jobs, by own time:\n{body}")
    state.apply_refresh(st, data, USER)
    return one_percent


def bench_draw(n: int, repeats: int) -> None:
    st = sub("blender.state").get()
    if st.active_job_index < 0:
        st.active_job_index = 0    # a selected job: the details and actions are drawn too
    context = bpy.context
    main, jobs = bpy.types.FLAMENCO_PT_main, bpy.types.FLAMENCO_PT_jobs
    layout_check = draw_panel(jobs, context)
    if ("hidden", {}) in layout_check.log or not layout_check.operators():
        NOTES.append(f"jobs panel drew nothing useful at {n} jobs: {layout_check.log[:5]}")

    class Trivial:
        def draw(self, context):
            self.layout.label(text="Flamenco")

    base = fast_median(lambda: draw_panel(Trivial, context), repeats)
    label = "draw() of one label, same recording layout"
    time_row(f"Draw main panel, {n:,} jobs", fast_median(lambda: draw_panel(main, context), repeats), base, label,
             0.001, "≤ 1 ms")
    time_row(f"Draw jobs panel (job selected), {n:,} jobs", fast_median(lambda: draw_panel(jobs, context), repeats),
             base, label, 0.001, "≤ 1 ms")

    class FakeList:
        filter_name = ""
        status_filter = ""
        bitflag_filter_item = 1 << 30

    ul = bpy.types.FLAMENCO_UL_jobs
    value = median(lambda: ul.filter_items(FakeList(), context, st, "jobs"), repeats)

    def bare():
        for job in st.jobs:
            job.is_mine

    base = median(bare, repeats)
    time_row(f"List filter (FLAMENCO_UL_jobs.filter_items), {n:,} jobs", value, base,
             "loop reading is_mine of each item")


def bench_farm_view(repeats: int) -> None:
    with FakeManager() as fm:
        prefs().manager_url = fm.url
        prefs().user_name = USER
        add_workers(fm, WORKERS)
        have = 0
        for n in (1_000, 10_000):
            print(f"farm view, {n:,} jobs", flush=True)
            add_jobs(fm, n - have, have)
            have = n
            st = sub("blender.state").get()
            clear_state(st)
            args, data = fetch_refresh()
            helper_side = bench_roundtrip(fm, n, args, repeats)
            apply_changed = bench_apply(data, n, repeats)
            bench_interactive(fm, n, helper_side, apply_changed, max(3, repeats - 2))
            bench_helper_message(data, n, max(3, repeats // 2))
            bench_draw(n, repeats)
        clear_state(sub("blender.state").get())


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller files (a smoke run)")
    parser.add_argument("--markdown", metavar="FILE", help="also write the Markdown section to FILE")
    args = parser.parse_args()
    quick = args.quick
    repeats = 3 if quick else 7
    started = time.perf_counter()
    when = datetime.datetime.now().astimezone()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="flamenco-panel-bench-"))
    try:
        module = install(tmp)
        bench_register(module, 5 if quick else 20)
        bench_farm_view(repeats)
        project = tmp / "project"
        shot = make_project(project, 50)
        bench_pack(tmp, project, shot, 2 if quick else 5)
        bench_sha(tmp, (64 if quick else 256) * MB, 3 if quick else 5)
        bench_shaman_resubmit(tmp, project, shot, 3 if quick else 7)
        bench_upload_memory(tmp, (256 if quick else 1024) * MB)
    finally:
        try:
            uninstall()
        except Exception as ex:  # report, keep the table
            print(f"uninstall failed: {type(ex).__name__}: {ex}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(_USER_DIR, ignore_errors=True)
    took = time.perf_counter() - started
    title = (f"Benchmarks{' (--quick)' if quick else ''} of {revision()}, {when:%Y-%m-%d %H:%M %Z}; {machine()}; "
             f"run took {took:.0f} s. Medians; ratio = value / baseline (same run).")
    missed = [r for r in ROWS if r.met is False]
    print("\n" + title + "\n")
    print(table_plain())
    for note in NOTES:
        print("\n" + note)
    markdown = [f"_{title}_", "", table_markdown()]
    if missed:
        markdown += ["", "Missed: " + "; ".join(f"{r.name} = {r.value} (goal {r.goal})" for r in missed) + "."]
    for note in NOTES:
        markdown += ["", "```", note, "```"]
    text = "\n".join(markdown) + "\n"
    print("\n--- Markdown ---\n")
    print(text)
    if args.markdown:
        pathlib.Path(args.markdown).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
