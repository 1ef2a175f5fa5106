"""End-to-end test: notebook 05 served by Voila, driven by a user in headless Chromium.

Voila cannot pass papermill parameters, so the test serves a copy of notebook 05
that papermill parameterised (``prepare_only``, nothing executed) in ``tmp_path``:
smoke mode, a demo matcher over a few catalogue items. The notebook itself needs no
environment switch, and the page runs the same cells as a papermill smoke run.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from osoroi.voila_page import (
    CHROMIUM,
    SMOKE_PARAMETERS,
    NotebookPageError,
    VoilaServer,
    WidgetPage,
    open_widget_page,
    prepare_notebook,
)
from osoroi.widget import example_photo

pytestmark = [
    pytest.mark.browser,
    pytest.mark.real_data,
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason=f"Chromium not found at {CHROMIUM}; install it with 'apt-get install chromium'",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None, reason="Playwright for Python is not installed"
    ),
]


@pytest.fixture()
def widget_page(tmp_path: Path, real_data_dir: Path) -> Iterator[WidgetPage]:
    notebook = prepare_notebook(tmp_path / "05_match_widget.ipynb", SMOKE_PARAMETERS)
    server = VoilaServer(notebook, log_path=tmp_path / "voila.log")
    server.start()
    try:
        with open_widget_page(server.url) as page:
            page.wait_for_widget()
            yield page
    finally:
        server.stop()


def test_voila_upload_shows_labels_and_matches(widget_page: WidgetPage, tmp_path: Path) -> None:
    photo = example_photo(photo_class="t-shirt")
    truncated = tmp_path / "cut-photo.jpg"
    truncated.write_bytes(photo.read_bytes()[:5_000])

    widget_page.upload(truncated)
    message = widget_page.wait_for_message("cut-photo.jpg was not matched.")
    assert "truncated or corrupt" in message

    widget_page.upload(photo)
    status = widget_page.wait_for_status("Found 4 matches", photo.name)
    widget_page.wait_for_match_images(4)

    assert photo.name in status
    assert widget_page.match_image_count() == 4
    assert widget_page.label_bar_count() >= 3
    assert "was not matched" not in widget_page.page.inner_text(".osoroi-message")
    screenshot = widget_page.screenshot(tmp_path / "voila.png")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_voila_page_reports_missing_model(tmp_path: Path, real_data_dir: Path) -> None:
    notebook = prepare_notebook(tmp_path / "05_match_widget.ipynb", {"smoke": False})
    derived = tmp_path / "derived"  # contains no trained model
    with VoilaServer(
        notebook, env={"OSOROI_DERIVED_DIR": str(derived)}, log_path=tmp_path / "voila.log"
    ) as server:
        with open_widget_page(server.url) as page:
            with pytest.raises(NotebookPageError, match="ModelNotFoundError") as raised:
                page.wait_for_widget()

    assert "03_transfer_learning.ipynb" in str(raised.value)
