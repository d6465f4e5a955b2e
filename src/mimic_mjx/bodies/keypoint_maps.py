"""Which body each tracked keypoint is attached to, per body model, as data.

For every registered body that can be fitted to keypoint recordings we keep:

* ``KEYPOINT_MAPS[body]``: keypoint name -> (model body name, initial offset),
  the offset being the marker's position in that body's frame, in metres, for
  the body *as registered* (the rat at ``RAT_SCALE``). Offsets are starting
  guesses for a registration, which refines them;
* ``TRUNK_KEYPOINTS[body]``: keypoints on the rigid-ish trunk, used to align the
  root (position and heading) before the limbs are fitted;
* ``ROOT_KEYPOINT[body]``: the keypoint whose position seeds the root position.

Rat (23 DANNCE keypoints, ``RAT23_NAMES`` in mimic_mjx.bodies.skeletons): pairs,
offsets, trunk keypoints and root keypoint are those of stac-mjx's rat
configuration (configs/model/rodent.yaml in talmolab/stac-mjx). Its offsets are
given for the unscaled dm_control rodent, so we multiply them by the body scale
to keep each marker at the same relative place on the smaller bones. Several of
them are the child body's position in the parent's frame, i.e. the joint
centre (KneeL = lower_leg_L's position in upper_leg_L, AnkleL = foot_L's in
lower_leg_L, FootL = toe_L's in foot_L, HandL = finger_L's in hand_L).

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

from mimic_mjx.bodies.rat import RAT_SCALE
from mimic_mjx.bodies.skeletons import RAT23_NAMES
from mimic_mjx.errors import BodyError

Offset = tuple[float, float, float]

# Rat pairs and offsets for the unscaled dm_control rodent (metres), one per
# keypoint of RAT23_NAMES (the names and their order live there).
_RAT23_UNSCALED: dict[str, tuple[str, Offset]] = {
    "Snout": ("skull", (0.0, 0.0, 0.0)),
    "EarL": ("skull", (0.0, 0.0, 0.0)),
    "EarR": ("skull", (0.0, 0.0, 0.0)),
    "SpineF": ("vertebra_cervical_5", (-0.015, 0.0, 0.0)),
    "SpineM": ("vertebra_1", (0.0, 0.0, 0.0)),
    "SpineL": ("pelvis", (0.0, 0.0, 0.0)),
    "TailBase": ("pelvis", (0.0, 0.0, 0.0)),
    "ShoulderL": ("scapula_L", (0.0287, 0.00984, -0.02542)),
    "ElbowL": ("upper_arm_L", (-0.01593120836133218, 0.01035528543486592, -0.02230369170586505)),
    "WristL": ("lower_arm_L", (0.0, 0.0, 0.0)),
    "HandL": ("hand_L", (0.003031746915839468, 0.001515873457919734, -0.008337304018558537)),
    "ShoulderR": ("scapula_R", (0.0287, -0.00984, -0.02542)),
    "ElbowR": ("upper_arm_R", (-0.01593120836133218, -0.01035528543486592, -0.02230369170586505)),
    "WristR": ("lower_arm_R", (0.0, 0.0, 0.0)),
    "HandR": ("hand_R", (0.003031746915839468, -0.001515873457919734, -0.008337304018558537)),
    "HipL": ("pelvis", (-0.015, 0.015, 0.0)),
    "KneeL": ("upper_leg_L", (0.01542264534586861, 0.01747899805865108, -0.02570440890978101)),
    "AnkleL": ("lower_leg_L", (-0.03230154033783406, -0.004727054683585472, -0.02205958852339887)),
    "FootL": ("foot_L", (0.02109994311367263, 0.007614327297542731, -0.002752166493087734)),
    "HipR": ("pelvis", (-0.015, -0.015, 0.0)),
    "KneeR": ("upper_leg_R", (0.01542264534586861, -0.01747899805865108, -0.02570440890978101)),
    "AnkleR": ("lower_leg_R", (-0.03230154033783406, 0.004727054683585472, -0.02205958852339887)),
    "FootR": ("foot_R", (0.02109994311367263, -0.007614327297542731, -0.002752166493087734)),
}


def rat_keypoint_map(scale: float = RAT_SCALE) -> dict[str, tuple[str, Offset]]:
    """The rat's keypoint map for a rat built with ``rat.build_spec(scale)``, in RAT23_NAMES order."""
    pairs = {kp: _RAT23_UNSCALED[kp] for kp in RAT23_NAMES}
    return {kp: (body, tuple(float(c) * scale for c in off)) for kp, (body, off) in pairs.items()}


KEYPOINT_MAPS: dict[str, dict[str, tuple[str, Offset]]] = {
    "rat": rat_keypoint_map(RAT_SCALE),
    "mouse_forelimb": {
        "Shoulder": ("scapula", (0.0, 0.0, 0.0)),
        "Elbow": ("elbow", (0.0, 0.0, 0.0)),
        "Wrist": ("wrist_body", (0.0, 0.0, 0.0)),
    },
}

TRUNK_KEYPOINTS: dict[str, tuple[str, ...]] = {
    "rat": ("SpineF", "SpineL", "SpineM", "HipL", "HipR", "ShoulderL", "ShoulderR", "TailBase"),
    "mouse_forelimb": ("Shoulder",),  # fixed base: nothing to align
}

ROOT_KEYPOINT: dict[str, str] = {
    "rat": "SpineL",
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
            f"body '{body_name}' has no keypoint mapping; bodies with one: "
            f"{', '.join(bodies_with_keypoint_maps())}. Add its entry to "
            "mimic_mjx/bodies/keypoint_maps.py (KEYPOINT_MAPS, TRUNK_KEYPOINTS, ROOT_KEYPOINT)"
        )
    return KeypointMap(
        body=body_name,
        keypoints=dict(KEYPOINT_MAPS[body_name]),
        trunk_keypoints=TRUNK_KEYPOINTS[body_name],
        root_keypoint=ROOT_KEYPOINT[body_name],
    )
