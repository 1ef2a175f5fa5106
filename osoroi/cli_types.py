"""Argument types shared by the command-line entry points."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """Parse a command line integer of at least 1 (an ``argparse`` type)."""
    return integer_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """Parse a command line integer of at least 0 (an ``argparse`` type)."""
    return integer_at_least(text, 0)


def integer_at_least(text: str, minimum: int, advice: str | None = None) -> int:
    """Parse a command line integer of at least ``minimum``; ``advice`` replaces the default error hint."""
    value = _integer(text)
    if value < minimum:
        hint = advice or f"use an integer of at least {minimum}"
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: {hint}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
