"""Write and check the smoke-mode reference notebooks that nbval validates.

``write`` executes every notebook of ``notebooks/`` with ``smoke=True`` through
papermill and stores the result in ``tests/notebooks/``. ``check`` runs nbval on
those references: it executes each one again and compares every cell's output
with the stored one, after the substitutions in ``tests/nbval_sanitize.cfg``
(times, rates, progress bars, paths and memory addresses). Both commands use a
fresh temporary folder for derived data and reports, so the references and the
check start from the same empty state as a fresh clone.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from osoroi import config
from osoroi.reproduce import NotebookFailedError, find_notebooks, run_notebook

logger = logging.getLogger(__name__)

REFERENCE_DIR = config.PROJECT_ROOT / "tests" / "notebooks"
SANITIZE_FILE = config.PROJECT_ROOT / "tests" / "nbval_sanitize.cfg"
CELL_TIMEOUT_SECONDS = 600


def _isolate_outputs(root: Path) -> None:
    os.environ["OSOROI_DERIVED_DIR"] = str(root / "derived")
    os.environ["OSOROI_REPORTS_DIR"] = str(root / "reports")
    os.environ.pop("OSOROI_SMOKE", None)


def write_references() -> list[Path]:
    """Execute every notebook in smoke mode and store it as an nbval reference."""
    REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="osoroi-smoke-") as root:
        _isolate_outputs(Path(root))
        for notebook in find_notebooks():
            logger.info("Executing %s in smoke mode", notebook.name)
            run = run_notebook(notebook, {"smoke": True}, REFERENCE_DIR)
            logger.info("Wrote %s in %.1f s", run.output.relative_to(config.PROJECT_ROOT), run.seconds)
            written.append(run.output)
    return written


def check_references() -> int:
    """Run nbval on the references and return pytest's exit status."""
    references = sorted(REFERENCE_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not references:
        raise FileNotFoundError(f"No reference notebooks in {REFERENCE_DIR}: run 'make smoke-notebooks' first")
    command = [
        sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
        f"--nbval-sanitize-with={SANITIZE_FILE}",
        f"--nbval-cell-timeout={CELL_TIMEOUT_SECONDS}",
        "-p", "no:cacheprovider",
        *map(str, references),
    ]
    with tempfile.TemporaryDirectory(prefix="osoroi-nbval-") as root:
        _isolate_outputs(Path(root))
        return subprocess.call(command, cwd=config.PROJECT_ROOT)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and write or check the references."""
    parser = argparse.ArgumentParser(prog="python -m osoroi.smoke_notebooks", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("write", "check"), help="write the references, or check them with nbval")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if not os.environ.get("OSOROI_DATA_DIR", "").strip():
        # The notebooks run on the real data sets, even in smoke mode.
        logger.warning("OSOROI_DATA_DIR is not set: skipping the notebook tests, which need the real data sets")
        return 0
    if arguments.command == "write":
        try:
            write_references()
        except NotebookFailedError as error:
            logger.error("%s", error)
            return 1
        return 0
    return check_references()


if __name__ == "__main__":
    sys.exit(main())
