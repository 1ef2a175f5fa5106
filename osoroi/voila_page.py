"""Serve notebook 05 with Voila on loopback and drive its widget in headless Chromium.

The browser test and the screenshot in ``reports/figures/05_voila_screenshot.png``
both go through this module. Voila cannot pass papermill parameters, so
:func:`prepare_notebook` writes a copy of notebook 05 with the parameters
injected by papermill (``prepare_only``: the cells are not run) and Voila
serves that copy. This keeps the notebook free of a second, environment-based
way to set its parameters, and the served copy runs exactly the cells that
papermill and nbval run.

Usage::

    python -m osoroi.voila_page           # smoke mode: demo matcher over 40 catalogue items
    python -m osoroi.voila_page --full    # the trained model and index of notebooks 03 and 04

Both write ``reports/figures/05_voila_screenshot.png``.

Needs Voila, Playwright for Python and a Chromium executable (Debian:
``apt-get install chromium``). Playwright's own browser download is not used.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from osoroi import config
from osoroi.atomic import atomic_path

logger = logging.getLogger(__name__)

NOTEBOOK = config.PROJECT_ROOT / "notebooks" / "05_match_widget.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
#: Flags for Chromium in a container: no sandbox (it needs user namespaces) and no
#: network traffic of its own (updates, sync, QUIC), since only loopback is served.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: Smoke-mode parameters of the served copy: a demo matcher over a few catalogue items.
SMOKE_PARAMETERS = {"smoke": True, "demo_items": 40}

#: Seconds to wait for Voila to accept connections, and for the notebook to run the cells
#: before the widget (kernel start, imports, building the matcher). Both are generous, so
#: that a slow shared runner fails only when something is broken.
SERVER_START_TIMEOUT = 60.0
PAGE_TIMEOUT = 300.0
#: Seconds to wait for one upload to be matched and shown.
MATCH_TIMEOUT = 120.0


class VoilaStartError(RuntimeError):
    """Voila exited or did not accept connections in time; the message includes its output."""


class NotebookPageError(RuntimeError):
    """A cell of the served notebook raised an exception; the message includes the traceback."""


def prepare_notebook(
    destination: Path, parameters: Mapping[str, Any] = SMOKE_PARAMETERS, notebook: Path = NOTEBOOK
) -> Path:
    """Write ``notebook`` to ``destination`` with ``parameters`` injected by papermill, without running it."""
    import papermill

    destination.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(notebook),
        str(destination),
        parameters=dict(parameters),
        prepare_only=True,
        kernel_name="python3",
        progress_bar=False,
    )
    return destination


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now (another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class VoilaServer:
    """A Voila server for one notebook on 127.0.0.1, started by :meth:`start` and stopped by :meth:`stop`.

    Use it as a context manager. The kernel runs with the notebook's folder as its
    working directory, so the project root is put on ``PYTHONPATH`` and ``osoroi``
    imports even when the package is not installed. Voila's output goes to
    ``log_path`` (a temporary file by default). Tracebacks of failing cells are shown
    on the page (``--show_tracebacks``), which is safe because only 127.0.0.1 is served.

    Args:
        notebook: the notebook to serve.
        env: extra environment variables for Voila and its kernels.
        log_path: file that receives Voila's stdout and stderr.
    """

    def __init__(
        self, notebook: Path, env: Mapping[str, str] | None = None, log_path: Path | None = None
    ) -> None:
        self.notebook = Path(notebook)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="voila-", suffix=".log")
            os.close(handle)
            log_path = Path(name)
        self.log_path = Path(log_path)
        self._env = dict(env or {})
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = SERVER_START_TIMEOUT) -> str:
        """Start Voila, wait until it responds to HTTP requests and return the page URL."""
        env = {**os.environ, **self._env}
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(config.PROJECT_ROOT), env.get("PYTHONPATH", "")])
        )
        command = [
            sys.executable,
            "-m",
            "voila",
            str(self.notebook),
            "--no-browser",
            f"--port={self.port}",
            "--Voila.ip=127.0.0.1",
            "--show_tracebacks=True",
        ]
        logger.info("Starting Voila on %s (log: %s)", self.url, self.log_path)
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise VoilaStartError(
                    f"Voila exited with status {self._process.returncode}:\n{self.log_tail()}"
                )
            if _responds(self.url + "voila/static/"):
                return self.url
            time.sleep(0.5)
        self.stop()
        raise VoilaStartError(
            f"Voila did not respond on {self.url} within {timeout:.0f} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Stop Voila and its kernels: SIGTERM, then SIGKILL after 10 s."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            logger.warning("Voila did not stop within 10 s of SIGTERM; killing process %d", self._process.pid)
            self._process.kill()
            self._process.wait(timeout=10)

    def log_tail(self, characters: int = 4000) -> str:
        """Return the end of Voila's log."""
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except OSError as error:
            return f"(log {self.log_path} could not be read: {error})"

    def __enter__(self) -> VoilaServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _responds(url: str) -> bool:
    # Any HTTP status counts: the server is up. The notebook page itself is not requested,
    # because each request of it starts a kernel and runs the notebook.
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


