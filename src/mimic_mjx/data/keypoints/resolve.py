"""Settling a reader's raw record: keypoint names, length unit, frame rate and confidence.

Pose-tracking files are messy about these (many record neither unit nor frame
rate, some record wrong ones), so the rules live here once for every format:
the caller's ``names``/``skeleton``, ``units`` and ``fps`` win over the file;
a missing unit falls back to the format's usual one with a warning; a missing
frame rate is an error, never a guess, because a wrong rate silently changes
every velocity the controller learns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mimic_mjx.data.keypoints.common import _Raw, _warn
from mimic_mjx.data.keypoints.dannce import read_skeleton
from mimic_mjx.errors import KeypointError

UNIT_SCALE = {"m": 1.0, "cm": 0.01, "mm": 0.001, "um": 1e-6}  # metres per unit
_PER_METRE = {"m": 1.0, "cm": 100.0, "mm": 1000.0, "um": 1e6}  # divide by these: exact for values/1000
_UNIT_WORDS = {"m": "metres", "cm": "centimetres", "mm": "millimetres", "um": "micrometres"}
_UNIT_ALIASES = {
    "m": "m",
    "meter": "m",
    "meters": "m",
    "metre": "m",
    "metres": "m",
    "cm": "cm",
    "centimeter": "cm",
    "centimeters": "cm",
    "centimetre": "cm",
    "centimetres": "cm",
    "mm": "mm",
    "millimeter": "mm",
    "millimeters": "mm",
    "millimetre": "mm",
    "millimetres": "mm",
    "um": "um",
    "\u00b5m": "um",  # micro sign
    "\u03bcm": "um",  # Greek mu
    "micron": "um",
    "microns": "um",
    "micrometer": "um",
    "micrometers": "um",
    "micrometre": "um",
    "micrometres": "um",
}


def _canonical_unit(unit) -> str | None:
    if isinstance(unit, bytes):
        unit = unit.decode(errors="replace")
    return _UNIT_ALIASES.get(str(unit).strip().lower())


def _resolve_names(raw: _Raw, path: Path, names, skeleton) -> tuple[tuple[str, ...], tuple]:
    """Final names and edges; may reorder raw's keypoints to a skeleton's order."""
    K = raw.positions.shape[1]
    file_names, edges = raw.names, raw.edges
    if names is not None:
        names = tuple(n.strip() for n in names.split(",")) if isinstance(names, str) else tuple(map(str, names))
        if len(names) != K:
            raise KeypointError(
                f"{path}: {len(names)} keypoint names given for the file's {K} keypoints; give "
                f"one name per keypoint, in the file's order"
            )
        if file_names and names != file_names and sorted(names) == sorted(file_names):
            raise KeypointError(
                f"{path}: the names given are the file's own names in another order, but names "
                f"rename keypoints by position (so they would be swapped). To reorder, read "
                f"without names and use Keypoints.subset({list(names)})"
            )
        file_names = names
    if skeleton is not None:
        sk_names, sk_edges = read_skeleton(skeleton)
        if len(sk_names) != K:
            raise KeypointError(
                f"{path}: the skeleton {skeleton} names {len(sk_names)} keypoints but the file "
                f"holds {K}; pass the skeleton this recording was tracked with"
            )
        if file_names and sorted(file_names) != sorted(sk_names):
            raise KeypointError(
                f"{path}: its keypoints {list(file_names)} are not the skeleton's "
                f"{list(sk_names)}; pass a matching skeleton, or names= to rename them"
            )
        if file_names:  # the same keypoints: put them in the skeleton's order
            perm = [file_names.index(n) for n in sk_names]
            raw.positions = raw.positions[:, perm]
            if raw.confidence is not None:
                raw.confidence = raw.confidence[:, perm]
        return sk_names, sk_edges
    if file_names:
        return tuple(file_names), edges
    if raw.fallback_names is not None:
        return raw.fallback_names
    if raw.names_error is not None:
        raise KeypointError(raw.names_error)
    _warn(
        f"{path}: the file names none of its {K} keypoints; calling them kp0..kp{K - 1}. Pass names= or "
        f"skeleton= (--skeleton) to name them"
    )
    return tuple(f"kp{k}" for k in range(K)), edges


def _resolve_units(raw: _Raw, path: Path, units: str | None) -> str:
    file_unit = raw.file_unit.strip() if raw.file_unit else None
    canonical = _canonical_unit(file_unit) if file_unit else None
    if units is not None:
        if canonical and canonical != units:
            _warn(f"{path}: the file says its unit is '{file_unit}', overridden by units='{units}'")
        return units
    if canonical:
        return canonical
    if file_unit:
        raise KeypointError(
            f"{path}: the file gives its unit as '{file_unit}', not a length unit (metres, "
            f"centimetres, millimetres or micrometres). If the values are lengths, pass their unit "
            f"(e.g. units='mm', --units mm)"
        )
    if raw.warn_default_unit:
        _warn(
            f"{path}: {raw.what} record no length unit; assuming {_UNIT_WORDS[raw.default_unit]}. Pass "
            f"units= (--units {'/'.join(UNIT_SCALE)}) to say otherwise"
        )
    return raw.default_unit


def _resolve_fps(raw: _Raw, path: Path, fps: float | None) -> float:
    if fps is not None:
        return fps
    if raw.fps is not None:
        return float(raw.fps)
    raise KeypointError(
        f"{path}: {raw.what} record no frame rate; pass the recording's frame rate (e.g. fps=50, --fps 50)"
    )


def _confidence(raw: _Raw, missing: np.ndarray, path: Path) -> np.ndarray:
    if raw.confidence is None:
        conf = np.ones(missing.shape)
    else:
        conf = np.nan_to_num(np.asarray(raw.confidence, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if conf.min(initial=0.0) < -1e-6 or conf.max(initial=0.0) > 1 + 1e-6:
            _warn(f"{path}: confidence values span [{conf.min():.3g}, {conf.max():.3g}]; clipped to [0, 1]")
        conf = np.clip(conf, 0.0, 1.0)
    conf[missing] = 0.0
    return conf
