"""Figures of the reports: matplotlib without a display, written like every other output."""

from __future__ import annotations

import os
from typing import Any

from pipeline.io import Outputs, staged_path

__all__ = ["pyplot", "save_figure"]


def pyplot() -> Any:  # noqa: ANN401
    """``matplotlib.pyplot`` on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str], outputs: Outputs | None = None) -> None:  # noqa: ANN401
    """Write ``fig`` as a PNG to ``path`` (staged in ``outputs``, else atomically) and close it."""
    fig.tight_layout()
    with staged_path(path, outputs) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    pyplot().close(fig)
