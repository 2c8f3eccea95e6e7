# SPDX-License-Identifier: GPL-3.0-or-later
"""A `blender` command for the real-farm tests, run by the test venv's Python (which has the `bpy` wheel).

The Flamenco Worker runs it as Blender: `--version` at start-up, and for `simple-blender-render` tasks
`-b -y <blendfile> --scene <name> [--python-expr <py>] --render-output <dir>/###### --render-format <FMT>
--render-frame <a>..<b>`. It opens the file with the real `bpy`, renders each frame with Cycles at a tiny
size and 1 sample; bpy's render pipeline prints Blender's own `Saved: '<path>'` and `Time: ...` lines,
which the Worker reads.
`--python-expr` code is never run. Exit 0 when every frame was written, 1 with a message otherwise.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import time

VERSION = "4.2.23"
# Blender's CLI format names (`-F`) that differ from `image_settings.file_format`.
CLI_FORMATS = {"EXR": "OPEN_EXR", "MULTILAYER": "OPEN_EXR_MULTILAYER", "TGA": "TARGA", "RAWTGA": "TARGA_RAW",
               "JPG": "JPEG", "TIF": "TIFF"}
IGNORED_FLAGS = {"-b", "--background", "-y", "--enable-autoexec", "-Y", "--disable-autoexec",
                 "--factory-startup", "-noaudio", "--debug-cycles"}


class UsageError(Exception):
    pass


def parse(argv: list[str]) -> dict:
    opts = {"blendfile": "", "scene": "", "output": "", "format": "", "frames": []}
    i = 0

    def value(flag):
        nonlocal i
        if i + 1 >= len(argv):
            raise UsageError(f"{flag} needs a value")
        i += 1
        return argv[i]

    while i < len(argv):
        arg = argv[i]
        if arg in IGNORED_FLAGS:
            pass
        elif arg in ("-S", "--scene"):
            opts["scene"] = value(arg)
        elif arg in ("--python-expr",):
            value(arg)
            print("blender stand-in: --python-expr code is ignored (never run)", flush=True)
        elif arg in ("-P", "--python"):
            value(arg)
            print("blender stand-in: --python script is ignored (never run)", flush=True)
        elif arg in ("-o", "--render-output"):
            opts["output"] = value(arg)
        elif arg in ("-F", "--render-format"):
            opts["format"] = value(arg)
        elif arg in ("-f", "--render-frame"):
            opts["frames"].extend(frame_list(value(arg)))
        elif arg.startswith("-"):
            raise UsageError(f"unsupported option {arg!r}")
        elif not opts["blendfile"]:
            opts["blendfile"] = arg
        else:
            raise UsageError(f"unexpected argument {arg!r}")
        i += 1
    return opts


def frame_list(spec: str) -> list[int]:
    """Blender's `-f` syntax: `7`, `1..4`, `1,3,5..7`."""
    frames = []
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", part)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if b < a:
                raise UsageError(f"bad frame range {part!r}")
            frames.extend(range(a, b + 1))
        elif re.fullmatch(r"-?\d+", part):
            frames.append(int(part))
        else:
            raise UsageError(f"bad frame {part!r}")
    return frames


def clock(seconds: float) -> str:
    minutes, rest = divmod(max(seconds, 0.0), 60)
    return f"{int(minutes):02d}:{rest:05.2f}"


def render(opts: dict) -> None:
    if not opts["blendfile"]:
        raise UsageError("no blend file given")
    if not os.path.isfile(opts["blendfile"]):
        raise UsageError(f"cannot read file {opts['blendfile']!r}: no such file")
    if not opts["frames"]:
        raise UsageError("no --render-frame given")
    # Never touch the user's Blender configuration.
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="blender-standin-user-"))
    import bpy

    bpy.ops.wm.open_mainfile(filepath=opts["blendfile"], load_ui=False)
    if opts["scene"]:
        scene = bpy.data.scenes.get(opts["scene"])
        if scene is None:
            raise UsageError(f"no scene {opts['scene']!r} in {opts['blendfile']}")
    else:
        scene = bpy.context.scene
    r = scene.render
    r.engine = 'CYCLES'
    scene.cycles.samples = 1
    scene.cycles.device = 'CPU'
    scene.cycles.use_denoising = False
    r.resolution_x, r.resolution_y, r.resolution_percentage = 32, 18, 100
    r.use_file_extension = True
    if opts["format"]:
        fmt = CLI_FORMATS.get(opts["format"].upper(), opts["format"].upper())
        try:
            r.image_settings.file_format = fmt
        except TypeError:
            raise UsageError(f"unknown render format {opts['format']!r}") from None
    for frame in opts["frames"]:
        start = time.monotonic()
        scene.frame_set(frame)
        r.filepath = opts["output"] or r.filepath
        path = r.frame_path(frame=frame)   # `#`s replaced by the frame number, extension added
        r.filepath = path                  # write_still in module mode does not replace `#`s itself
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        print(f"Fra:{frame} rendering (stand-in, Cycles {r.resolution_x}x{r.resolution_y}, 1 sample)", flush=True)
        # bpy's render pipeline prints Blender's own `Saved: '<path>'` and `Time: ...` lines (which the
        # Worker counts), so they are not printed again here.
        bpy.ops.render.render(write_still=True, scene=scene.name)
        if not os.path.isfile(path):
            raise RuntimeError(f"render of frame {frame} did not write {path}")
        print(f"blender stand-in: frame {frame} done in {clock(time.monotonic() - start)}", flush=True)
    print("Blender quit", flush=True)


def main(argv: list[str]) -> int:
    if "--version" in argv or "-v" in argv:
        print(f"Blender {VERSION} (stand-in for the Flamenco Panel tests)")
        print("\tbuild date: (none)")
        return 0
    try:
        render(parse(argv))
    except UsageError as ex:
        print(f"Error: {ex}", file=sys.stderr, flush=True)
        return 1
    except Exception as ex:  # a real error while rendering: say what, fail the task
        print(f"Error: {type(ex).__name__}: {ex}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    try:   # bpy prints with C stdio: flush it too, os._exit would drop it
        import ctypes
        ctypes.CDLL(None).fflush(None)
    except Exception:
        pass
    os._exit(code)   # skip bpy's teardown: the exit code is the task's result