class WidgetPage:
    """The Osoroi widget on a Voila page open in Playwright, with the steps a user takes."""

    def __init__(self, page: Any) -> None:
        self.page = page

    def wait_for_widget(self, timeout: float = PAGE_TIMEOUT) -> None:
        """Wait until the notebook has rendered the upload button, or raise NotebookPageError.

        Voila stops at the first failing cell and shows its traceback as a stderr
        output, so a traceback on the page ends the wait early.
        """
        outcome = self.page.wait_for_function(
            """() => {
                const upload = document.querySelector('.osoroi-upload');
                if (upload !== null && upload.offsetParent !== null) return 'widget';
                const stderr = '[data-mime-type="application/vnd.jupyter.stderr"]';
                const outputs = document.querySelectorAll(stderr);
                const failed = Array.from(outputs).find(output => output.innerText.includes('Traceback'));
                return failed === undefined ? false : failed.innerText;
            }""",
            timeout=timeout * 1000,
            polling=500,
        ).json_value()
        if outcome != "widget":
            raise NotebookPageError(f"The notebook failed before the widget was shown:\n{outcome[-3000:]}")

    def upload(self, path: Path) -> None:
        """Click the upload button and pick ``path`` in the file chooser that opens."""
        # ipywidgets 8 creates the <input type="file"> only when the button is clicked.
        with self.page.expect_file_chooser() as chooser:
            self.page.click(".osoroi-upload")
        chooser.value.set_files(str(path))

    def wait_for_status(self, *parts: str, timeout: float = MATCH_TIMEOUT) -> str:
        """Wait until the status line contains every string of ``parts`` and return its text."""
        self.page.wait_for_function(
            """parts => {
                const status = document.querySelector('.osoroi-status');
                return status !== null && parts.every(part => status.innerText.includes(part));
            }""",
            arg=list(parts),
            timeout=timeout * 1000,
        )
        return self.status()

    def wait_for_message(self, part: str, timeout: float = MATCH_TIMEOUT) -> str:
        """Wait until the message area contains ``part`` and return its text."""
        self.page.wait_for_function(
            """part => {
                const message = document.querySelector('.osoroi-message');
                return message !== null && message.innerText.includes(part);
            }""",
            arg=part,
            timeout=timeout * 1000,
        )
        return self.page.inner_text(".osoroi-message")

    def wait_for_match_images(self, count: int, timeout: float = MATCH_TIMEOUT) -> None:
        """Wait until ``count`` match images are shown and every one has loaded."""
        self.page.wait_for_function(
            """count => {
                const images = Array.from(document.querySelectorAll('img.osoroi-match-image'));
                const loaded = images.every(image => image.complete && image.naturalWidth > 0);
                return images.length === count && loaded;
            }""",
            arg=count,
            timeout=timeout * 1000,
        )

    def status(self) -> str:
        """Return the text of the status line."""
        return self.page.inner_text(".osoroi-status")

    def match_image_count(self) -> int:
        """Return the number of match images on the page."""
        return int(self.page.locator("img.osoroi-match-image").count())

    def label_bar_count(self) -> int:
        """Return the number of label rows (label, probability bar, percentage) on the page."""
        return int(self.page.locator(".osoroi-label").count())

    def screenshot(self, path: Path) -> Path:
        """Save a PNG screenshot of the widget to ``path`` atomically.

        The widget, not the page, is captured: Voila scrolls its content inside a
        container, so a full-page screenshot would show only the first screen.
        """
        with atomic_path(path) as temporary:
            self.page.locator(".osoroi-widget").screenshot(path=str(temporary), type="png")
        return path


@contextlib.contextmanager
def open_widget_page(url: str, chromium: Path = CHROMIUM) -> Iterator[WidgetPage]:
    """Open ``url`` in headless Chromium (the given executable, not a Playwright download)."""
    from playwright.sync_api import sync_playwright

    if not chromium.is_file():
        raise FileNotFoundError(
            f"Chromium not found at {chromium}: install it (Debian: apt-get install chromium)."
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(url, timeout=PAGE_TIMEOUT * 1000)
            yield WidgetPage(page)
        finally:
            browser.close()


def write_screenshot(photo: Path, output: Path, smoke: bool = True, matches: int = 4) -> Path:
    """Serve notebook 05, upload ``photo`` in Chromium and save a screenshot of the widget to ``output``.

    Args:
        photo: the image to upload.
        output: the PNG file to write.
        smoke: serve the smoke-mode demo matcher; False serves the trained model and
            its catalogue index (notebooks 03 and 04 must have saved them).
        matches: the number of matches to show.
    """
    parameters = {**SMOKE_PARAMETERS, "match_count": matches} if smoke else {"match_count": matches}
    with tempfile.TemporaryDirectory(prefix="osoroi-voila-") as folder:
        notebook = prepare_notebook(Path(folder) / NOTEBOOK.name, parameters)
        # The served notebook saves its own figures; they go to the temporary folder, not to reports/.
        env = {"OSOROI_REPORTS_DIR": str(Path(folder) / "reports")}
        with VoilaServer(notebook, env=env, log_path=Path(folder) / "voila.log") as server:
            with open_widget_page(server.url) as page:
                page.wait_for_widget()
                page.upload(photo)
                status = page.wait_for_status("Found", photo.name)
                page.wait_for_match_images(matches)
                logger.info("Page status: %s", status)
                return page.screenshot(output)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and write the Voila screenshot."""
    from osoroi.widget import example_photo

    parser = argparse.ArgumentParser(prog="python -m osoroi.voila_page", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--photo", type=Path, default=None, help="photo to upload (default: a validation t-shirt)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="PNG to write (default: reports/figures/05_voila_screenshot.png)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="serve the trained model and catalogue index instead of the smoke-mode demo matcher",
    )
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    photo = arguments.photo or example_photo(photo_class="t-shirt")
    output = arguments.output or config.figures_dir() / "05_voila_screenshot.png"
    path = write_screenshot(photo, output, smoke=not arguments.full)
    logger.info("Saved screenshot %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
