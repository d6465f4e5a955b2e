"""Rat: dm_control's rodent walker, loaded from the installed dm_control package.

The model file is ``dm_control/locomotion/walkers/assets/rodent.xml`` of the
installed dm_control; we read it in place (never copy it), so its skin file
``rodent_walker_skin.skn`` resolves through the XML's own ``meshdir="./"``,
relative to the XML's directory. It includes no other files and no meshes.

What the XML alone gives, compiled with MuJoCo (3.17): 67 hinges, nq = nv = 67,
38 position-style ``general`` actuators (8 on fixed tendons coupling the spine,
neck and tail joints, 30 on single joints, all with gear 1), 65 bodies
(``torso`` and its subtree), total mass 0.338 kg, no keyframes, no floor.
dm_control makes the rat free-floating only when a walker is attached to an
arena: the arena wraps it in an attachment frame that carries a free joint.
We reproduce that by putting a free joint named ``root`` directly on ``torso``
(as stac-mjx's own copy of this rodent does), which gives nq = 7 + 67 = 74,
nv = 6 + 67 = 73 and leaves the torso's authored position, (0.031, 0, 0.065) m,
as the default root position. We then add a plane named
``floor`` at z = 0, because the XML has none and later training needs one.

Scale. The dm_control rodent is a rat of about 0.34 kg whose default pose puts
the torso origin 6.5 cm above the ground. stac-mjx registers real rat DANNCE
recordings (the ``rodent/`` data in the shared data set come from its test data)
onto this same model shrunk by ``SCALE_FACTOR: 0.9`` (configs/model/rodent.yaml
of talmolab/stac-mjx; the keypoints are in millimetres there, hence
``MOCAP_SCALE_FACTOR: 0.001``). We therefore default to ``RAT_SCALE = 0.9`` so a
rat built here has the proportions those recordings were fitted with.

How scaling is done (uniform about the world origin, factor s):
  * lengths are multiplied by s: body, geom, site, joint, camera and light
    positions, geom and site sizes, ``fromto`` segments, mesh scales, the skin's
    vertices and bind positions, and the model's mean size statistic;
  * masses come from geom volumes times the authored densities, so they shrink
    as s**3 and the computed inertias as s**5 without touching the densities;
    explicitly given masses / inertias (none in this XML, handled anyway) are
    scaled by s**3 / s**5 to stay consistent;
  * angles are unchanged: joint ranges, axes, orientations, the fixed tendons
    (which combine joint angles, not lengths) and their ranges;
  * actuators, joint stiffness/damping/armature are kept as authored. They act
    on angles, so scaling lengths does not change their meaning; the smaller rat
    is somewhat stronger relative to its own weight (gravity torques drop as
    s**4), which is the conservative direction for tracking.
stac-mjx's own rescale helper (stac_mjx/rescale.py) also scales body positions,
geom sizes and positions and mesh scales, and in addition multiplies actuator
gears by s**2 (a muscle cross-section argument) and keyframe heights by s. It
leaves joint positions, sites, cameras and the skin alone; we scale those too,
so that off-centre spine/neck joint axes, sensor sites and the rendered surface
stay attached to the shrunken bones. We keep the gears at 1 (see above), so at
s = 0.9 our actuators are 1/0.81 times as strong as stac-mjx's scaled copy;
pose fitting, the use stac-mjx makes of its copy, does not depend on forces.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import mujoco

from mimic_mjx.errors import BodyError

#: Size of the registered rat relative to dm_control's rodent (stac-mjx's
#: ``SCALE_FACTOR`` for rat DANNCE data, configs/model/rodent.yaml).
RAT_SCALE = 0.9
ROOT_BODY = "torso"
ROOT_JOINT = "root"
FLOOR = "floor"
#: Figures of the unscaled XML (checked by tests/test_rat_body.py).
N_HINGES = 67
N_ACTUATORS = 38


def rodent_xml_path() -> Path:
    """Path of dm_control's rodent walker XML inside the installed package."""
    try:
        import dm_control
    except ImportError as exc:  # pragma: no cover - dm_control is a dependency
        raise BodyError("the rat body needs dm_control installed (pip install dm_control)") from exc
    path = Path(dm_control.__file__).resolve().parent / "locomotion" / "walkers" / "assets" / "rodent.xml"
    if not path.is_file():
        raise BodyError(f"dm_control is installed but its rodent model is missing at {path}; "
                        "reinstall dm_control")
    return path


def load_raw_spec() -> mujoco.MjSpec:
    """dm_control's rodent exactly as authored: no root joint, no floor, unscaled."""
    return mujoco.MjSpec.from_file(str(rodent_xml_path()))


