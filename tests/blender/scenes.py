# SPDX-License-Identifier: GPL-3.0-or-later
"""Scenes the Blender tests and the benchmarks build: a shot that uses textures and a linked library."""
from __future__ import annotations

import pathlib
from typing import Callable, Iterable

import bpy


def save_shot_with_dependencies(root: pathlib.Path, textures: Iterable[pathlib.Path],
                                configure: Callable | None = None) -> pathlib.Path:
    """<root>/scenes/shot.blend: a material using each of `textures` (image files that exist) and an object
    linked from <root>/libs/lib.blend (written here), paths saved relative. `configure(scene)` runs just
    before the one save (a second save would leave a shot.blend1 beside it)."""
    (root / "scenes").mkdir(parents=True, exist_ok=True)
    (root / "libs").mkdir(exist_ok=True)
    lib_obj = bpy.data.objects.new("LibObj", bpy.data.meshes.new("LibMesh"))
    bpy.data.libraries.write(str(root / "libs" / "lib.blend"), {lib_obj}, path_remap='RELATIVE')
    lib_mesh = lib_obj.data
    bpy.data.objects.remove(lib_obj)
    bpy.data.meshes.remove(lib_mesh)
    mat = bpy.data.materials.new("Textures")
    mat.use_nodes = True
    for path in textures:
        mat.node_tree.nodes.new("ShaderNodeTexImage").image = bpy.data.images.load(str(path))
    with bpy.data.libraries.load(str(root / "libs" / "lib.blend"), link=True) as (_src, dst):
        dst.objects = ["LibObj"]
    scene = bpy.context.scene
    scene.collection.objects.link(dst.objects[0])
    holder = bpy.data.objects.new("Holder", bpy.data.meshes.new("HolderMesh"))
    holder.data.materials.append(mat)
    scene.collection.objects.link(holder)
    if configure is not None:
        configure(scene)
    shot = root / "scenes" / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(shot), relative_remap=True)
    return shot
