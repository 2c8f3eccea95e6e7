# SPDX-License-Identifier: GPL-3.0-or-later
"""BAT packing: a blend file and everything it uses, copied into job storage.

Built on blender-asset-tracer (BAT) 1.23's `Packer`. What this module adds:
- the packed layout keeps the blend file's place below the project root, and
  `output_blendfile` says where the packed file really is (`<target>/scenes/shot.blend`);
- missing files are always reported, never swallowed;
- `cross_check` compares the pack with what Blender itself knows, because BAT
  1.23 misses images used only inside linked libraries of Blender 5.0 files;
- progress and abort work mid-file (a chunked copier), and an aborted or
  failed pack removes its half-written target folder;
- `collect` gives the same file list without copying, for Shaman uploads.

BAT keeps a process-wide cache of open blend files, so packs in one process
are serialised and the cache is closed after each one (a long-lived helper
would otherwise read stale files and keep them open).
"""
from __future__ import annotations

import dataclasses
import errno
import functools
import os
import pathlib
import queue
import re
import shutil
import tempfile
import threading
import time
import types
from typing import Any, Callable, Iterable

from . import errors

Progress = Callable[[dict], None]
ShouldAbort = Callable[[], bool]

COPY_CHUNK = 8 * 1024 * 1024
PROGRESS_INTERVAL = 0.1        # seconds between byte-progress reports
OUTSIDE_PROJECT = "_outside_project"   # where BAT puts files from outside the project root
INFO_FILE = "pack-info.txt"            # BAT writes it at the top of every pack
_BAT_LOCK = threading.Lock()
_UDIM_TOKEN = "<UDIM>"


class PackError(errors.FlamencoError):
    """Packing failed (not aborted): a file could not be read or written."""


@dataclasses.dataclass
class PackResult:
    output_blendfile: str
    """Where the packed blend file really is, e.g. `<target>/scenes/shot.blend`."""
    target_dir: str
    files: int
    bytes: int
    missing: list[str]
    """Files the blend file refers to that do not exist; the caller decides whether to go on."""
    packed: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)
    """Source path → packed path, for every file BAT copied (BAT's own transfer list)."""

    @property
    def relative_blendfile(self) -> str:
        return pathlib.Path(self.output_blendfile).relative_to(self.target_dir).as_posix()


@dataclasses.dataclass
class Collected:
    """The files of a pack without copying them: what a Shaman upload sends."""
    files: list[tuple[str, str]]
    """(path to read, path in the checkout with forward slashes); rewritten blend files are read from `work_dir`."""
    relative_blendfile: str
    bytes: int
    missing: list[str]
    work_dir: str
    packed: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)
    """Source path → path in the checkout."""


@dataclasses.dataclass
class CopyStats:
    files: int
    bytes: int


# --------------------------------------------------------------------------- public API


def pack(blendfile: str, project_root: str, target_dir: str, progress: Progress | None = None,
         should_abort: ShouldAbort | None = None) -> PackResult:
    """Pack `blendfile` and its dependencies into `target_dir`, keeping the layout below `project_root`.

    `progress(dict)` gets `{phase, files_done, files_total, bytes_done, bytes_total, current}`;
    it may raise `errors.Aborted`, as `should_abort()` may return True, to stop: the target
    folder is then removed and `errors.Aborted` raised. `target_dir` must not exist or be empty.
    """
    bat = _bat()
    blend, root = _check_inputs(blendfile, project_root)
    target = pathlib.Path(os.path.abspath(target_dir))
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise errors.ConfigurationError(f"The pack folder {target} already exists and is not empty")
    created = not target.exists()
    reporter = _Reporter(progress, should_abort)
    try:
        with _BAT_LOCK:
            packer = _make_packer(bat, blend, root, str(target), reporter, _chunked_copier)
            plan = _run(bat, packer, reporter)
        info = target / INFO_FILE
        done = [(src, dst, size) for src, dst, size in plan.copier.copied if pathlib.Path(dst) != info]
        size = sum(d[2] for d in done)
        reporter.finish(len(done), size)
    except BaseException:
        _remove_target(target, created)
        raise
    return PackResult(output_blendfile=str(plan.output), target_dir=str(target), files=len(done), bytes=size,
                      missing=plan.missing, packed={src: dst for src, dst, _ in done})


