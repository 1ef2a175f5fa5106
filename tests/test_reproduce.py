"""Tests for the papermill reproduction runner and the summary page."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from osoroi import config, reproduce
from osoroi.summary import headline_figures, write_summary


def write_notebook(path: Path, source: str, title: str = "A notebook") -> Path:
    """Write a notebook with a title, a tagged parameters cell and one code cell."""
    parameters = nbformat.v4.new_code_cell("smoke = False\nvalue = 1")
    parameters.metadata["tags"] = ["parameters"]
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell(f"# {title}"), parameters, nbformat.v4.new_code_cell(source)]
    )
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


@pytest.fixture()
def notebooks(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    metrics = (
        "import json, os, pathlib\n"
        "out = pathlib.Path(os.environ['OSOROI_REPORTS_DIR'], 'metrics')\n"
        "out.mkdir(parents=True, exist_ok=True)\n"
        "(out / '{prefix}_result.json').write_text(json.dumps({{'headline': {{'value': value}}}}))"
    )
    write_notebook(folder / "01_first.ipynb", metrics.format(prefix="01"), title="First step")
    write_notebook(folder / "02_second.ipynb", metrics.format(prefix="02"), title="Second step")
    return folder


def test_select_notebooks_from_and_only() -> None:
    paths = [Path("01_a.ipynb"), Path("02_b.ipynb"), Path("03_c.ipynb")]

    assert reproduce.select_notebooks(paths, start="2") == paths[1:]
    assert reproduce.select_notebooks(paths, only="03") == paths[2:]
    assert reproduce.select_notebooks(paths) == paths


def test_select_notebooks_unknown_prefix() -> None:
    with pytest.raises(ValueError, match=r"Invalid --from '07': choose one of 01, 02"):
        reproduce.select_notebooks([Path("01_a.ipynb"), Path("02_b.ipynb")], start="07")


def test_reproduce_writes_outputs_and_summary(notebooks: Path, tmp_path: Path) -> None:
    runs = reproduce.reproduce(parameters={"value": 7}, notebooks_dir=notebooks)
    reports = Path(reproduce.config.reports_dir())

    assert [run.name for run in runs] == ["01_first", "02_second"]
    assert (reports / "01_first.ipynb").exists()
    assert json.loads((reports / "metrics" / "02_result.json").read_text()) == {"headline": {"value": 7}}
    summary = (reports / "SUMMARY.md").read_text()
    assert "## First step" in summary
    assert "| value | 7 |" in summary
    timings = json.loads((reports / "metrics" / reproduce.TIMINGS_FILE).read_text())
    assert set(timings) == {"01_first", "02_second"}


def test_reproduce_from_reuses_earlier_outputs(notebooks: Path) -> None:
    reproduce.reproduce(notebooks_dir=notebooks)
    first_output = Path(reproduce.config.reports_dir()) / "01_first.ipynb"
    first_written = first_output.stat().st_mtime_ns

    runs = reproduce.reproduce(start="02", notebooks_dir=notebooks)

    assert [run.name for run in runs] == ["02_second"]
    assert first_output.stat().st_mtime_ns == first_written
    assert "01_first" in reproduce.load_timings()


def test_failing_notebook_names_cell_and_keeps_previous(notebooks: Path) -> None:
    reproduce.reproduce(only="01", notebooks_dir=notebooks)
    reports = Path(reproduce.config.reports_dir())
    previous = (reports / "01_first.ipynb").read_text()
    write_notebook(notebooks / "01_first.ipynb", "raise ValueError('bad label column')")

    with pytest.raises(reproduce.NotebookFailedError, match=r"01_first.ipynb failed in cell \d+.*bad label column"):
        reproduce.reproduce(notebooks_dir=notebooks)

    assert (reports / "01_first.ipynb").read_text() == previous
    assert (reports / "01_first.failed.ipynb").exists()
    assert not (reports / "02_second.ipynb").exists()


def test_main_returns_error_status_on_failure(notebooks: Path) -> None:
    write_notebook(notebooks / "01_first.ipynb", "1 / 0")

    assert reproduce.main(["--only", "01", "--notebooks-dir", str(notebooks)]) == 1
    assert reproduce.main(["--from", "09", "--notebooks-dir", str(notebooks)]) == 2


def test_headline_falls_back_to_scalars() -> None:
    metrics = {"accuracy": 0.9, "per_class": [1, 2], "test": {"f1": 0.5, "deep": {"x": 1}}}

    assert headline_figures(metrics) == {"accuracy": 0.9, "test.f1": 0.5}
    assert headline_figures({"headline": {"a": 1}, "b": 2}) == {"a": 1}


def test_dead_kernel_names_notebook_and_keeps_it(notebooks: Path) -> None:
    write_notebook(notebooks / "01_first.ipynb", "import os\nos._exit(3)")

    with pytest.raises(reproduce.NotebookFailedError, match="01_first.ipynb: the kernel died"):
        reproduce.reproduce(only="01", notebooks_dir=notebooks)
    assert (config.reports_dir() / "01_first.failed.ipynb").exists()
    assert not (config.reports_dir() / "01_first.ipynb").exists()


def test_missing_notebooks_folder_exits_with_usage_error(tmp_path: Path) -> None:
    assert reproduce.main(["--summary-only", "--notebooks-dir", str(tmp_path / "absent")]) == 2


def test_malformed_metrics_file_is_named(notebooks: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = config.metrics_dir() / "01_broken.json"
    broken.write_text("{\n")

    assert reproduce.main(["--summary-only", "--notebooks-dir", str(notebooks)]) == 1
    assert f"Invalid metrics file {broken}" in caplog.text


def test_headline_picks_listed_figures() -> None:
    metrics = {
        "models": {"Baseline CNN": {"test_accuracy": 0.93, "train_seconds": 600.0}},
        "cnn": {"epochs": 15, "test_loss": 0.4},
    }
    figures = headline_figures(metrics, "02_fashion_mnist")

    assert figures == {"CNN test accuracy": 0.93, "CNN training seconds": 600.0, "CNN epochs": 15}


def test_headline_names_test_targets() -> None:
    metrics = {"test": {"gender": {"accuracy": 0.9}}, "targets": {"gender": 0.92}}
    figures = headline_figures(metrics, "03_transfer_learning")

    assert figures == {"test accuracy gender (target 0.92)": 0.9}


def test_summary_only_rewrites_summary(notebooks: Path) -> None:
    assert reproduce.main(["--only", "01", "--notebooks-dir", str(notebooks)]) == 0
    summary = config.reports_dir() / "SUMMARY.md"
    summary.unlink()

    assert reproduce.main(["--summary-only", "--notebooks-dir", str(notebooks)]) == 0
    assert "| [01_first](01_first.ipynb) |" in summary.read_text()
    assert not (config.reports_dir() / "02_second.ipynb").exists()


def test_summary_marks_notebooks_not_run(notebooks: Path) -> None:
    path = write_summary(reproduce.find_notebooks(notebooks), {"01_first": 90.0})
    text = path.read_text()

    assert "| [01_first](01_first.ipynb) | 1.5 |" in text
    assert "| [02_second](02_second.ipynb) | not run |" in text
