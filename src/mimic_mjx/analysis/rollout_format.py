"""The rollout dataset layout (docs/rollout-format.md): its name, version and a checked opener.

``mimic rollout``, ``mimic experiment`` and ``mimic evaluate`` write it
(``analysis.rollout.write_rollouts``); ``mimic analyze``, evaluation's plots
and the report read it through ``open_rollouts``. This module imports no JAX
or MuJoCo, so readers that only plot stay light.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mimic_mjx.errors import MimicError
from mimic_mjx.files import require_regular_file

FORMAT, FORMAT_VERSION = "mimic-rollouts", 1
HINT = "expected a rollout dataset written by `mimic rollout` or `mimic evaluate` (docs/rollout-format.md)"


class RolloutFileError(MimicError):
    """A rollout dataset is missing, not a ``mimic rollout`` file, or inconsistent."""


def text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def names(ds) -> list[str]:
    """A dataset of names (``joint_names``, ``actuator_names``, ...) as Python strings."""
    return [text(n) for n in np.asarray(ds[()]).ravel()]


def open_rollouts(path: str | Path, hint: str = HINT):
    """The h5py.File of a rollout dataset of this layout version, with at least one clip; else a RolloutFileError."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise RolloutFileError(f"{path}: no such file; make one with `mimic rollout` or `mimic evaluate`")
    require_regular_file(path, RolloutFileError, "rollout dataset")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise RolloutFileError(f"{path}: not an HDF5 file ({exc}); {hint}") from None
    try:
        fmt, version = text(f.attrs.get("format", "")), f.attrs.get("format_version")
        if fmt != FORMAT:
            raise RolloutFileError(f"{path}: format attribute is {fmt!r}, not {FORMAT!r}; {hint}")
        if str(version) != str(FORMAT_VERSION):  # str: the attribute may be missing or of any type
            raise RolloutFileError(
                f"{path}: rollout format version {version} is not {FORMAT_VERSION}, the one this mimic-mjx reads; "
                f"{hint} by this version"
            )
        if "clips" not in f or not len(f["clips"]):
            raise RolloutFileError(f"{path}: holds no clips; {hint}")
    except BaseException:
        f.close()
        raise
    return f
