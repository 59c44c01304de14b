"""Run one command as a whole process; record wall time and peak RSS.

Usage::

    python bench/measure.py --name NAME [--lines N] [--bytes B] [--out FILE] -- CMD ...

Appends one JSON line (name, command, seconds, peak RSS in MB, exit code and the
optional throughput figures) to ``--out`` (default ``bench/out/results.jsonl``).
Peak RSS is the child's own ``ru_maxrss`` from ``os.wait4``, so it counts the
whole process, not only Python objects.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """Run ``cmd``; return (seconds, peak RSS in MB, exit code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return seconds, usage.ru_maxrss / 1024.0, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--lines", type=int, help="lines processed (for lines/s)")
    parser.add_argument("--bytes", type=int, help="bytes processed (for MB/s)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/results.jsonl"))
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    seconds, rss_mb, rc = measure(cmd)
    row = {
        "name": args.name,
        "cmd": " ".join(cmd),
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(rss_mb, 1),
        "rc": rc,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if args.lines:
        row["lines"] = args.lines
        row["lines_per_s"] = round(args.lines / seconds)
    if args.bytes:
        row["mb"] = round(args.bytes / 1e6, 1)
        row["mb_per_s"] = round(args.bytes / 1e6 / seconds, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row), file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
