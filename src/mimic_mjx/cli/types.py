"""Argument types of the command line."""

from __future__ import annotations


def cli_number(kind: type = int, minimum: float = 1, maximum: float | None = None, what: str = "a positive integer"):
    """An argparse ``type`` refusing out-of-range values, so a 0 or -1 is an error, never a default."""
    import argparse
    import math

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse
