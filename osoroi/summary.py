"""Write ``reports/SUMMARY.md``: headline figures, figures and run time of every notebook."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat

from osoroi import config
from osoroi.atomic import atomic_open

logger = logging.getLogger(__name__)

# Metrics files without a "headline" entry show at most this many top-level numbers.
MAX_FALLBACK_FIGURES = 12

_HEAD_NAMES = ("articleType", "masterCategory", "subCategory", "gender", "baseColour", "usage", "season")
_HARD_HEADS = ("articleType", "gender", "baseColour")  # the heads furthest from their targets

# Headline figures of the study's metrics files: file stem -> figure name -> key path in the file.
HEADLINES: dict[str, dict[str, tuple[str, ...]]] = {
    "02_fashion_mnist": {
        "CNN test accuracy": ("models", "Baseline CNN", "test_accuracy"),
        "CNN training seconds": ("models", "Baseline CNN", "train_seconds"),
        "CNN epochs": ("cnn", "epochs"),
        "logistic regression test accuracy": ("models", "Logistic regression", "test_accuracy"),
        "linear SVM test accuracy": ("models", "Linear SVM", "test_accuracy"),
        "random forest test accuracy": ("models", "Random forest", "test_accuracy"),
    },
    "03_transfer_learning": {
        **{f"test accuracy {head}": ("test", head, "accuracy") for head in _HEAD_NAMES},
        **{
            f"test accuracy {head}, frozen heads": ("test_frozen_heads", head, "accuracy")
            for head in _HARD_HEADS
        },
        "resolution": ("resolution",),
        "trunk extraction seconds": ("seconds", "trunk_extraction"),
        "final training seconds": ("seconds", "final_training"),
        "images/s bfloat16 + channels_last": ("throughput_images_per_second", "bfloat16_channels_last"),
        "images/s float32": ("throughput_images_per_second", "float32_contiguous"),
        "bfloat16 vs float32 cosine min": ("cosine_bf16_fp32", "min"),
    },
    "04_evaluation": {
        **{f"macro-F1 {head}": ("heads", head, "macro_f1") for head in _HARD_HEADS},
        "precision@4 articleType, model": ("retrieval", "model", "precision@4_articleType"),
        "precision@4 articleType, raw backbone": ("retrieval", "raw_backbone", "precision@4_articleType"),
        "precision@4 articleType+colour, model": ("retrieval", "model", "precision@4_articleType+baseColour"),
        "precision@4 articleType+colour, raw backbone": (
            "retrieval", "raw_backbone", "precision@4_articleType+baseColour"
        ),
        "real photos top-1 articleType hit rate": ("photos", "accuracy"),
        "real photos top-3 articleType hit rate": ("photos", "accuracy@3"),
    },
}


def notebook_title(notebook: Path) -> str:
    """Return the first Markdown heading of ``notebook``, or its file stem when it has none."""
    document = nbformat.read(notebook, as_version=4)
    for cell in document.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            if line.startswith("#"):
                return line.lstrip("#").strip()
    return notebook.stem


def headline_figures(metrics: Mapping[str, Any], name: str = "") -> dict[str, Any]:
    """Return the headline figures of metrics file ``name`` (its stem).

    They are the file's ``headline`` entry, else the figures :data:`HEADLINES` lists for
    ``name`` (skipping keys the file lacks, and naming the target of a test accuracy
    that the file's ``targets`` entry sets), else its first top-level scalar values.
    """
    headline = metrics.get("headline")
    if isinstance(headline, Mapping):
        return dict(headline)
    if name in HEADLINES:
        figures = {}
        for label, path in HEADLINES[name].items():
            value = _lookup(metrics, path)
            if value is None:
                continue
            target = _lookup(metrics, ("targets", path[1])) if path[0] == "test" and len(path) == 3 else None
            figures[label if target is None else f"{label} (target {target})"] = value
        return figures
    return dict(list(_scalars(metrics))[:MAX_FALLBACK_FIGURES])


def _lookup(metrics: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = metrics
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _scalars(metrics: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, (int, float, str)):
            yield name, value
        elif isinstance(value, Mapping) and not prefix:
            yield from _scalars(value, prefix=f"{name}.")


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_summary(notebooks: Sequence[Path], timings: Mapping[str, float]) -> Path:
    """Write the summary page for ``notebooks`` into the reports folder and return its path."""
    reports = config.reports_dir()
    metrics_dir = config.metrics_dir()
    figures_dir = config.figures_dir()
    lines = [
        "# Osoroi study summary",
        "",
        "Generated by `python -m osoroi.reproduce` from the executed notebooks in this folder.",
        "",
        "| notebook | minutes |",
        "|---|---|",
    ]
    for notebook in notebooks:
        seconds = timings.get(notebook.stem)
        minutes = f"{seconds / 60:.1f}" if seconds is not None else "not run"
        lines.append(f"| [{notebook.stem}]({notebook.name}) | {minutes} |")
    total = sum(timings.get(notebook.stem, 0.0) for notebook in notebooks)
    lines += [f"| total | {total / 60:.1f} |", ""]

    for notebook in notebooks:
        prefix = notebook.name[:2]
        lines += [f"## {notebook_title(notebook)}", ""]
        for metrics_path in sorted(metrics_dir.glob(f"{prefix}_*.json")):
            try:
                metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"Invalid metrics file {metrics_path}: {error}. Rerun its notebook, or fix the file "
                    "and rewrite the summary with 'python -m osoroi.reproduce --summary-only'."
                ) from error
            figures = headline_figures(metrics, metrics_path.stem)
            lines += [f"Metrics: [`metrics/{metrics_path.name}`](metrics/{metrics_path.name})", ""]
            if figures:
                lines += ["| figure | value |", "|---|---|"]
                lines += [f"| {name} | {_format(value)} |" for name, value in figures.items()]
                lines.append("")
        figure_paths = sorted(figures_dir.glob(f"{prefix}_*.png"))
        if figure_paths:
            lines.append("Figures: " + ", ".join(f"[{path.stem}](figures/{path.name})" for path in figure_paths))
            lines.append("")

    path = reports / "SUMMARY.md"
    with atomic_open(path, "w", encoding="utf-8") as stream:
        stream.write("\n".join(lines))
    return path
