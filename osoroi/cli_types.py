"""Argument types shared by the command-line entry points."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """Parse a command line integer of at least 1 (an ``argparse`` type)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: use an integer of at least 1")
    return value


def non_negative_int(text: str) -> int:
    """Parse a command line integer of at least 0 (an ``argparse`` type)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: use an integer of at least 0")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
