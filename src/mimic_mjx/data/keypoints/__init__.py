"""3D keypoint recordings: readers for DANNCE, NWB (ndx-pose), SLEAP, Anipose and DeepLabCut.

Every reader returns a ``Keypoints`` in metres with NaN where a keypoint is
missing. Pose-tracking files are messy about units and frame rates (many
record neither, some record wrong ones), so ``read_keypoints`` takes ``units``
and ``fps`` overrides and refuses to guess a frame rate: a wrong rate silently
changes every velocity the controller learns. ``check_plausible_size`` catches
the most common unit mistake (millimetres read as metres) once the body is known.

One module per lab format parses its files (``dannce``, ``nwb``, ``sleap``,
``tabular`` for Anipose/DeepLabCut CSV, ``mouse_arm``), so a format's quirks
stay in one place; ``resolve`` settles names, units and frame rate for all of
them, ``read`` dispatches on the format, ``size`` checks plausibility, and
``common`` holds the records they share. Import from this package, not from
the modules: they are an internal layout.
"""

from mimic_mjx.data.keypoints.common import Keypoints, KeypointWarning
from mimic_mjx.data.keypoints.dannce import read_skeleton
from mimic_mjx.data.keypoints.mouse_arm import MOUSE_ARM_DEFAULT_FPS
from mimic_mjx.data.keypoints.read import FORMATS, read_keypoints
from mimic_mjx.data.keypoints.resolve import UNIT_SCALE
from mimic_mjx.data.keypoints.size import body_extent, check_plausible_size

__all__ = [
    "FORMATS",
    "MOUSE_ARM_DEFAULT_FPS",
    "UNIT_SCALE",
    "KeypointWarning",
    "Keypoints",
    "body_extent",
    "check_plausible_size",
    "read_keypoints",
    "read_skeleton",
]
