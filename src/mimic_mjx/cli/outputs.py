"""Where each command writes, checked before the command starts.

One table for every command, so that no command forgets the check and each
refuses a read-only folder, an ``--out`` that is a file (or a folder where a
file is wanted) or a path under a file in seconds, with one line saying which
option to change, instead of failing after minutes of training, rollouts or
registration with an OSError. ``tests/test_hostile_output.py`` fails when a
command with an output option is missing here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mimic_mjx.files import require_writable_dir, require_writable_file

# command -> (argument's dest, its flag, "dir" or "file", default location or None)
OUTPUTS: dict[str, tuple[tuple[str, str, str, object], ...]] = {
    "train": (("run_dir", "--run-dir", "dir", None),),
    "transfer": (("run_dir", "--run-dir", "dir", None),),
    "evaluate": (("out", "--out", "dir", lambda a: Path(a.run) / "eval"),),
    "demo": (("out", "--out", "dir", None),),
    "register": (("out", "--out", "file", None), ("render", "--render", "file", None)),
    "rollout": (("out", "--out", "file", None),),
    "experiment": (("out", "--out", "dir", None),),
    "emg": (("out", "--out", "dir", None),),
    "analyze": (("out", "--out", "dir", None),),
    "render": (("out", "--out", "file", None),),
    "export": (("out", "--out", "file", None),),
    "report": (("out", "--out", "file", None),),
}
# Options that name something a command writes; a command with one must be in OUTPUTS.
OUTPUT_DESTS = ("out", "run_dir", "render")


def check_outputs(args: argparse.Namespace) -> None:
    """Raise OutputError when a location the command in ``args`` would write to cannot be written."""
    for dest, flag, kind, default in OUTPUTS.get(getattr(args, "command", ""), ()):
        value = getattr(args, dest, None)
        if value is None and default is not None:
            value = default(args)
        if value is None:  # an optional output (register --render) not asked for
            continue
        if kind == "dir":
            require_writable_dir(value, flag)
        else:
            require_writable_file(value, flag)
