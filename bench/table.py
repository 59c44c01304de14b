"""Print the benchmark results (``results.jsonl``) as a Markdown table.

The latest run of each benchmark name is shown; a row with a ``naive-<name>``
reference (same scale, same run) gets its speed-up (naive seconds / seconds)
and its peak memory as a share of the reference's.
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    """Print the table for ``path``."""
    latest: dict[str, dict] = {}
    for line in open(path):
        row = json.loads(line)
        latest[row["name"]] = row
    print("| benchmark | seconds | peak RSS (MB) | lines/s | MB/s | speed vs naive | RSS vs naive |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in latest.items():
        speed = memory = ""
        naive = latest.get("naive-" + name)
        if naive:
            speed = f"{naive['seconds'] / row['seconds']:.2f}x"
            memory = f"{row['peak_rss_mb'] / naive['peak_rss_mb']:.2f}"
        print(
            f"| {name} | {row['seconds']} | {row.get('peak_rss_mb', '')} | {row.get('lines_per_s', '')} "
            f"| {row.get('mb_per_s', '')} | {speed} | {memory} |"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/out/results.jsonl")
