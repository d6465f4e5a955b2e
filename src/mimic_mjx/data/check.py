"""Clip checks: peak joint speeds and accelerations against a body's physiological bounds,
and frames that hold a joint on its range limit.

A reference clip asks the controller to follow its joint angles. Where a
registration has invented motion the keypoints do not show (e.g. a joint
swinging through a pose where it cannot be seen), the clip carries joint speeds
no animal produces, and training chases an artefact. These functions find such
frames so that `mimic clips check` can report them and the trainer can warn.

Velocities are ``reference_velocities`` (central differences of qpos, the
velocities the tracking task uses); accelerations are central differences of
those. Hinge and slide joints are checked one by one; a free root's angular
speed (the norm of its angular velocity) is checked against the same bounds
as ``root (angular)``; ball joints are not checked. Frames are 0-based.

A reference held on a joint's range limit (within ``LIMIT_TOL_RAD``) asks the
simulated joint to press on its limit constraint, where controllers overshoot
(docs/benchmarks.md, trial43); such frames are reported, not counted as
exceeding a bound.

For a fixed-base body with muscles (the forelimb), each frame's joint torques
from inverse dynamics are checked against what the muscles can produce
there (static optimisation, ``bodies.strength``): a frame no activation
pattern can drive is lost whatever the controller learns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import mujoco
import numpy as np

from mimic_mjx.bodies.layout import QVEL_OF_QPOS, JointLayout, reference_velocities
from mimic_mjx.data.clips import Clip
from mimic_mjx.errors import BodyError

ROOT_ANGULAR = "root (angular)"
#: A joint this close to a range limit of its body counts as held on the limit.
LIMIT_TOL_RAD = 0.01


@dataclasses.dataclass(frozen=True)
class JointCheck:
    joint: str
    peak_speed: float  # rad/s (m/s for a slide)
    peak_speed_frame: int
    peak_accel: float  # rad/s^2
    peak_accel_frame: int
    speed_frames: tuple[tuple[int, int], ...]  # inclusive frame ranges above the speed bound
    accel_frames: tuple[tuple[int, int], ...]  # inclusive frame ranges above the acceleration bound
    limit_frames: tuple[tuple[int, int], ...] = ()  # inclusive frame ranges on the body's range limit

    @property
    def exceeds(self) -> bool:
        return bool(self.speed_frames or self.accel_frames)


@dataclasses.dataclass(frozen=True)
class ClipCheck:
    clip: str
    body: str
    fps: float
    frames: int
    max_speed: float | None  # the bounds applied (None: no bound)
    max_accel: float | None
    joints: tuple[JointCheck, ...]
    torque_checked: bool = False  # whether the body's muscles were checked against the clip's torques
    torque_frames: tuple[tuple[int, int], ...] = ()  # inclusive frame ranges the muscles cannot drive

    @property
    def exceeding(self) -> tuple[JointCheck, ...]:
        return tuple(j for j in self.joints if j.exceeds)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["torque_frames"] = [list(r) for r in d["torque_frames"]]
        for j in d["joints"]:
            j["speed_frames"] = [list(r) for r in j["speed_frames"]]
            j["accel_frames"] = [list(r) for r in j["accel_frames"]]
            j["limit_frames"] = [list(r) for r in j["limit_frames"]]
        return d


def clip_layout(clip: Clip) -> JointLayout:
    """The clip's joint layout from its joint names and qpos columns alone (no body model needed).

    A 7-column first joint is a free root; 4-column (ball) joints are skipped.
    """
    dims = clip.qpos_dims
    qadr = np.concatenate([[0], np.cumsum(dims)[:-1]]).astype(np.int64)
    vdims = [QVEL_OF_QPOS[d] for d in dims]
    vadr = np.concatenate([[0], np.cumsum(vdims)[:-1]]).astype(np.int64)
    free_root = bool(dims) and dims[0] == 7
    scalar = [i for i, d in enumerate(dims) if d == 1]
    n = len(scalar)
    return JointLayout(
        free_root=free_root,
        joint_names=tuple(clip.joint_names[i] for i in scalar),
        hinge_qpos=qadr[scalar],
        hinge_dof=vadr[scalar],
        lo=np.full(n, -np.inf),
        hi=np.full(n, np.inf),
        nq=int(sum(dims)),
        nv=int(sum(vdims)),
    )


def joint_speeds_and_accels(
    qpos: np.ndarray, fps: float, layout: JointLayout
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Names, velocities (T, n) and accelerations (T, n) of the checked coordinates.

    Each scalar joint gives one signed column; a free root adds one column,
    the norm of its angular velocity (and the norm of that vector's rate of change).
    """
    qvel = reference_velocities(qpos, fps, layout)
    dt = 1.0 / fps
    names = list(layout.joint_names)
    vel = [qvel[:, layout.hinge_dof]]
    acc = [np.gradient(vel[0], dt, axis=0)]
    if layout.free_root:
        w = qvel[:, 3:6]
        names.append(ROOT_ANGULAR)
        vel.append(np.linalg.norm(w, axis=1, keepdims=True))
        acc.append(np.linalg.norm(np.gradient(w, dt, axis=0), axis=1, keepdims=True))
    return tuple(names), np.concatenate(vel, axis=1), np.concatenate(acc, axis=1)


