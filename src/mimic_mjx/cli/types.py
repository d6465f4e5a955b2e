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


def add_clip_selection(parser) -> None:
    """``--only NAME [NAME ...]``: use these clips of the ``--clips`` files (the others are never read)."""
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="only these clips of the files, by name (`mimic clips list FILE` lists them); the others are never read",
    )


def open_selected_clips(args):
    """The ``--clips`` files opened lazily, narrowed to ``--only`` when given."""
    from mimic_mjx.data.clip_files import open_clip_files

    clips = open_clip_files(args.clips)
    return clips.select(args.only) if getattr(args, "only", None) else clips
