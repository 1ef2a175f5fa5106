"""Reproduce the whole study: run notebooks 01 to 05 in order with papermill.

Each executed notebook goes to ``reports/<name>.ipynb``, its figures to
``reports/figures/`` and its metrics to ``reports/metrics/``. The run stops at
the first failing notebook and names the failing cell. ``--from 03`` reruns from
notebook 03 and reuses the outputs of 01 and 02 on disk. A summary page,
``reports/SUMMARY.md``, lists the headline figures of every notebook and the
time each one took.

Usage::

    python -m osoroi.reproduce              # the whole study
    python -m osoroi.reproduce --from 03    # rerun 03, 04 and 05
    python -m osoroi.reproduce --only 02 -p max_epochs 3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osoroi import config
from osoroi.atomic import write_json
from osoroi.summary import write_summary

logger = logging.getLogger(__name__)

NOTEBOOKS_DIR = config.PROJECT_ROOT / "notebooks"
TIMINGS_FILE = "reproduce_timings.json"


class NotebookFailedError(RuntimeError):
    """A notebook raised an exception; the message names the notebook and the failing cell."""


@dataclass(frozen=True)
class NotebookRun:
    """The outcome of one executed notebook."""

    name: str
    seconds: float
    output: Path


def find_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """Return the numbered notebooks (``NN_name.ipynb``) of ``folder`` in order."""
    notebooks = sorted(path for path in folder.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"No numbered notebooks (NN_name.ipynb) found in {folder}")
    return notebooks


def select_notebooks(notebooks: Sequence[Path], start: str | None = None, only: str | None = None) -> list[Path]:
    """Return the notebooks from prefix ``start`` on, or just the one with prefix ``only``."""
    prefixes = [path.name[:2] for path in notebooks]
    for option, value in (("--from", start), ("--only", only)):
        if value is not None and value.zfill(2) not in prefixes:
            raise ValueError(f"Invalid {option} {value!r}: choose one of {', '.join(prefixes)}")
    if only is not None:
        return [path for path in notebooks if path.name[:2] == only.zfill(2)]
    if start is not None:
        return [path for path in notebooks if path.name[:2] >= start.zfill(2)]
    return list(notebooks)


def run_notebook(notebook: Path, parameters: dict[str, Any], output_dir: Path) -> NotebookRun:
    """Execute ``notebook`` with papermill and write it to ``output_dir`` only when it succeeds.

    A failed run is kept beside it as ``<name>.failed.ipynb`` for inspection, and the
    previous successful output stays untouched.
    """
    import papermill
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    output = output_dir / notebook.name
    running_output = output_dir / f".{notebook.stem}.running.ipynb"
    failed_output = output_dir / f"{notebook.stem}.failed.ipynb"
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(notebook),
            str(running_output),
            parameters=parameters,
            cwd=str(notebook.parent),
            kernel_name="python3",
            progress_bar=True,
            log_output=False,
        )
    except PapermillExecutionError as error:
        os.replace(running_output, failed_output)
        raise NotebookFailedError(
            f"{notebook.name} failed in cell {error.cell_index} (execution count {error.exec_count}): "
            f"{error.ename}: {error.evalue}. The executed notebook with the traceback is {failed_output}"
        ) from error
    except DeadKernelError as error:
        # Papermill 2.7.0 marks every cell completed after a kernel death, so no cell can be named.
        if running_output.exists():
            os.replace(running_output, failed_output)
        raise NotebookFailedError(
            f"{notebook.name}: the kernel died ({error}), for example from running out of memory or a "
            f"crash in native code. The executed notebook up to that point is {failed_output}"
        ) from error
    except BaseException:
        # An interrupt leaves a partial notebook that must not look like a result.
        running_output.unlink(missing_ok=True)
        raise
    os.replace(running_output, output)
    failed_output.unlink(missing_ok=True)
    return NotebookRun(notebook.stem, time.perf_counter() - started, output)


def load_timings() -> dict[str, float]:
    """Return the seconds each notebook took in earlier runs, from ``reports/metrics/``."""
    path = config.metrics_dir() / TIMINGS_FILE
    if not path.exists():
        return {}
    return {str(name): float(seconds) for name, seconds in json.loads(path.read_text()).items()}


def reproduce(
    start: str | None = None,
    only: str | None = None,
    parameters: dict[str, Any] | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
) -> list[NotebookRun]:
    """Run the selected notebooks in order, record their times and rewrite the summary page."""
    selected = select_notebooks(find_notebooks(notebooks_dir), start=start, only=only)
    output_dir = config.reports_dir()
    timings = load_timings()
    runs: list[NotebookRun] = []
    for position, notebook in enumerate(selected, start=1):
        logger.info("Running %s (%d of %d)", notebook.name, position, len(selected))
        run = run_notebook(notebook, dict(parameters or {}), output_dir)
        logger.info("Finished %s in %.1f s", notebook.name, run.seconds)
        runs.append(run)
        timings[run.name] = round(run.seconds, 1)
        write_json(config.metrics_dir() / TIMINGS_FILE, timings)
    summary = write_summary(find_notebooks(notebooks_dir), timings)
    logger.info("Wrote %s", summary)
    return runs


def _parse_parameter(raw: str) -> Any:
    # Literals such as 3, 0.5, true or "text" keep their type; anything else stays a string.
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of ``python -m osoroi.reproduce``."""
    parser = argparse.ArgumentParser(prog="python -m osoroi.reproduce", description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--from", dest="start", metavar="NN", help="rerun from notebook NN, reusing earlier outputs")
    group.add_argument("--only", metavar="NN", help="run only notebook NN")
    parser.add_argument(
        "--notebooks-dir", type=Path, default=NOTEBOOKS_DIR, help="folder of the numbered notebooks to run"
    )
    group.add_argument(
        "--summary-only", action="store_true",
        help="run no notebook, only rewrite reports/SUMMARY.md from the metrics and timings on disk",
    )
    parser.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help="papermill parameter passed to every selected notebook (VALUE is read as JSON when it parses)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reproduction from the command line and return the exit status."""
    arguments = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    parameters = {name: _parse_parameter(value) for name, value in arguments.parameter}
    if "smoke" in parameters:
        # Smoke runs write under derived/smoke/ in the kernel, but this process writes reports/.
        logger.error("Invalid parameter smoke: the reproduction runs the full study; use 'make test' "
                     "for smoke runs, or papermill on one notebook with -p smoke True")
        return 2
    try:
        notebooks = find_notebooks(arguments.notebooks_dir)
        select_notebooks(notebooks, start=arguments.start, only=arguments.only)
    except (FileNotFoundError, ValueError) as error:
        logger.error("%s", error)
        return 2
    if arguments.summary_only:
        try:
            logger.info("Wrote %s", write_summary(notebooks, load_timings()))
        except ValueError as error:
            logger.error("%s", error)
            return 1
        return 0
    started = time.perf_counter()
    try:
        runs = reproduce(
            start=arguments.start,
            only=arguments.only,
            parameters=parameters,
            notebooks_dir=arguments.notebooks_dir,
        )
    except (NotebookFailedError, ValueError, FileNotFoundError) as error:
        logger.error("%s", error)
        return 1
    logger.info("Ran %d notebooks in %.1f min", len(runs), (time.perf_counter() - started) / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
