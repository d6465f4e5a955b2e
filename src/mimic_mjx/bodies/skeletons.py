"""Keypoint skeletons that ship with mimic-mjx (names and edges are facts, not code).

``RAT23`` is the 23-keypoint rat skeleton used by DANNCE and stac-mjx
(``rat23_skeleton.mat``: ``joint_names`` and 1-based ``joints_idx``). The
edges here are 0-based. DANNCE ``pred`` arrays with 23 keypoints use this order.
This is the one place the rat23 names are written down: the keypoint reader
(unnamed DANNCE files) and the rat's keypoint map (bodies/keypoint_maps.py)
both take them from here.
"""

from __future__ import annotations

RAT23_NAMES: tuple[str, ...] = (
    "Snout",
    "EarL",
    "EarR",
    "SpineF",
    "SpineM",
    "SpineL",
    "TailBase",
    "ShoulderL",
    "ElbowL",
    "WristL",
    "HandL",
    "ShoulderR",
    "ElbowR",
    "WristR",
    "HandR",
    "HipL",
    "KneeL",
    "AnkleL",
    "FootL",
    "HipR",
    "KneeR",
    "AnkleR",
    "FootR",
)

RAT23_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1),
    (0, 2),
    (0, 3),
    (1, 2),
    (3, 4),
    (3, 7),
    (3, 11),
    (4, 5),
    (5, 6),
    (5, 15),
    (5, 19),
    (7, 8),
    (8, 9),
    (9, 10),
    (11, 12),
    (12, 13),
    (13, 14),
    (15, 16),
    (16, 17),
    (17, 18),
    (19, 20),
    (20, 21),
    (21, 22),
)
