# SPDX-License-Identifier: GPL-3.0-or-later
"""Uploads one file through Shaman as the helper process would, and reports its own memory.

Started by run.py like Blender starts the helper: `sys.executable -I`, the extension's folder
put first on sys.path, the core imported from the installed package. Prints one JSON line:
RSS after imports and a warm-up upload of a tiny file (the baseline), and the peak (VmHWM)
after the big upload, in KiB.

    python -I upload_child.py <sys.path as JSON> <package> <url> <file> <tiny file>
"""
from __future__ import annotations

import importlib
import json
import sys
import time


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main() -> None:
    paths, package, url, path, tiny = sys.argv[1:6]
    sys.path[:0] = json.loads(paths)
    shaman = importlib.import_module(package + ".core.shaman")
    client_module = importlib.import_module(package + ".core.client")
    client = client_module.ManagerClient(client_module.Connection(url=url, timeout=120.0, ignore_proxy=True))
    # Warm-up: everything an upload imports and the connection, so the baseline is a working helper.
    shaman.upload(client, [(tiny, "tiny.bin")], "bench/warm-up", shaman.HashCache(None))
    baseline_rss, baseline_hwm = _status_kib("VmRSS"), _status_kib("VmHWM")
    start = time.perf_counter()
    result = shaman.upload(client, [(path, "big.bin")], "bench/big", shaman.HashCache(None))
    seconds = time.perf_counter() - start
    print(json.dumps({"baseline_rss_kib": baseline_rss, "baseline_hwm_kib": baseline_hwm,
                      "peak_hwm_kib": _status_kib("VmHWM"), "rss_after_kib": _status_kib("VmRSS"),
                      "bytes_uploaded": result.bytes_uploaded, "seconds": seconds}))


if __name__ == "__main__":
    main()
