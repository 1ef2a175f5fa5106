"""Osoroi: recognise a piece of clothing and find similar catalogue items."""

__version__ = "0.1.0"