def collect(blendfile: str, project_root: str, work_dir: str, progress: Progress | None = None,
            should_abort: ShouldAbort | None = None) -> Collected:
    """What `pack` would copy, without copying: for a Shaman upload.

    Blend files BAT has to rewrite are written into `work_dir` (the caller keeps it until
    the upload is done, then removes it); all other files are read in place.
    """
    bat = _bat()
    blend, root = _check_inputs(blendfile, project_root)
    work = pathlib.Path(os.path.abspath(work_dir))
    work.mkdir(parents=True, exist_ok=True)
    reporter = _Reporter(progress, should_abort, copy_phase="listing")
    with _BAT_LOCK:
        packer = _make_packer(bat, blend, root, str(work / "_virtual_target"), reporter, _recorder(work))
        plan = _run(bat, packer, reporter)
        target = packer._target_path
    files, packed, size = [], {}, 0
    for source, read_from, dst in plan.copier.recorded:
        rel = pathlib.PurePath(dst).relative_to(target).as_posix()
        files.append((read_from, rel))
        if rel != INFO_FILE:
            packed[source] = rel
        size += os.path.getsize(read_from)
    reporter.finish(len(files), size)
    return Collected(files=files, relative_blendfile=pathlib.PurePath(plan.output).relative_to(target).as_posix(),
                     bytes=size, missing=plan.missing, work_dir=str(work), packed=packed)


def cross_check(expected_paths: Iterable[str], result: PackResult | Collected) -> list[str]:
    """Files Blender knows the scene uses that exist on disk but are not in the pack.

    `expected_paths` are absolute paths from Blender (`bpy.utils.blend_paths(absolute=True)`
    plus images of linked libraries). `<UDIM>` paths are expanded to their tiles; folders
    count as packed when something inside them was packed. Returns the paths as given, sorted.
    """
    packed = {_key(p) for p in result.packed}
    packed_dirs = {str(pathlib.Path(k).parent) for k in packed}
    not_packed = set()
    for path in expected_paths:
        if not path:
            continue
        for candidate in _expand_udim(path):
            if os.path.isdir(candidate):
                key = _key(candidate)
                inside = any(d == key or d.startswith(key + os.sep) for d in packed_dirs)
                if not inside and any(f.is_file() for f in pathlib.Path(candidate).iterdir()):
                    not_packed.add(path)
            elif os.path.isfile(candidate) and _key(candidate) not in packed:
                not_packed.add(path)
    return sorted(not_packed)


