# SPDX-License-Identifier: GPL-3.0-or-later
"""Makes the repository importable so core tests run without Blender."""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