def frame_ranges(mask: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Inclusive (first, last) frame ranges where ``mask`` is true."""
    mask = np.asarray(mask, bool)
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0] - 1
    return tuple((int(a), int(b)) for a, b in zip(starts, ends, strict=True))


def format_ranges(ranges: Sequence[tuple[int, int]], limit: int = 6) -> str:
    """'12-15, 40, 71-72' (at most ``limit`` ranges, then '(+N more)')."""
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in ranges[:limit]]
    if len(ranges) > limit:
        parts.append(f"(+{len(ranges) - limit} more)")
    return ", ".join(parts)


def body_bounds(body_name: str) -> tuple[float | None, float | None]:
    """A registered body's (max joint speed, max joint acceleration); (None, None) for unknown bodies."""
    from mimic_mjx.bodies import get_body

    try:
        body = get_body(body_name)
    except BodyError:
        return None, None
    return body.max_joint_speed_rad_s, body.max_joint_accel_rad_s2


def body_model(body_name: str) -> mujoco.MjModel | None:
    """A registered body's compiled model; None for unknown bodies."""
    from mimic_mjx.bodies import get_body

    try:
        return get_body(body_name).compile()
    except BodyError:
        return None


def body_ranges(body_name: str, model: mujoco.MjModel | None = None) -> dict[str, tuple[float, float]]:
    """A registered body's limited scalar joints and their ranges; empty for unknown bodies."""
    model = body_model(body_name) if model is None else model
    if model is None:
        return {}
    scalar = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
    return {
        model.joint(j).name: (float(model.jnt_range[j, 0]), float(model.jnt_range[j, 1]))
        for j in range(model.njnt)
        if model.jnt_limited[j] and model.jnt_type[j] in scalar
    }


def _limit_frames(clip: Clip, layout: JointLayout, ranges: dict) -> dict[str, tuple[tuple[int, int], ...]]:
    out = {}
    for name, col in zip(layout.joint_names, layout.hinge_qpos, strict=True):
        if name in ranges:
            lo, hi = ranges[name]
            q = clip.qpos[:, col]
            out[name] = frame_ranges((q <= lo + LIMIT_TOL_RAD) | (q >= hi - LIMIT_TOL_RAD))
    return out


def _torque_frames(clip: Clip, layout: JointLayout, vel, acc, model) -> tuple[tuple[int, int], ...] | None:
    """Frame ranges whose torques the body's muscles cannot produce; None where not judged."""
    from mimic_mjx.bodies.strength import actuated_fixed_base, unproducible_frames

    if model is None or not actuated_fixed_base(model) or layout.free_root:
        return None
    names = tuple(model.joint(j).name for j in range(model.njnt))
    if tuple(layout.joint_names) != names or clip.qpos.shape[1] != model.nq:
        return None  # the clip's joints are not this body's, in its order: nothing to compare
    return frame_ranges(unproducible_frames(model, np.asarray(clip.qpos, float), vel, acc))


def check_clip(
    clip: Clip,
    max_speed: float | None = None,
    max_accel: float | None = None,
    ranges: dict | None = None,
    model: mujoco.MjModel | None = None,
) -> ClipCheck:
    """Peaks and exceedances of one clip; bounds and joint ranges default to those of the clip's body.

    ``model``: the body's compiled model, to check the clip's torques against its muscles.
    """
    speed_bound, accel_bound = body_bounds(clip.body)
    max_speed = speed_bound if max_speed is None else max_speed
    max_accel = accel_bound if max_accel is None else max_accel
    layout = clip_layout(clip)
    names, vel, acc = joint_speeds_and_accels(clip.qpos, clip.fps, layout)
    on_limit = _limit_frames(clip, layout, body_ranges(clip.body) if ranges is None else ranges)
    torque = _torque_frames(clip, layout, vel, acc, model)
    speed, accel = np.abs(vel), np.abs(acc)
    joints = []
    for i, name in enumerate(names):
        joints.append(
            JointCheck(
                joint=name,
                peak_speed=float(speed[:, i].max()),
                peak_speed_frame=int(speed[:, i].argmax()),
                peak_accel=float(accel[:, i].max()),
                peak_accel_frame=int(accel[:, i].argmax()),
                speed_frames=frame_ranges(speed[:, i] > max_speed) if max_speed is not None else (),
                accel_frames=frame_ranges(accel[:, i] > max_accel) if max_accel is not None else (),
                limit_frames=on_limit.get(name, ()),
            )
        )
    return ClipCheck(
        clip=clip.name,
        body=clip.body,
        fps=float(clip.fps),
        frames=clip.num_frames,
        max_speed=max_speed,
        max_accel=max_accel,
        joints=tuple(joints),
        torque_checked=torque is not None,
        torque_frames=torque or (),
    )


def check_clips(
    clips: Sequence[Clip], max_speed: float | None = None, max_accel: float | None = None
) -> list[ClipCheck]:
    models, ranges, out = {}, {}, []  # models per body, compiled once
    for c in clips:  # one pass: a lazy sequence reads each clip once
        if c.body not in models:
            models[c.body] = body_model(c.body)
            ranges[c.body] = body_ranges(c.body, models[c.body])
        out.append(check_clip(c, max_speed, max_accel, ranges[c.body], models[c.body]))
    return out


def torque_line(check: ClipCheck) -> str:
    return (
        f"clip '{check.clip}': the muscles of {check.body} cannot produce its joint torques at frames "
        f"{format_ranges(check.torque_frames)} (static optimisation leaves more than a tenth unproduced)"
    )


def exceedance_line(check: ClipCheck, joint: JointCheck) -> str:
    """One line naming clip, joint, peak, bound and frames, for each bound the joint exceeds."""
    parts = []
    if joint.speed_frames:
        parts.append(
            f"speed {joint.peak_speed:.0f} rad/s > {check.max_speed:g} rad/s at frames "
            f"{format_ranges(joint.speed_frames)}"
        )
    if joint.accel_frames:
        parts.append(
            f"acceleration {joint.peak_accel:.0f} rad/s^2 > {check.max_accel:g} rad/s^2 at frames "
            f"{format_ranges(joint.accel_frames)}"
        )
    return f"clip '{check.clip}', joint {joint.joint}: " + "; ".join(parts)


def clip_speed_warnings(clips: Sequence[Clip], body_name: str) -> list[str]:
    """One human-readable line per (clip, joint) exceeding ``body_name``'s speed or acceleration bound,
    and one per clip with frames whose torques the body's muscles cannot produce.

    Empty when every clip is within bounds and drivable (or the body has no bounds and no muscles).
    """
    max_speed, max_accel = body_bounds(body_name)
    model = body_model(body_name)
    lines = []
    for c in clips:
        check = check_clip(c, max_speed, max_accel, ranges={}, model=model)
        lines += [exceedance_line(check, j) for j in check.exceeding]
        if check.torque_frames:
            lines.append(torque_line(check))
    return lines


def format_report(checks: Sequence[ClipCheck]) -> str:
    """A table per clip (peaks, the frame of each, what exceeds) and a one-line summary."""
    lines = []
    for ch in checks:
        bound = lambda b, unit: "none" if b is None else f"{b:g} {unit}"
        lines.append(
            f"{ch.clip} ({ch.body}, {ch.frames} frames at {ch.fps:g} Hz); bounds: speed "
            f"{bound(ch.max_speed, 'rad/s')}, acceleration {bound(ch.max_accel, 'rad/s^2')}"
        )
        lines.append(
            f"  {'joint':<22} {'peak speed':>10} {'frame':>5} {'peak accel':>11} {'frame':>5}  exceeds at frames"
            "  (on its range limit at frames)"
        )
        for j in ch.joints:
            over = []
            if j.speed_frames:
                over.append(f"speed {format_ranges(j.speed_frames)}")
            if j.accel_frames:
                over.append(f"accel {format_ranges(j.accel_frames)}")
            limit = f"  (limit {format_ranges(j.limit_frames)})" if j.limit_frames else ""
            lines.append(
                f"  {j.joint:<22} {j.peak_speed:>10.1f} {j.peak_speed_frame:>5d} {j.peak_accel:>11.0f} "
                f"{j.peak_accel_frame:>5d}  {'; '.join(over) or '-'}{limit}"
            )
        if ch.torque_checked:
            where = format_ranges(ch.torque_frames) if ch.torque_frames else "none"
            lines.append(f"  frames the muscles cannot drive (torques from inverse dynamics): {where}")
    on_limit = sum(any(j.limit_frames for j in ch.joints) for ch in checks)
    if on_limit:
        lines.append(
            f"{on_limit} of {len(checks)} clip(s) hold a joint on its range limit (within {LIMIT_TOL_RAD:g} rad): "
            "the simulated joint presses on its limit there; `mimic register --limit-margin` keeps fits inside"
        )
    undrivable = sum(bool(ch.torque_frames) for ch in checks)
    if undrivable:
        lines.append(
            f"{undrivable} of {len(checks)} clip(s) ask for joint torques the body's muscles cannot produce: "
            "a controller loses those frames whatever it learns"
        )
    bad = sum(bool(ch.exceeding) for ch in checks)
    lines.append(f"{bad} of {len(checks)} clip(s) exceed a bound (speeds in rad/s, accelerations in rad/s^2)")
    return "\n".join(lines)
