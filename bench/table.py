"""Print the benchmark results (``results.jsonl``) as a Markdown table.

The latest run of each benchmark name is shown; ``load`` rows also get their
speed ratio against the ``naive-load`` row of the same scale.
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
    print("| benchmark | seconds | peak RSS (MB) | lines/s | MB/s | vs naive |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in latest.items():
        ratio = ""
        if name.startswith("load-"):
            naive = latest.get("naive-" + name)
            if naive and naive.get("lines_per_s"):
                ratio = f"{row['lines_per_s'] / naive['lines_per_s']:.1f}x"
        print(
            f"| {name} | {row['seconds']} | {row['peak_rss_mb']} | {row.get('lines_per_s', '')} "
            f"| {row.get('mb_per_s', '')} | {ratio} |"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/out/results.jsonl")
