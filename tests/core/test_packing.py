# SPDX-License-Identifier: GPL-3.0-or-later
"""BAT packing of real .blend files made with the bpy module in a subprocess."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import struct
import subprocess
import textwrap
import zlib

import pytest

from flamenco_panel.core import errors, packing

CACHE = pathlib.Path(os.environ.get("FLAMENCO_PANEL_CACHE", pathlib.Path.home() / ".cache" / "flamenco-panel"))

# Builds <tmp>/proj (with .blender_project) holding scenes/shot.blend, which uses
#   textures/wood.png, textures/gone.png (deleted after saving: a missing file),
#   ../outside/ext.png (outside the project root: BAT must rewrite the blend file),
#   libs/lib.blend (linked collection) whose material uses libs/textures/lib_only.png.
# Prints what Blender itself knows: bpy.utils.blend_paths + images of linked libraries.
MAKE_PROJECT = textwrap.dedent("""
    import json, os, sys
    import bpy

    proj, outside = sys.argv[-2], sys.argv[-1]

    def material(name, path):
        mat = bpy.data.materials.new(name)
        mat.use_nodes = True
        node = mat.node_tree.nodes.new("ShaderNodeTexImage")
        node.image = bpy.data.images.load(path)
        mat.node_tree.links.new(node.outputs["Color"], mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"])
        return mat

    def mesh_object(name, *mats):
        mesh = bpy.data.meshes.new(name)
        mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
        for mat in mats:
            mesh.materials.append(mat)
        return bpy.data.objects.new(name, mesh)

    def save(path):
        bpy.ops.wm.save_as_mainfile(filepath=path)     # a first save makes // paths mean something
        bpy.ops.file.make_paths_relative()
        bpy.ops.wm.save_as_mainfile(filepath=path)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    coll = bpy.data.collections.new("LibCol")
    bpy.context.scene.collection.children.link(coll)
    lib_image = os.path.join(proj, "libs", "textures", "lib_only.png")
    coll.objects.link(mesh_object("LibCube", material("LibMat", lib_image)))
    lib = os.path.join(proj, "libs", "lib.blend")
    save(lib)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    shot = os.path.join(proj, "scenes", "shot.blend")
    bpy.ops.wm.save_as_mainfile(filepath=shot)
    bpy.context.scene.collection.objects.link(mesh_object(
        "Cube", material("Wood", os.path.join(proj, "textures", "wood.png")),
        material("Gone", os.path.join(proj, "textures", "gone.png")),
        material("Ext", os.path.join(outside, "ext.png"))))
    with bpy.data.libraries.load(lib, link=True, relative=True) as (src, dst):
        dst.collections = ["LibCol"]
    inst = bpy.data.objects.new("LibInst", None)
    inst.instance_type = "COLLECTION"
    inst.instance_collection = dst.collections[0]
    bpy.context.scene.collection.objects.link(inst)
    bpy.ops.file.make_paths_relative()
    bpy.ops.wm.save_as_mainfile(filepath=shot)
    known = list(bpy.utils.blend_paths(absolute=True))
    known += [bpy.path.abspath(i.filepath, library=i.library) for i in bpy.data.images if i.library]
    print("KNOWN=" + json.dumps(known))
""")

# Opens a packed file and prints where Blender resolves everything it uses.
RESOLVE = textwrap.dedent("""
    import json, sys
    import bpy
    bpy.ops.wm.open_mainfile(filepath=sys.argv[-1])
    known = list(bpy.utils.blend_paths(absolute=True))
    known += [bpy.path.abspath(i.filepath, library=i.library) for i in bpy.data.images if i.library]
    print("KNOWN=" + json.dumps(known))
""")


def write_png(path: pathlib.Path, rgb=(200, 120, 40), size: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def bpy_python(version: str) -> str | None:
    python = CACHE / f"venv-bpy-{version}" / "bin" / "python"
    return str(python) if python.exists() else None


def run_bpy(python: str, script: str, *args: str, tmp: pathlib.Path) -> list[str]:
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp / "blender-user"))
    proc = subprocess.run([python, "-c", script, *args], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("KNOWN="))
    return json.loads(line[len("KNOWN="):])


class Project:
    def __init__(self, base: pathlib.Path, known: list[str]) -> None:
        self.base = base
        self.root = base / "proj"
        self.outside = base / "outside"
        self.shot = self.root / "scenes" / "shot.blend"
        self.known = known

    def copy(self, dest: pathlib.Path) -> "Project":
        shutil.copytree(self.base, dest, symlinks=True)
        return Project(dest, [p.replace(str(self.base), str(dest), 1) for p in self.known])


def make_project(version: str, base: pathlib.Path) -> Project:
    python = bpy_python(version)
    if python is None:
        pytest.skip(f"bpy {version} venv not set up ({CACHE}); run tests/setup.sh")
    root, outside = base / "proj", base / "outside"
    (root / "scenes").mkdir(parents=True)
    (root / ".blender_project").write_text("")
    write_png(root / "textures" / "wood.png")
    write_png(root / "textures" / "gone.png", (0, 0, 255))
    write_png(root / "libs" / "textures" / "lib_only.png", (0, 255, 0))
    write_png(outside / "ext.png", (255, 0, 0))
    known = run_bpy(python, MAKE_PROJECT, str(root), str(outside), tmp=base)
    (root / "textures" / "gone.png").unlink()
    for leftover in root.rglob("*.blend1"):
        leftover.unlink()
    return Project(base, known)


@pytest.fixture(scope="module")
def bat():
    return pytest.importorskip("blender_asset_tracer.pack")


@pytest.fixture(scope="module")
def project42(bat, tmp_path_factory):
    return make_project("4.2.23", tmp_path_factory.mktemp("bpy42"))


@pytest.fixture(scope="module")
def project50(bat, tmp_path_factory):
    return make_project("5.0.1", tmp_path_factory.mktemp("bpy50"))


@pytest.fixture(scope="module")
def packed42(project42, tmp_path_factory):
    target = tmp_path_factory.mktemp("packs") / "2024-01-01-120000-shot"
    seen: list[dict] = []
    result = packing.pack(str(project42.shot), str(project42.root), str(target), progress=seen.append)
    return result, seen, target


def tree(folder: pathlib.Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- packing


def test_pack_keeps_the_project_layout(project42, packed42):
    result, _seen, target = packed42
    ext = "_outside_project/" + project42.outside.joinpath("ext.png").as_posix().lstrip("/")
    assert tree(target) == {"scenes/shot.blend", "textures/wood.png", "libs/lib.blend",
                            "libs/textures/lib_only.png", ext, packing.INFO_FILE}
    assert result.output_blendfile == str(target / "scenes" / "shot.blend")
    assert result.relative_blendfile == "scenes/shot.blend"
    assert result.target_dir == str(target)
    assert result.files == 5
    assert result.bytes == sum((target / rel).stat().st_size for rel in tree(target) if rel != packing.INFO_FILE)
    # The outside texture forced BAT to rewrite shot.blend; the map still names the artist's file.
    assert result.packed[str(project42.shot)] == str(target / "scenes" / "shot.blend")
    assert (target / "textures" / "wood.png").read_bytes() == (project42.root / "textures" / "wood.png").read_bytes()


def test_missing_file_is_listed(project42, packed42):
    result, _seen, _target = packed42
    assert result.missing == [str(project42.root / "textures" / "gone.png")]


def test_progress_reports_phases_and_totals(packed42):
    result, seen, _target = packed42
    assert seen[0]["phase"] == "tracing" and seen[-1]["phase"] == "done"
    assert "copying" in [p["phase"] for p in seen]
    assert all(set(p) == {"phase", "files_done", "files_total", "bytes_done", "bytes_total", "current"} for p in seen)
    assert seen[-1]["files_done"] == seen[-1]["files_total"] == result.files
    assert seen[-1]["bytes_done"] == seen[-1]["bytes_total"] == result.bytes
    copying = [p for p in seen if p["phase"] == "copying"]
    assert copying[0]["files_total"] == result.files   # known before the first copy
    assert all(a["bytes_done"] <= b["bytes_done"] for a, b in zip(copying, copying[1:]))


def test_packed_file_resolves_inside_the_pack(project42, packed42, tmp_path):
    result, _seen, target = packed42
    resolved = run_bpy(bpy_python("4.2.23"), RESOLVE, result.output_blendfile, tmp=tmp_path)
    gone = str(target / "textures" / "gone.png")
    for path in resolved:
        path = os.path.normpath(path)
        assert path.startswith(str(target) + os.sep), path
        assert os.path.exists(path) or path == gone, path
    assert len(resolved) >= 5


def test_cross_check_of_a_4_2_file_finds_nothing_missed(project42, packed42):
    result, _seen, _target = packed42
    assert len(project42.known) >= 5
    assert packing.cross_check(project42.known, result) == []


def test_cross_check_reports_what_bat_misses_in_5_0_files(project50, tmp_path):
    result = packing.pack(str(project50.shot), str(project50.root), str(tmp_path / "pack"))
    lib_only = [p for p in project50.known if p.endswith("lib_only.png")]
    assert lib_only, project50.known
    # BAT 1.23 does not follow the node tree of a 5.0 library; Blender knows the image.
    assert not (tmp_path / "pack" / "libs" / "textures" / "lib_only.png").exists()
    assert packing.cross_check(project50.known, result) == lib_only


def test_abort_removes_the_partial_pack(project42, tmp_path):
    target = tmp_path / "pack"

    def abort_while_copying(p):
        if p["phase"] == "copying":
            raise errors.Aborted("Aborted")

    with pytest.raises(errors.Aborted):
        packing.pack(str(project42.shot), str(project42.root), str(target), progress=abort_while_copying)
    assert not target.exists()


def test_abort_inside_a_big_file(project42, tmp_path):
    proj = project42.copy(tmp_path / "big")
    with open(proj.root / "textures" / "wood.png", "r+b") as fh:   # BAT only copies it: size is all that counts
        fh.truncate(256 * 1024 * 1024)
    target = tmp_path / "pack"
    seen: list[dict] = []

    def should_abort() -> bool:
        return bool(seen) and seen[-1]["phase"] == "copying" and seen[-1]["bytes_done"] > 0

    with pytest.raises(errors.Aborted):
        packing.pack(str(proj.shot), str(proj.root), str(target), progress=seen.append, should_abort=should_abort)
    assert not target.exists()
    assert max(p["bytes_done"] for p in seen) < 256 * 1024 * 1024


def test_abort_while_tracing(project42, tmp_path):
    with pytest.raises(errors.Aborted):
        packing.pack(str(project42.shot), str(project42.root), str(tmp_path / "pack"), should_abort=lambda: True)
    assert not (tmp_path / "pack").exists()


def test_existing_empty_target_is_emptied_not_removed_on_abort(project42, tmp_path):
    target = tmp_path / "pack"
    target.mkdir()

    def abort(p):
        if p["phase"] == "done":
            raise errors.Aborted("Aborted")

    with pytest.raises(errors.Aborted):
        packing.pack(str(project42.shot), str(project42.root), str(target), progress=abort)
    assert target.is_dir() and list(target.iterdir()) == []


def test_non_empty_target_is_refused_and_left_alone(project42, tmp_path):
    target = tmp_path / "pack"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    with pytest.raises(errors.ConfigurationError, match="not empty"):
        packing.pack(str(project42.shot), str(project42.root), str(target))
    assert (target / "precious.txt").read_text() == "keep me"


def test_blend_file_outside_the_project_root_is_refused(project42, tmp_path):
    with pytest.raises(errors.ConfigurationError, match="not inside the project root"):
        packing.pack(str(project42.shot), str(project42.root / "textures"), str(tmp_path / "pack"))
    assert not (tmp_path / "pack").exists()


def test_packs_one_after_another_see_changed_files(project42, tmp_path):
    """BAT caches parsed blend files per process; a long-lived helper must not trace stale ones."""
    proj = project42.copy(tmp_path / "p")
    packing.pack(str(proj.shot), str(proj.root), str(tmp_path / "one"))
    assert "libs/textures/lib_only.png" in tree(tmp_path / "one")
    lib = proj.root / "libs" / "lib.blend"
    shutil.copyfile(proj.shot, lib.with_suffix(".tmp"))   # the library now uses other files,
    os.replace(lib.with_suffix(".tmp"), lib)              # saved the way Blender saves (rename)
    packing.pack(str(proj.shot), str(proj.root), str(tmp_path / "two"))
    assert "libs/textures/lib_only.png" not in tree(tmp_path / "two")


# --------------------------------------------------------------------------- collect (for Shaman)


def test_collect_lists_the_pack_without_copying(project42, packed42, tmp_path):
    result, _seen, target = packed42
    work = tmp_path / "work"
    collected = packing.collect(str(project42.shot), str(project42.root), str(work))
    assert {rel for _path, rel in collected.files} == tree(target)
    assert collected.relative_blendfile == "scenes/shot.blend"
    assert collected.missing == result.missing
    reads = dict((rel, path) for path, rel in collected.files)
    # Rewritten blend files are read from the work folder; everything else in place.
    assert reads["scenes/shot.blend"].startswith(str(work))
    assert reads["textures/wood.png"] == str(project42.root / "textures" / "wood.png")
    assert pathlib.Path(reads["scenes/shot.blend"]).read_bytes() == (target / "scenes" / "shot.blend").read_bytes()
    assert not (work / "_virtual_target").exists()
    assert packing.cross_check(project42.known, collected) == []


def test_collect_feeds_a_shaman_upload(project42, packed42, tmp_path):
    """The Shaman path: files read in place keep their cache entries, so a resubmit sends nothing."""
    from flamenco_panel.core import shaman
    from flamenco_panel.core.client import Connection, ManagerClient
    from tests.fake_shaman import FakeShamanServer

    _result, _seen, target = packed42
    proj = project42.copy(tmp_path / "p")
    old = 1_600_000_000
    for path in proj.base.rglob("*"):
        os.utime(path, (old, old))
    with FakeShamanServer(str(tmp_path / "manager")) as server:
        client = ManagerClient(Connection(server.url))
        uploads = []
        for attempt in range(2):
            collected = packing.collect(str(proj.shot), str(proj.root), str(tmp_path / f"work{attempt}"))
            cache = shaman.HashCache(tmp_path / "user")
            uploads.append(shaman.upload(client, collected.files, "proj/shot", cache))
        checkout = server.shaman.checkout_root(uploads[0].checkout_path)
        assert {p.relative_to(checkout).as_posix(): p.read_bytes() for p in checkout.rglob("*") if p.is_file()} \
            == {rel: pathlib.Path(path).read_bytes() for path, rel in collected.files}
        moved = str(project42.base).lstrip("/"), str(proj.base).lstrip("/")   # the copy's outside folder
        assert tree(checkout) == {rel.replace(*moved) for rel in tree(target)}
        assert uploads[0].bytes_uploaded > 0
        assert uploads[1].bytes_uploaded == 0
        # Only the files BAT rewrote (fresh in the work folder) were hashed again.
        assert cache.misses == 2 and cache.hits == len(collected.files) - 2


# --------------------------------------------------------------------------- cross_check and copy_files (no BAT)


def fake_result(tmp_path: pathlib.Path, packed: list[pathlib.Path]) -> packing.PackResult:
    return packing.PackResult(output_blendfile=str(tmp_path / "t" / "a.blend"), target_dir=str(tmp_path / "t"),
                              files=len(packed), bytes=0, missing=[],
                              packed={str(p): str(tmp_path / "t" / p.name) for p in packed})


def test_cross_check_normalises_and_skips_what_does_not_exist(tmp_path):
    a = tmp_path / "tex" / "a.png"
    b = tmp_path / "tex" / "b.png"
    for p in (a, b):
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x")
    result = fake_result(tmp_path, [a])
    expected = [str(tmp_path / "scenes" / ".." / "tex" / "a.png"), str(b), str(tmp_path / "nope.png"), ""]
    assert packing.cross_check(expected, result) == [str(b)]


def test_cross_check_expands_udim_tiles(tmp_path):
    tiles = [tmp_path / f"skin.{n}.png" for n in (1001, 1002)]
    for p in tiles:
        p.write_bytes(b"x")
    udim = str(tmp_path / "skin.<UDIM>.png")
    assert packing.cross_check([udim], fake_result(tmp_path, tiles)) == []
    assert packing.cross_check([udim], fake_result(tmp_path, tiles[:1])) == [udim]


def test_cross_check_folders_count_when_something_inside_was_packed(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "frame_001.vdb").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    assert packing.cross_check([str(cache), str(tmp_path / "empty")],
                               fake_result(tmp_path, [cache / "frame_001.vdb"])) == []
    assert packing.cross_check([str(cache)], fake_result(tmp_path, [])) == [str(cache)]


def test_copy_files_baseline_keeps_the_layout(tmp_path):
    root = tmp_path / "proj"
    files = [root / "scenes" / "shot.blend", root / "textures" / "a.png", tmp_path / "elsewhere" / "b.png"]
    for i, p in enumerate(files):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * (i + 1))
    stats = packing.copy_files([str(p) for p in files], str(root), str(tmp_path / "out"))
    assert stats == packing.CopyStats(files=3, bytes=6)
    outside = "_outside_project/" + files[2].as_posix().lstrip("/")
    assert tree(tmp_path / "out") == {"scenes/shot.blend", "textures/a.png", outside}


def test_copy_file_reports_chunks_and_stops_when_asked(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    seen = []
    assert packing.copy_file(str(src), str(tmp_path / "dst"), seen.append, chunk=1024 * 1024) == src.stat().st_size
    assert seen[-1] == src.stat().st_size and len(seen) == 4
    assert (tmp_path / "dst").read_bytes() == src.read_bytes()

    def stop(done):
        raise errors.Aborted("stop")

    with pytest.raises(errors.Aborted):
        packing.copy_file(str(src), str(tmp_path / "dst2"), stop, chunk=1024 * 1024)
