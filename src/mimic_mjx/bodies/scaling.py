"""Uniform scaling of a body's MjSpec: one routine for the built-in rat and for body files.

Scaling by a factor s about the world origin:
  * lengths are multiplied by s: body, geom, site, joint, camera, light and
    frame positions, geom and site sizes, ``fromto`` segments, mesh scales, the
    skins' vertices and bind positions, slide joints' ranges and reference
    positions, and the model's mean size statistic;
  * masses come from geom volumes times the authored densities, so they shrink
    as s**3 and the computed inertias as s**5 without touching the densities;
    explicitly given masses / inertias (and ``settotalmass``) are scaled by
    s**3 / s**5 to stay consistent;
  * angles are unchanged: hinge ranges, axes, orientations, fixed tendons
    (which combine joint angles, not lengths) and their ranges;
  * actuators, joint stiffness/damping/armature are kept as authored (they
    act on angles for hinges, so their meaning does not change; bodies/rat.py
    explains why that is the conservative direction for tracking).
Not scaled (documented limits): keyframes, spatial tendon lengths and the
control ranges of actuators on slide joints.
"""

from __future__ import annotations

import mujoco
import numpy as np

_SLIDE = mujoco.mjtJoint.mjJNT_SLIDE


def skin_arrays(model: mujoco.MjModel) -> dict:
    """Every skin of a compiled model as explicit arrays, keyed by skin name.

    A skin is a surface mesh in world coordinates bound to bodies by their
    world positions in the bind pose. MjSpec holds only the skin's file name,
    so to scale a skin its arrays are read from a compiled unscaled model and
    written back (scaled) in place of the file.
    """
    skins = {}
    for k in range(model.nskin):
        va, vn = model.skin_vertadr[k], model.skin_vertnum[k]
        fa, fn = model.skin_faceadr[k], model.skin_facenum[k]
        ta = model.skin_texcoordadr[k]
        ba, bn = model.skin_boneadr[k], model.skin_bonenum[k]
        bones = []
        for b in range(ba, ba + bn):
            a, n = model.skin_bonevertadr[b], model.skin_bonevertnum[b]
            bones.append(
                (
                    model.body(model.skin_bonebodyid[b]).name,
                    model.skin_bonebindpos[b].copy(),
                    model.skin_bonebindquat[b].copy(),
                    model.skin_bonevertid[a : a + n].tolist(),
                    model.skin_bonevertweight[a : a + n].tolist(),
                )
            )
        skins[model.skin(k).name] = {
            "vert": model.skin_vert[va : va + vn].copy(),
            "face": model.skin_face[fa : fa + fn].copy(),
            "texcoord": model.skin_texcoord[ta : ta + vn].copy() if ta >= 0 else None,
            "bones": bones,
        }
    return skins


def scale_spec(spec: mujoco.MjSpec, s: float, skins: dict | None = None) -> None:
    """Scale all lengths of ``spec`` by ``s`` in place (see the module docstring).

    ``skins``: :func:`skin_arrays` of the unscaled model, needed when the spec has skins.
    """
    if spec.skins and skins is None:
        raise ValueError("scale_spec needs the unscaled skin arrays (skin_arrays) for a spec with skins")
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
        if joint.type == _SLIDE:  # a slide's coordinate is a length
            joint.range = np.asarray(joint.range) * s
            joint.ref = joint.ref * s
            joint.springref = joint.springref * s
    for camera in spec.cameras:
        camera.pos = np.asarray(camera.pos) * s
    for light in spec.lights:
        light.pos = np.asarray(light.pos) * s
    for frame in spec.frames:
        frame.pos = np.asarray(frame.pos) * s
    for mesh in spec.meshes:
        mesh.scale = np.asarray(mesh.scale) * s
    spec.stat.meansize = spec.stat.meansize * s
    if spec.compiler.settotalmass > 0:
        spec.compiler.settotalmass = spec.compiler.settotalmass * s**3
    for skin in spec.skins:
        _fill_skin(skin, skins[skin.name], s)


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
