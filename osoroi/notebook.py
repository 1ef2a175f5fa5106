"""Set-up shared by every notebook: settings, logging, plot style and the smoke mode."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from osoroi import config


def setup_notebook(data_dir: str = "", smoke: bool = False, seed: int = 0) -> None:
    """Apply a notebook's parameters: data folder, smoke mode, logging, plot style and seeds.

    ``data_dir`` (when not empty) sets ``OSOROI_DATA_DIR``. In smoke mode the
    derived data and reports go to ``<derived>/smoke/`` unless
    ``OSOROI_REPORTS_DIR`` is already set, so a quick check never overwrites
    the committed reports.
    """
    if data_dir:
        os.environ["OSOROI_DATA_DIR"] = str(Path(data_dir).expanduser().resolve())
    if not smoke and os.environ.get("OSOROI_SMOKE") == "1":
        raise RuntimeError(
            "smoke=False, but this kernel ran in smoke mode before (OSOROI_SMOKE=1), so its settings "
            "point at the smoke folders. Restart the kernel (and unset OSOROI_SMOKE) for a full run."
        )
    # OSOROI_SMOKE marks the set-up as done, so running this cell twice does not nest folders.
    if smoke and os.environ.get("OSOROI_SMOKE") != "1":
        smoke_root = config.derived_dir("smoke")
        os.environ.setdefault("OSOROI_REPORTS_DIR", str(smoke_root / "reports"))
        os.environ["OSOROI_DERIVED_DIR"] = str(smoke_root)
        os.environ["OSOROI_SMOKE"] = "1"

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    # Lightning and matplotlib are chatty at INFO level; keep their warnings only.
    for name in ("matplotlib", "PIL", "fsspec", "lightning.pytorch.utilities.rank_zero",
                 "pytorch_lightning.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)

    import matplotlib

    matplotlib.rcParams["figure.dpi"] = 100
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")

    import numpy as np

    np.random.seed(seed)
    # Importing torch takes seconds, so it is seeded only when already imported;
    # the training code seeds itself with Lightning's seed_everything.
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
