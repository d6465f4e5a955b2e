"""Plausibility of a recording's size once the body is known.

Catches the most common unit mistake (millimetres read as metres, or the
reverse) before registration: a body 1000x too big or small fails to fit in
confusing ways, while the extent check names the unit that would fit.
"""

from __future__ import annotations

import numpy as np

from mimic_mjx.data.keypoints.common import Keypoints
from mimic_mjx.data.keypoints.resolve import _UNIT_WORDS, UNIT_SCALE
from mimic_mjx.errors import KeypointError

# Frames sampled when measuring a recording's extent: enough for a stable median,
# few enough that all keypoint pairs of a 100-marker recording fit in memory.
_EXTENT_SAMPLE_FRAMES = 500


def body_extent(kp: Keypoints) -> float:
    """Median over frames of the largest distance between two keypoints (m); NaN if never measurable."""
    pos = kp.positions
    frames = np.unique(np.linspace(0, pos.shape[0] - 1, min(pos.shape[0], _EXTENT_SAMPLE_FRAMES)).astype(int))
    i, j = np.triu_indices(pos.shape[1], k=1)  # each pair of distinct keypoints once
    if i.size == 0:
        return float("nan")
    dist = np.linalg.norm(pos[frames][:, i] - pos[frames][:, j], axis=-1)
    widest = np.where(np.isnan(dist), -np.inf, dist).max(axis=1)
    widest = widest[np.isfinite(widest)]  # frames with fewer than two keypoints measure nothing
    return float(np.median(widest)) if widest.size else float("nan")


def check_plausible_size(
    kp: Keypoints, expected_extent_m: float, *, body: str = "the body", tolerance: float = 30.0
) -> float:
    """Raise KeypointError if the keypoints' extent is off from the body's by more than ``tolerance``x.

    Returns the measured extent (m). A factor of 10-1000 off almost always
    means a wrong length unit, so the message suggests the unit that fits.
    """
    if not np.isfinite(expected_extent_m) or expected_extent_m <= 0:
        raise ValueError(f"expected_extent_m must be a positive length in metres, got {expected_extent_m}")
    extent = body_extent(kp)
    if not np.isfinite(extent) or extent <= 0:
        return extent  # one keypoint per frame: nothing to compare
    ratio = extent / expected_extent_m
    if 1.0 / tolerance <= ratio <= tolerance:
        return extent
    read_as = kp.input_units if kp.input_units in UNIT_SCALE else "m"
    raw_extent = extent / UNIT_SCALE[read_as]
    best = min(UNIT_SCALE, key=lambda u: abs(np.log(raw_extent * UNIT_SCALE[u] / expected_extent_m)))
    how = "larger" if ratio > 1 else "smaller"
    factor = ratio if ratio > 1 else 1.0 / ratio
    if best != read_as and 1.0 / tolerance <= raw_extent * UNIT_SCALE[best] / expected_extent_m <= tolerance:
        advice = (
            f"The length unit is probably wrong: the values were read as {_UNIT_WORDS[read_as]} but look "
            f"like {_UNIT_WORDS[best]}; pass units='{best}' (--units {best})"
        )
    else:
        advice = "No length unit explains this; check the file's units and that it records this body"
    raise KeypointError(
        f"{kp.source}: the keypoints span about {extent:.3g} m, but {body} spans about "
        f"{expected_extent_m:.3g} m ({factor:.0f}x {how}). {advice}."
    )
