#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Builds the installable extension zip: dist/flamenco_panel-<version>.zip.

Blender's own `extension build` wants the manifest next to the package's
__init__.py; here the manifest is at the repository root and the code in
flamenco_panel/, so this script puts both together at the zip root, adds the
bundled wheels (fetched once from PyPI into a cache), and validates the
result with Blender's own validator from a bpy wheel.

The zip is reproducible: files are sorted and stamped with a fixed time.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import os
import pathlib
import subprocess
import sys
import tomllib
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent
PACKAGE = ROOT / "flamenco_panel"
MANIFEST = ROOT / "blender_manifest.toml"
CACHE = pathlib.Path(os.environ.get("FLAMENCO_PANEL_CACHE", pathlib.Path.home() / ".cache" / "flamenco-panel"))
FIXED_TIME = (2024, 1, 1, 0, 0, 0)
EXCLUDED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej", ".swp"}
# Wheels named in the manifest, with the PyPI requirement that provides each.
WHEEL_REQUIREMENTS = {"blender_asset_tracer-1.23-py3-none-any.whl": "blender-asset-tracer==1.23"}


class BuildError(Exception):
    """A problem the person running the build can fix; printed without a traceback."""


def read_manifest() -> dict:
    if not MANIFEST.is_file():
        raise BuildError(f"manifest not found: {MANIFEST}")
    try:
        return tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as ex:
        raise BuildError(f"{MANIFEST.name} is not valid TOML: {ex}") from None


def fetch_wheel(name: str) -> pathlib.Path:
    """Returns a cached wheel, downloading it unmodified from PyPI the first time."""
    target = CACHE / "wheels" / name
    if target.is_file():
        return target
    requirement = WHEEL_REQUIREMENTS.get(name)
    if requirement is None:
        raise BuildError(f"manifest names wheel {name!r} but build.py does not know which package provides it")
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"fetching {requirement} from PyPI", file=sys.stderr)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--dest", str(target.parent), requirement]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not target.is_file():
        raise BuildError(f"could not download {requirement}:\n{result.stderr.strip()}")
    return target


def package_files() -> list[tuple[str, pathlib.Path]]:
    """(archive name, source path) of the package's contents, tests and caches excluded."""
    files = []
    for path in sorted(PACKAGE.rglob("*")):
        rel = path.relative_to(PACKAGE)
        if path.is_dir() or EXCLUDED_PARTS.intersection(rel.parts) or path.suffix in EXCLUDED_SUFFIXES:
            continue
        files.append((rel.as_posix(), path))
    if not any(name == "__init__.py" for name, _ in files):
        raise BuildError(f"{PACKAGE} has no __init__.py")
    return files


def write_zip(output: pathlib.Path, entries: list[tuple[str, pathlib.Path]]) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, path in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    tmp.replace(output)


def find_validator(explicit: str | None) -> tuple[pathlib.Path, pathlib.Path | None] | None:
    """Blender's blender_ext.py and tags.py, from a bpy wheel we can find."""
    candidates = []
    if explicit:
        candidates.append(pathlib.Path(explicit))
    for venv in sorted(CACHE.glob("venv-bpy-*")):
        candidates.append(venv)
    try:
        import bpy  # noqa: F401  (only to locate the wheel; never required)
        candidates.append(pathlib.Path(bpy.__file__).parent)
    except Exception:
        pass
    for base in candidates:
        found = glob.glob(str(base / "**" / "bl_pkg" / "cli" / "blender_ext.py"), recursive=True)
        if found:
            ext = pathlib.Path(found[0])
            tags = glob.glob(str(base / "**" / "_bpy_internal" / "extensions" / "tags.py"), recursive=True)
            return ext, (pathlib.Path(tags[0]) if tags else None)
    return None


VALIDATOR_WHEEL = "bpy==4.2.23"


def fetch_validator() -> tuple[pathlib.Path, pathlib.Path | None]:
    """Extracts Blender's validator and tag list from the bpy wheel (downloaded once into the cache)."""
    target = CACHE / "validator"
    ext, tags = target / "blender_ext.py", target / "tags.py"
    if ext.is_file() and tags.is_file():
        return ext, tags
    downloads = CACHE / "validator-wheel"
    print(f"fetching Blender's validator from {VALIDATOR_WHEEL} (once)", file=sys.stderr)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--dest", str(downloads), VALIDATOR_WHEEL]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(downloads.glob("bpy-*.whl"))
    if result.returncode != 0 or not wheels:
        raise BuildError(f"could not download {VALIDATOR_WHEEL} for Blender's validator:\n{result.stderr.strip()}")
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[-1]) as wheel:
        for name in wheel.namelist():
            if name.endswith("bl_pkg/cli/blender_ext.py"):
                ext.write_bytes(wheel.read(name))
            elif name.endswith("_bpy_internal/extensions/tags.py"):
                tags.write_bytes(wheel.read(name))
    if not ext.is_file():
        raise BuildError(f"{wheels[-1].name} has no blender_ext.py")
    return ext, (tags if tags.is_file() else None)


def validate(zip_path: pathlib.Path, validator: tuple[pathlib.Path, pathlib.Path | None]) -> None:
    ext, tags = validator
    cmd = [sys.executable, str(ext), "validate", str(zip_path)]
    if tags:
        cmd[3:3] = ["--valid-tags", str(tags)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or "error" in output.lower():
        raise BuildError(f"Blender's validator rejected {zip_path.name}:\n{output}")
    print(f"validated with {ext}" + (" and its tags" if tags else ""), file=sys.stderr)


def build(args: argparse.Namespace) -> pathlib.Path:
    manifest = read_manifest()
    for key in ("id", "version", "wheels"):
        if key not in manifest:
            raise BuildError(f"{MANIFEST.name} has no {key!r}")
    entries = [("blender_manifest.toml", MANIFEST)] + package_files()
    for wheel in manifest["wheels"]:
        name = pathlib.PurePosixPath(wheel).name
        entries.append((f"wheels/{name}", fetch_wheel(name)))
    output = pathlib.Path(args.output_dir) / f"{manifest['id']}-{manifest['version']}.zip"
    write_zip(output, entries)
    if not args.no_validate:
        validate(output, find_validator(args.bpy) or fetch_validator())
    digest = hashlib.sha256(output.read_bytes()).hexdigest()
    print(f"{output} ({output.stat().st_size} bytes, sha256 {digest[:16]})")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=str(ROOT / "dist"))
    parser.add_argument("--bpy", help="folder of a bpy install or venv holding Blender's validator "
                                      "(default: the test venvs, else extracted from the bpy wheel)")
    parser.add_argument("--no-validate", action="store_true", help="skip Blender's validator")
    try:
        build(parser.parse_args(argv))
    except BuildError as ex:
        print(f"build.py: error: {ex}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
