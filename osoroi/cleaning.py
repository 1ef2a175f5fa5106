"""Cleaning rules for the catalogue table, each counted in a :class:`CleaningReport`.

A row needs an image that decodes and a usable ``articleType``; a rule that finds a
problem with ``articleType`` removes the row. A problem with any other label sets that
label to missing, so the row still serves the heads whose labels it has.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from osoroi.catalogue import IMAGE_MISSING, IMAGE_UNREADABLE, LABEL_COLUMNS

logger = logging.getLogger(__name__)

# Inconsistent spellings found in the catalogue, where two subCategory names under one
# masterCategory cover the same items. "Perfumes" contains only "Perfume and Body Mist",
# which "Fragrance" also contains. "Skin" and "Skin Care" share face moisturisers, masks
# and scrubs.
DEFAULT_SPELLINGS: dict[str, dict[str, str]] = {
    "subCategory": {"Perfumes": "Fragrance", "Skin": "Skin Care"},
}

# Labels that name a promotion, not a kind of item: "Free Gifts" rows are watches,
# sarees, belts and bags given away with an order.
DEFAULT_NON_VISUAL: dict[str, tuple[str, ...]] = {
    "articleType": ("Free Gifts",),
    "masterCategory": ("Free Items",),
    "subCategory": ("Free Gifts", "Vouchers"),
}

DEFAULT_MISSING_MARKERS = ("NA",)
DEFAULT_MIN_ITEMS_PER_CLASS = 20


@dataclass
class CleaningStep:
    """One rule applied to one column: how many rows it changed or removed."""

    rule: str
    column: str
    rows_affected: int
    rows_removed: int
    detail: str = ""


@dataclass
class CleaningReport:
    """Every rule that clean_catalogue applied, in order, with the rows it changed or removed."""

    rows_in: int
    steps: list[CleaningStep] = field(default_factory=list)
    rows_out: int = 0
    parameters: dict[str, object] = field(default_factory=dict)

    def to_frame(self, include_empty: bool = True) -> pd.DataFrame:
        """Return one row per step: rule, column, rows affected, rows removed, detail.

        ``include_empty=False`` leaves out the steps that changed no row.
        """
        steps = [step for step in self.steps if include_empty or step.rows_affected > 0]
        return pd.DataFrame(
            [vars(step) for step in steps],
            columns=["rule", "column", "rows_affected", "rows_removed", "detail"],
        )

    @property
    def rows_removed(self) -> int:
        """Total number of rows removed by all steps."""
        return sum(step.rows_removed for step in self.steps)

    def to_dict(self) -> dict[str, object]:
        """Return the report as a JSON-ready dictionary."""
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "parameters": self.parameters,
            "steps": [vars(step) for step in self.steps],
        }

    def _repr_html_(self) -> str:
        return self.to_frame().to_html(index=False)

    def __str__(self) -> str:
        return self.to_frame().to_string(index=False)

    def _add(self, rule: str, column: str, affected: int, removed: int, detail: str = "") -> None:
        self.steps.append(CleaningStep(rule, column, int(affected), int(removed), detail))
        logger.info("%s (%s): %d rows affected, %d removed", rule, column, affected, removed)


def clean_catalogue(
    df: pd.DataFrame,
    min_items_per_class: int | Mapping[str, int] = DEFAULT_MIN_ITEMS_PER_CLASS,
    required_labels: Sequence[str] = ("articleType",),
    missing_markers: Sequence[str] = DEFAULT_MISSING_MARKERS,
    spellings: Mapping[str, Mapping[str, str]] | None = None,
    non_visual: Mapping[str, Sequence[str]] | None = None,
    fix_hierarchy: bool = True,
    require_image: bool = True,
) -> tuple[pd.DataFrame, CleaningReport]:
    """Apply the cleaning rules to a catalogue table and return the clean table and the report.

    The rules run in this order:

    1. Drop rows that repeat an earlier id.
    2. Drop rows without an image or with an image that fails to decode. This needs the
       ``image_status`` column of :func:`osoroi.catalogue.load_catalogue`.
    3. Strip and collapse whitespace in labels.
    4. Turn ``missing_markers`` into missing values.
    5. Apply ``spellings``.
    6. Give every row the most frequent (masterCategory, subCategory) pair of its articleType.
    7. Handle ``non_visual`` labels.
    8. Handle classes with fewer than ``min_items_per_class`` items.

    A rule that hits a label in ``required_labels`` removes the row. For any other label
    it sets the label to missing. Rows left without a required label are removed at the end.

    Args:
        df: catalogue table with the columns of :func:`osoroi.catalogue.read_styles`.
        min_items_per_class: minimum number of items per class, one number for every
            label or a mapping label -> number (labels not in it get no minimum).
        required_labels: labels a row cannot do without.
        missing_markers: label values that mean "unknown".
        spellings: label -> {old value: new value}; defaults to DEFAULT_SPELLINGS.
        non_visual: label -> values that carry no visual information; defaults to
            DEFAULT_NON_VISUAL.
        fix_hierarchy: relabel masterCategory and subCategory from articleType.
        require_image: drop rows whose ``image_status`` is missing or unreadable.
    """
    spellings = DEFAULT_SPELLINGS if spellings is None else spellings
    non_visual = DEFAULT_NON_VISUAL if non_visual is None else non_visual
    minimums = _minimums(min_items_per_class)
    _validate_columns(df, required_labels, require_image, [*spellings, *non_visual, *minimums])

    report = CleaningReport(
        rows_in=len(df),
        parameters={
            "min_items_per_class": minimums,
            "required_labels": list(required_labels),
            "missing_markers": list(missing_markers),
            "spellings": {column: dict(mapping) for column, mapping in spellings.items()},
            "non_visual": {column: list(values) for column, values in non_visual.items()},
            "fix_hierarchy": fix_hierarchy,
            "require_image": require_image,
        },
    )
    table = df.copy()
    labels = [column for column in LABEL_COLUMNS if column in table.columns]

    duplicated = table["id"].duplicated(keep="first")
    table = table[~duplicated]
    report._add("duplicate id", "id", duplicated.sum(), duplicated.sum(), "later rows with an earlier id")

    if require_image:
        for status, rule in ((IMAGE_MISSING, "no image"), (IMAGE_UNREADABLE, "image fails to decode")):
            hit = table["image_status"] == status
            table = table[~hit]
            report._add(rule, "image_status", hit.sum(), hit.sum())

    for column in labels:
        stripped = table[column].str.strip().str.replace(r"\s+", " ", regex=True)
        changed = table[column].notna() & (stripped != table[column])
        table.loc[changed, column] = stripped[changed]
        report._add("whitespace", column, changed.sum(), 0, "strip and collapse spaces")

    for column in [*labels, "productDisplayName"]:
        if column in table.columns:
            hit = table[column].isin(list(missing_markers))
            table = _drop_or_blank(table, column, hit, report, "missing marker", required_labels,
                                   ", ".join(repr(marker) for marker in missing_markers) + " -> missing")

    for column, mapping in spellings.items():
        hit = table[column].isin(list(mapping))
        table.loc[hit, column] = table.loc[hit, column].map(mapping)
        detail = ", ".join(f"{old!r} -> {new!r}" for old, new in mapping.items())
        report._add("spelling", column, hit.sum(), 0, detail)

    if fix_hierarchy:
        table = _fix_hierarchy(table, report)

    for column, values in non_visual.items():
        hit = table[column].isin(list(values))
        table = _drop_or_blank(table, column, hit, report, "no visual information", required_labels,
                               ", ".join(map(repr, values)))

    for column in [c for c in labels if c in required_labels] + [c for c in labels if c not in required_labels]:
        if column not in minimums:
            continue
        counts = table[column].value_counts()
        rare = counts[counts < minimums[column]]
        hit = table[column].isin(rare.index)
        table = _drop_or_blank(table, column, hit, report, "rare class", required_labels,
                               f"{len(rare)} classes with < {minimums[column]} items")

    for column in required_labels:
        hit = table[column].isna()
        table = table[~hit]
        report._add("required label missing", column, hit.sum(), hit.sum())

    table = table.reset_index(drop=True)
    report.rows_out = len(table)
    return table, report


def _minimums(min_items_per_class: int | Mapping[str, int]) -> dict[str, int]:
    if isinstance(min_items_per_class, Mapping):
        minimums = dict(min_items_per_class)
    else:
        minimums = {column: min_items_per_class for column in LABEL_COLUMNS}
    for column, minimum in minimums.items():
        if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 1:
            raise ValueError(f"Invalid min_items_per_class for {column!r}: {minimum!r}; use an integer >= 1.")
    return minimums


def _validate_columns(
    df: pd.DataFrame, required_labels: Sequence[str], require_image: bool, used: Sequence[str]
) -> None:
    needed = {"id", *required_labels, *used}
    if require_image:
        needed.add("image_status")
    missing = sorted(needed - set(df.columns))
    if missing:
        hint = " Use osoroi.catalogue.load_catalogue(), or pass require_image=False." if require_image else ""
        raise ValueError(f"The catalogue table lacks the columns {missing}.{hint}")


def _drop_or_blank(
    table: pd.DataFrame,
    column: str,
    hit: pd.Series,
    report: CleaningReport,
    rule: str,
    required_labels: Sequence[str],
    detail: str,
) -> pd.DataFrame:
    if column in required_labels:
        report._add(rule, column, hit.sum(), hit.sum(), detail + " (row removed)")
        return table[~hit]
    table = table.copy()
    table.loc[hit, column] = None
    report._add(rule, column, hit.sum(), 0, detail + " (label set to missing)")
    return table


def _fix_hierarchy(table: pd.DataFrame, report: CleaningReport) -> pd.DataFrame:
    # The most frequent pair per articleType; ties go to the alphabetically first pair.
    parents = ["masterCategory", "subCategory"]
    pairs = (
        table.dropna(subset=["articleType", *parents])
        .groupby(["articleType", *parents])
        .size()
        .reset_index(name="items")
        .sort_values(["articleType", "items", *parents], ascending=[True, False, True, True])
        .drop_duplicates("articleType")
        .set_index("articleType")[parents]
    )
    table = table.copy()
    for column in parents:
        expected = table["articleType"].map(pairs[column])
        hit = expected.notna() & (table[column] != expected)
        table.loc[hit, column] = expected[hit]
        report._add("hierarchy", column, hit.sum(), 0, "most frequent value for the articleType")
    return table