def build_spec(scale: float = RAT_SCALE) -> mujoco.MjSpec:
    """Return the free-floating rat on a floor as an editable ``mujoco.MjSpec``.

    ``scale`` multiplies every length of dm_control's rodent (1.0 = as authored).
    """
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise BodyError(f"rat scale must be a positive number, got {scale!r}")
    spec = load_raw_spec()
    spec.modelname = "rat"
    torso = spec.body(ROOT_BODY)
    if torso is None:  # pragma: no cover - guards against a changed dm_control
        raise BodyError(f"dm_control's rodent has no '{ROOT_BODY}' body; unsupported dm_control version")
    # The free joint must be the torso's first joint so that qpos[:7] is the root.
    torso.add_freejoint(name=ROOT_JOINT)
    if scale != 1.0:
        _scale_spec(spec, scale)
    if not any(g.name == FLOOR for g in spec.geoms):
        # Added after scaling: the floor stays at z = 0 whatever the rat's size.
        # Default contype/conaffinity (1/1) collide with all of the rat's
        # collision geoms, including the "nonself" ones (contype 1, conaffinity 0).
        spec.worldbody.add_geom(name=FLOOR, type=mujoco.mjtGeom.mjGEOM_PLANE,
                                size=(2.0, 2.0, 0.05), rgba=(0.35, 0.4, 0.45, 1))
    return spec


def _scale_spec(spec: mujoco.MjSpec, s: float) -> None:
    """Scale all lengths of ``spec`` by ``s`` in place (see the module docstring)."""
    skin_data = _unscaled_skins() if spec.skins else {}
    for body in spec.bodies:
        body.pos = np.asarray(body.pos) * s
        if body.explicitinertial:
            body.ipos = np.asarray(body.ipos) * s
            body.mass = body.mass * s**3
            body.inertia = np.asarray(body.inertia) * s**5
    for geom in spec.geoms:
        geom.pos = np.asarray(geom.pos) * s
        geom.size = np.asarray(geom.size) * s
        geom.fromto = np.asarray(geom.fromto) * s  # NaN (unset) stays NaN
        if np.isfinite(geom.mass):  # explicit mass; density-derived masses need nothing
            geom.mass = geom.mass * s**3
    for site in spec.sites:
        site.pos = np.asarray(site.pos) * s
        site.size = np.asarray(site.size) * s
        site.fromto = np.asarray(site.fromto) * s
    for joint in spec.joints:
        joint.pos = np.asarray(joint.pos) * s
    for camera in spec.cameras:
        camera.pos = np.asarray(camera.pos) * s
    for light in spec.lights:
        light.pos = np.asarray(light.pos) * s
    for frame in spec.frames:
        frame.pos = np.asarray(frame.pos) * s
    for mesh in spec.meshes:
        mesh.scale = np.asarray(mesh.scale) * s
    spec.stat.meansize = spec.stat.meansize * s
    for skin in spec.skins:
        _fill_skin(skin, skin_data[skin.name], s)


@functools.lru_cache(maxsize=1)
def _unscaled_skins() -> dict:
    """Skin arrays of the unscaled rodent, read back from a compiled model.

    A skin is a surface mesh in world coordinates bound to bodies by their
    world positions in the bind pose. MjSpec holds only the file name, so to
    scale the skin we read its arrays from a compiled model once and write them
    back explicitly (scaled) instead of the file.
    """
    model = load_raw_spec().compile()
    skins = {}
    for k in range(model.nskin):
        va, vn = model.skin_vertadr[k], model.skin_vertnum[k]
        fa, fn = model.skin_faceadr[k], model.skin_facenum[k]
        ta = model.skin_texcoordadr[k]
        ba, bn = model.skin_boneadr[k], model.skin_bonenum[k]
        bones = []
        for b in range(ba, ba + bn):
            a, n = model.skin_bonevertadr[b], model.skin_bonevertnum[b]
            bones.append((
                model.body(model.skin_bonebodyid[b]).name,
                model.skin_bonebindpos[b].copy(),
                model.skin_bonebindquat[b].copy(),
                model.skin_bonevertid[a:a + n].tolist(),
                model.skin_bonevertweight[a:a + n].tolist(),
            ))
        skins[model.skin(k).name] = {
            "vert": model.skin_vert[va:va + vn].copy(),
            "face": model.skin_face[fa:fa + fn].copy(),
            "texcoord": model.skin_texcoord[ta:ta + vn].copy() if ta >= 0 else None,
            "bones": bones,
        }
    return skins


def _fill_skin(skin, data: dict, s: float) -> None:
    skin.file = ""
    skin.vert = (data["vert"] * s).ravel().tolist()
    skin.face = data["face"].ravel().tolist()
    if data["texcoord"] is not None:
        skin.texcoord = data["texcoord"].ravel().tolist()
    skin.bodyname = [b[0] for b in data["bones"]]
    skin.bindpos = np.concatenate([b[1] * s for b in data["bones"]]).tolist()
    skin.bindquat = np.concatenate([b[2] for b in data["bones"]]).tolist()
    skin.vertid = [b[3] for b in data["bones"]]
    skin.vertweight = [b[4] for b in data["bones"]]
