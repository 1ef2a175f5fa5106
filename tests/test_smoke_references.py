"""Tests that the nbval references in tests/notebooks/ were written from the current notebooks."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from osoroi import config

NOTEBOOKS = sorted((config.PROJECT_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REFERENCES = config.PROJECT_ROOT / "tests" / "notebooks"


def cell_sources(path: Path) -> list[tuple[str, str]]:
    document = nbformat.read(path, as_version=4)
    return [
        (cell.cell_type, cell.source)
        for cell in document.cells
        if "injected-parameters" not in cell.get("metadata", {}).get("tags", [])
    ]


def test_every_notebook_has_a_reference() -> None:
    assert NOTEBOOKS
    references = sorted(path.name for path in REFERENCES.glob("[0-9][0-9]_*.ipynb"))
    assert references == [path.name for path in NOTEBOOKS]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_reference_matches_notebook_cells(notebook: Path) -> None:
    reference = REFERENCES / notebook.name
    # A mismatch means the notebook changed after its reference was written: run 'make smoke-notebooks'.
    assert cell_sources(reference) == cell_sources(notebook)
