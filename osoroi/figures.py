"""One helper that saves every notebook figure to ``reports/figures/``."""

from __future__ import annotations

import logging
from pathlib import Path

from matplotlib.figure import Figure

from osoroi.atomic import atomic_path
from osoroi.config import figures_dir

logger = logging.getLogger(__name__)


def save_figure(figure: Figure, name: str, dpi: int = 120, tight: bool = True) -> Path:
    """Save ``figure`` as ``reports/figures/<name>.png`` atomically and return the path."""
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"Invalid figure name {name!r}: use a plain file stem such as '01_label_shares'.")
    path = figures_dir() / f"{name}.png"
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    logger.info("Saved figure %s", path.name)
    return path