def copy_files(paths: Iterable[str], root: str, target: str) -> CopyStats:
    """Plain `shutil.copy` of the same files into the same layout: the baseline for benchmarks."""
    root_path = pathlib.Path(os.path.abspath(root))
    files = size = 0
    for path in paths:
        src = pathlib.Path(os.path.abspath(path))
        try:
            rel = src.relative_to(root_path)
        except ValueError:
            rel = pathlib.Path(OUTSIDE_PROJECT, *[p.replace(":", "") for p in src.parts[1:]])
        dst = pathlib.Path(target, rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
        files += 1
        size += src.stat().st_size
    return CopyStats(files, size)


# --------------------------------------------------------------------------- progress


class _Reporter:
    """Turns BAT's callbacks into progress dicts; remembers an abort instead of raising inside BAT.

    BAT swallows exceptions raised by callbacks that ran on its transfer thread, so an abort is
    recorded here and handed to `Packer.abort()`; `pack` raises it once BAT has stopped.
    """

    def __init__(self, progress: Progress | None, should_abort: ShouldAbort | None,
                 copy_phase: str = "copying") -> None:
        self.progress = progress
        self.copy_phase = copy_phase
        self.should_abort = should_abort
        self.aborted = False
        self.packer: Any = None
        self.state = {"phase": "starting", "files_done": 0, "files_total": 0, "bytes_done": 0, "bytes_total": 0,
                      "current": ""}
        self.last_sent = 0.0

    def update(self, force: bool = True, **changes: Any) -> None:
        self.state.update(changes)
        if self.aborted:
            return
        if self.should_abort is not None and self.should_abort():
            self.abort()
            return
        now = time.monotonic()
        if self.progress is None or (not force and now - self.last_sent < PROGRESS_INTERVAL):
            return
        self.last_sent = now
        try:
            self.progress(dict(self.state))
        except errors.Aborted:
            self.abort()

    def abort(self) -> None:
        self.aborted = True
        if self.packer is not None:
            self.packer.abort("Aborted")

    def finish(self, files: int, size: int) -> None:
        self.update(phase="done", files_done=files, files_total=files, bytes_done=size,
                    bytes_total=size, current="")
        if self.aborted:  # an abort asked for at the very end still counts
            raise errors.Aborted("Packing aborted")


def _callback_class(bat: Any) -> type:
    class Callback(bat.progress.Callback):
        def __init__(self, reporter: _Reporter, root: pathlib.Path) -> None:
            super().__init__()
            self.reporter = reporter
            self.root = root
            self.started = 0

        def _rel(self, path: pathlib.PurePath) -> str:
            try:
                return pathlib.PurePath(path).relative_to(self.root).as_posix()
            except ValueError:
                return str(path)

        def trace_blendfile(self, filename: pathlib.Path) -> None:
            self.reporter.update(force=False, phase="tracing", current=self._rel(filename))

        def trace_asset(self, filename: pathlib.Path) -> None:
            self.reporter.update(force=False, phase="tracing", current=self._rel(filename))

        def rewrite_blendfile(self, orig_filename: pathlib.Path) -> None:
            self.reporter.update(phase="rewriting", current=self._rel(orig_filename))

        def transfer_file(self, src: pathlib.Path, dst: pathlib.PurePath) -> None:
            self.started += 1
            total = max(self.reporter.state["files_total"], self.started)
            self.reporter.update(force=False, phase=self.reporter.copy_phase, files_done=self.started - 1,
                                 files_total=total, current=dst.name)

        def transfer_progress(self, total_bytes: int, transferred_bytes: int) -> None:
            total = max(self.reporter.state["bytes_total"], total_bytes)
            self.reporter.update(force=False, phase=self.reporter.copy_phase, bytes_done=transferred_bytes,
                                 bytes_total=total)

        def missing_file(self, filename: pathlib.Path) -> None:
            self.reporter.update(force=False, current=self._rel(filename))

    return Callback


# --------------------------------------------------------------------------- BAT glue


@dataclasses.dataclass
class _Plan:
    output: pathlib.PurePath
    missing: list[str]
    copier: Any


def _bat() -> Any:
    try:
        from blender_asset_tracer import blendfile, pack as pack_module
        from blender_asset_tracer.pack import filesystem, progress, transfer
    except ImportError:
        raise PackError("blender-asset-tracer is not installed; Flamenco Panel needs it to pack files") from None
    return types.SimpleNamespace(pack=pack_module, blendfile=blendfile, filesystem=filesystem, progress=progress,
                                 transfer=transfer)


def _check_inputs(blendfile: str, project_root: str) -> tuple[pathlib.Path, pathlib.Path]:
    blend = pathlib.Path(os.path.abspath(blendfile))
    root = pathlib.Path(os.path.abspath(project_root))
    if not blend.is_file():
        raise errors.ConfigurationError(f"The blend file {blend} does not exist; save it first")
    try:
        blend.relative_to(root)
    except ValueError:
        raise errors.ConfigurationError(f"The blend file {blend} is not inside the project root {root}") from None
    return blend, root


def _make_packer(bat: Any, blend: pathlib.Path, root: pathlib.Path, target: str, reporter: _Reporter,
                 make_copier: Callable[[Any], Any]) -> Any:
    class Packer(bat.pack.Packer):
        def _create_file_transferer(self):
            # Runs after the blend files were rewritten: map BAT's temp copies back to the originals.
            self.copier = make_copier(bat)
            self.copier.sources = {str(a.read_from): str(p) for p, a in self._actions.items() if a.read_from}
            return self.copier

    packer = Packer(blend, root, target)
    packer.progress_cb = _callback_class(bat)(reporter, root)
    reporter.packer = packer
    return packer


def _run(bat: Any, packer: Any, reporter: _Reporter) -> _Plan:
    """strategise + execute, with BAT's abort and errors turned into ours."""
    try:
        with packer:
            reporter.update(phase="tracing")
            packer.strategise()
            if reporter.aborted:
                raise errors.Aborted("Packing aborted")
            files, size = _estimate(packer)
            reporter.update(phase=reporter.copy_phase, files_total=files, bytes_total=size)
            packer.execute()
            if reporter.aborted:
                raise errors.Aborted("Packing aborted")
            missing = sorted(str(p) for p in packer.missing_files)
            return _Plan(packer.output_path, missing, packer.copier)
    except bat.pack.Aborted as ex:
        if reporter.aborted:
            raise errors.Aborted("Packing aborted") from None
        raise PackError(f"Packing failed: {ex or 'file transfer error'}") from None
    except bat.transfer.FileTransferError as ex:
        raise PackError(f"Packing failed: {len(ex.files_remaining)} files could not be copied") from None
    except OSError as ex:
        raise PackError(f"Packing failed: {ex}") from None
    finally:
        copier = getattr(packer, "copier", None)
        if copier is not None and copier.is_alive():  # stopped by an error on this side: stop BAT's thread too
            copier.abort()
            threading.Thread.join(copier, timeout=30)
        bat.blendfile.close_all_cached()


def _estimate(packer: Any) -> tuple[int, int]:
    """Files and bytes BAT is about to copy, so the progress bar has a fixed end (reads BAT's plan)."""
    seen: set[pathlib.Path] = set()
    for path, action in packer._actions.items():
        if action.new_path is None:
            continue
        sequences = [u for u in action.usages if u.is_sequence]
        if sequences:
            seen.update(sequences[0].files())
        elif path.is_file():
            seen.add(path)
    size = 0
    for path in seen:
        try:
            size += path.stat().st_size
        except OSError:
            pass
    return len(seen), size


class _Prompt:
    """Mixed into BAT's transferers: notice "all queued" and "thread done" within milliseconds.

    BAT 1.23 polls its queue and its thread in 0.5 s steps, which costs every pack up to a
    second of waiting even for a few small files.
    """

    POLL = 0.01

    def iter_queue(self):
        while not (self._abort.is_set() or self.has_error):
            try:
                src, dst, action = self.queue.get(timeout=self.POLL)
            except queue.Empty:
                if self.done.is_set():
                    return
                continue
            self.progress_cb.transfer_file(src, dst)
            yield src, dst, action

    def join(self, timeout: float | None = None) -> None:
        end = None if timeout is None else time.monotonic() + timeout
        while self.is_alive() and (end is None or time.monotonic() < end):
            self.progress_cb.flush(timeout=self.POLL)


@functools.lru_cache(maxsize=None)
def _chunked_copier_class(base: type) -> type:
    class ChunkedCopier(_Prompt, base):  # type: ignore[misc, valid-type]
        """BAT's copier, copying in chunks: byte progress and abort inside big files."""

        def __init__(self) -> None:
            super().__init__()
            self.copied: list[tuple[str, str, int]] = []   # (original source, packed path, bytes)
            self.sources: dict[str, str] = {}

        def _copy(self, srcpath: pathlib.Path, dstpath: pathlib.Path) -> None:
            base_done = self.total_transferred_bytes

            def on_chunk(done: int) -> None:
                if self._abort.is_set() or self.has_error:
                    raise _abort_transfer()
                self.progress_cb.transfer_progress(self.total_queued_bytes, base_done + done)

            size = copy_file(str(srcpath), str(dstpath), on_chunk)
            self.copied.append((self.sources.get(str(srcpath), str(srcpath)), str(dstpath), size))

        def _move(self, srcpath: pathlib.Path, dstpath: pathlib.Path) -> None:
            try:
                size = srcpath.stat().st_size
                os.replace(srcpath, dstpath)
            except OSError:  # another file system
                self._copy(srcpath, dstpath)
                os.unlink(srcpath)
                return
            self.copied.append((self.sources.get(str(srcpath), str(srcpath)), str(dstpath), size))

    return ChunkedCopier


def _chunked_copier(bat: Any) -> Any:
    return _chunked_copier_class(bat.filesystem.FileCopier)()


def _abort_transfer() -> Exception:
    from blender_asset_tracer.pack.filesystem import AbortTransfer
    return AbortTransfer()


@functools.lru_cache(maxsize=None)
def _recorder_class(base: type) -> type:
    class Recorder(_Prompt, base):  # type: ignore[misc, valid-type]
        """Stands in for the copier in `collect`: records what would be sent, copies nothing."""

        def __init__(self, work: pathlib.Path) -> None:
            super().__init__()
            self.work = work
            self.recorded: list[tuple[str, str, str]] = []   # (original source, read from, packed path)
            self.sources: dict[str, str] = {}

        def run(self) -> None:
            from blender_asset_tracer.pack.transfer import Action
            try:
                for src, dst, action in self.iter_queue():
                    read_from = str(src)
                    if action == Action.MOVE:  # a rewritten blend file in BAT's temp dir: keep it
                        kept = pathlib.Path(tempfile.mkdtemp(dir=self.work)) / pathlib.PurePath(dst).name
                        shutil.move(str(src), kept)
                        read_from = str(kept)
                    self.recorded.append((self.sources.get(str(src), str(src)), read_from, str(dst)))
            except Exception as ex:  # runs in BAT's thread: report it, don't lose it
                self.error_set(f"Could not prepare the file list ({ex})")

    return Recorder


def _recorder(work: pathlib.Path) -> Callable[[Any], Any]:
    return lambda bat: _recorder_class(bat.transfer.FileTransferer)(work)


# --------------------------------------------------------------------------- helpers


def copy_file(src: str, dst: str, on_chunk: Callable[[int], None] | None = None, chunk: int = COPY_CHUNK) -> int:
    """Copy in chunks, calling `on_chunk(bytes so far)` between them (it may raise to stop).

    Uses `os.copy_file_range` where the kernel has it (in-kernel copy, like shutil's
    fast path), falling back to plain reads and writes.
    """
    done = 0
    with open(src, "rb") as fsrc, open(dst, "wb") as fdst:
        if hasattr(os, "copy_file_range"):
            try:
                while True:
                    n = os.copy_file_range(fsrc.fileno(), fdst.fileno(), chunk)
                    if not n:
                        return done
                    done += n
                    if on_chunk:
                        on_chunk(done)
            except OSError as ex:
                if ex.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                    raise
                # Both offsets moved together, so the plain loop goes on from here.
        buf = bytearray(min(chunk, 1024 * 1024))
        view = memoryview(buf)
        while True:
            n = fsrc.readinto(buf)
            if not n:
                return done
            fdst.write(view[:n])
            done += n
            if on_chunk:
                on_chunk(done)


def _remove_target(target: pathlib.Path, created: bool) -> None:
    if not target.exists():
        return
    if created:
        shutil.rmtree(target, ignore_errors=True)
        return
    for child in target.iterdir():  # it was empty before: empty it again
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _key(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def _expand_udim(path: str) -> list[str]:
    if _UDIM_TOKEN not in os.path.basename(path):
        return [path]
    folder, name = os.path.split(path)
    before, after = name.split(_UDIM_TOKEN, 1)
    pattern = re.compile(re.escape(before) + r"\d{4}" + re.escape(after) + "$")
    try:
        return [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if pattern.match(n)]
    except OSError:
        return []
