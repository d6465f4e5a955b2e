"""Which body each tracked keypoint is attached to, per body model, as data.

For every built-in body built in code that can be fitted to keypoint
recordings (bodies read from a body file, the rat among them, carry their map
in the file: bodies/files/rat.yaml) we keep:

* ``KEYPOINT_MAPS[body]``: keypoint name -> (model body name, initial offset),
  the offset being the marker's position in that body's frame, in metres.
  Offsets are starting guesses for a registration, which refines them;
* ``TRUNK_KEYPOINTS[body]``: keypoints on the rigid-ish trunk, used to align the
  root (position and heading) before the limbs are fitted;
* ``ROOT_KEYPOINT[body]``: the keypoint whose position seeds the root position.

Mouse forelimb (3 keypoints): the registration that produced the
``mouse_arm/`` trials attached Shoulder, Elbow and Wrist to ``scapula``,
``elbow`` and ``wrist_body`` with zero initial offsets (its embedded config).
The arm has a fixed base, so there is no root to align; we still name Shoulder,
the keypoint closest to the base, as root and trunk keypoint so that every map
has the same shape. (That config names Wrist as root keypoint, which is moot
without a free joint.)
"""

from __future__ import annotations

import dataclasses

from mimic_mjx.errors import BodyError

Offset = tuple[float, float, float]

KEYPOINT_MAPS: dict[str, dict[str, tuple[str, Offset]]] = {
    "mouse_forelimb": {
        "Shoulder": ("scapula", (0.0, 0.0, 0.0)),
        "Elbow": ("elbow", (0.0, 0.0, 0.0)),
        "Wrist": ("wrist_body", (0.0, 0.0, 0.0)),
    },
}

TRUNK_KEYPOINTS: dict[str, tuple[str, ...]] = {
    "mouse_forelimb": ("Shoulder",),  # fixed base: nothing to align
}

ROOT_KEYPOINT: dict[str, str] = {
    "mouse_forelimb": "Shoulder",  # fixed base: nothing to align
}


@dataclasses.dataclass(frozen=True)
class KeypointMap:
    """One body's keypoint mapping (see the module docstring)."""

    body: str
    keypoints: dict[str, tuple[str, Offset]]
    trunk_keypoints: tuple[str, ...]
    root_keypoint: str

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.keypoints)

    def keypoint_bodies(self) -> dict[str, str]:
        """Keypoint name -> model body name."""
        return {kp: body for kp, (body, _) in self.keypoints.items()}

    def offsets(self) -> dict[str, Offset]:
        """Keypoint name -> initial offset (metres, in the body's frame)."""
        return {kp: off for kp, (_, off) in self.keypoints.items()}


def bodies_with_keypoint_maps() -> list[str]:
    return sorted(KEYPOINT_MAPS)


def get_keypoint_map(body_name: str) -> KeypointMap:
    """The keypoint map of a registered body; ``BodyError`` if it has none."""
    if body_name not in KEYPOINT_MAPS:
        raise BodyError(
            f"body '{body_name}' has no keypoint mapping; bodies built in code with one: "
            f"{', '.join(bodies_with_keypoint_maps())}; body files carry theirs under 'keypoints:' (the rat's: "
            "mimic_mjx/bodies/files/rat.yaml), code-built bodies in mimic_mjx/bodies/keypoint_maps.py"
        )
    return KeypointMap(
        body=body_name,
        keypoints=dict(KEYPOINT_MAPS[body_name]),
        trunk_keypoints=TRUNK_KEYPOINTS[body_name],
        root_keypoint=ROOT_KEYPOINT[body_name],
    )
