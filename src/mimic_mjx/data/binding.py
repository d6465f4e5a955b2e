"""Bind clips to a body model by joint and body names.

The result is a ``ReferenceBank``: every clip's reference, in the model's own
joint order, on one flat frame axis (each clip's frames followed by its own
look-ahead padding), ready to live on the device and be indexed inside
jit-compiled code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import mujoco
import numpy as np

from mimic_mjx.bodies.layout import QPOS_SIZE, joint_blocks
from mimic_mjx.data.clips import Clip
from mimic_mjx.errors import BindingError, ClipError


@dataclasses.dataclass(frozen=True)
class ReferenceBank:
    """The clips' references on one flat frame axis of F = sum(lengths + pad) frames.

    Clip i holds frames ``starts[i]`` to ``starts[i] + lengths[i] + pad``: its
    ``lengths[i]`` real frames, then ``pad`` frames that repeat its last frame at
    rest (no recorded keypoints), so look-ahead never leaves the clip. Frame t
    of clip i is row ``starts[i] + t`` of every per-frame array below.
    """

    names: tuple[str, ...]
    fps: float
    lengths: np.ndarray  # (N,) int32, real frames per clip
    starts: np.ndarray  # (N,) int32, flat index of each clip's frame 0
    qpos: np.ndarray  # (F, nq)
    qvel: np.ndarray  # (F, nv)
    ee_pos: np.ndarray  # (F, n_ee, 3) end-effector positions, m
    body_pos: np.ndarray  # (F, n_tracked, 3) positions of the tracked bodies, m
    # The recorded keypoints and the registered markers that follow them: what was
    # measured, as opposed to the joint angles registration inferred from it.
    keypoint_names: tuple[str, ...] = ()
    keypoint_bodies: tuple[str, ...] = ()  # body each keypoint's marker is attached to
    keypoints: np.ndarray | None = None  # (F, K, 3) recorded positions, m
    keypoint_valid: np.ndarray | None = None  # (F, K) 1 where recorded (finite, clip has keypoints)
    marker_offsets: np.ndarray | None = None  # (N, K, 3) marker offsets in the attached body's frame, m
    # Every body's world pose at every frame, posed from ``qpos`` by the model's
    # kinematics: a reset into a reference frame reads its body poses from here.
    xpos: np.ndarray | None = None  # (F, nbody, 3), m
    xquat: np.ndarray | None = None  # (F, nbody, 4) wxyz

    @property
    def num_clips(self) -> int:
        return len(self.names)

    @property
    def pad(self) -> int:
        """Frames of look-ahead padding after each clip's real frames."""
        return int(len(self.qpos) - self.starts[-1] - self.lengths[-1])

    def clip_frames(self, i: int, key: str, frames=None) -> np.ndarray:
        """Clip ``i``'s rows of the per-frame array ``key`` ("qpos", "xpos", ...).

        Its real frames, or those numbered ``frames`` (an int or int array;
        0 is the clip's first frame, ``lengths[i] + pad - 1`` its last padding frame).
        """
        a, s, n = getattr(self, key), int(self.starts[i]), int(self.lengths[i])
        if frames is None:
            return a[s : s + n]
        frames = np.asarray(frames)
        if frames.size and (frames.min() < 0 or frames.max() >= n + self.pad):
            raise IndexError(f"frames {frames.min()}..{frames.max()} are not all in clip {i} (0..{n + self.pad - 1})")
        return a[s + frames]


def _zeros(shape) -> np.ndarray:
    """float32 zeros at a 64-byte aligned address: a CPU device then uses the array in place.

    ``jax.device_put`` on a CPU shares an aligned array's memory and copies
    any other, so aligned banks are held once, not twice.
    """
    nbytes = int(np.prod(shape)) * 4
    raw = np.zeros(nbytes + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + nbytes].view(np.float32).reshape(shape)


def _clip_columns(clip: Clip, model_joints: Sequence[str]) -> tuple[list[int], list[int]]:
    """Column indices of the clip's qpos/qvel reordered to ``model_joints``."""
    qstart = np.concatenate([[0], np.cumsum(clip.qpos_dims)])
    vstart = np.concatenate([[0], np.cumsum(clip.qvel_dims)])
    qcols, vcols = [], []
    for n in model_joints:
        i = clip.joint_names.index(n)
        qcols += range(qstart[i], qstart[i + 1])
        vcols += range(vstart[i], vstart[i + 1])
    return qcols, vcols


def body_ids(model: mujoco.MjModel, names: Sequence[str]) -> np.ndarray:
    ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, n) for n in names]
    missing = [n for n, i in zip(names, ids, strict=True) if i < 0]
    if missing:
        raise BindingError(f"bodies {missing} are not in the body model")
    return np.asarray(ids)


def reference_poses(model: mujoco.MjModel, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every body's world pose at joint positions ``qpos`` (..., nq): xpos (..., nbody, 3), xquat (..., nbody, 4).

    ``mj_kinematics`` on the float32 positions widened to float64, the
    arithmetic the native backend runs to place the bodies of a fresh state, so
    the poses agree with it to the bit (~2-4 us a frame).
    """
    qpos = np.asarray(qpos, np.float32)
    lead = qpos.shape[:-1]
    rows = qpos.reshape(-1, model.nq)
    xpos = np.empty((len(rows), model.nbody, 3), np.float32)
    xquat = np.empty((len(rows), model.nbody, 4), np.float32)
    data = mujoco.MjData(model)
    for t, q in enumerate(rows):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        xpos[t], xquat[t] = data.xpos, data.xquat
    return xpos.reshape(lead + xpos.shape[1:]), xquat.reshape(lead + xquat.shape[1:])


def _model_joint_names(model: mujoco.MjModel) -> list[str]:
    return [model.joint(j).name for j in range(model.njnt)]


def bind_clips(
    clips: Sequence[Clip],  # or a ``data.clip_files.ClipFiles``: each clip read once
    model: mujoco.MjModel,
    body_name: str,
    end_effectors: Sequence[str],
    min_frames: int,
    pad: int,
    tracked_bodies: Sequence[str] | None = None,
    keypoint_bodies: dict[str, str] | None = None,
    body_hash: str | None = None,
) -> ReferenceBank:
    """Check clips against the model by name and stack them in model order.

    ``min_frames``: shortest acceptable clip (the observation horizon + 1).
    ``pad``: frames appended (repeating the last) so look-ahead never leaves a clip.
    ``tracked_bodies``: bodies whose reference positions the task compares
    (default: the end effectors).
    ``keypoint_bodies``: keypoint name -> body its marker is attached to; clips'
    recorded keypoints with these names and marker offsets are bound too.
    ``body_hash``: the body's hash (``BodyModel.body_hash``); a clip that records
    another hash was registered to another model of the body and is refused, one
    that records the same hash binds whatever the body's name (its files moved).
    """
    if not clips:
        raise ClipError("no clips to bind")
    model_joints = _model_joint_names(model)
    # A lazy sequence (``data.clip_files.ClipFiles``) lists its clips without reading them:
    # the checks run on that listing and each clip is read once, below.
    headers = getattr(clips, "infos", clips)
    fps = headers[0].fps
    for c in headers:
        same_model = bool(body_hash and c.body_hash == body_hash)
        if body_hash and c.body_hash and not same_model:
            raise BindingError(
                f"clip '{c.name}' was registered to another model: body '{c.body}' (hash {c.body_hash[:12]}), "
                f"but the experiment uses body '{body_name}' (hash {body_hash[:12]}); register the keypoints "
                f"to this body again (`mimic register`) or train the body the clips were registered to"
            )
        if c.body != body_name and not same_model:
            raise BindingError(
                f"clip '{c.name}' was made for body '{c.body}', but the experiment uses "
                f"'{body_name}'; use clips registered to '{body_name}' or set env.body"
            )
        missing = [n for n in model_joints if n not in c.joint_names]
        extra = [n for n in c.joint_names if n not in model_joints]
        if missing or extra:
            raise BindingError(
                f"clip '{c.name}' joints do not match body '{body_name}': "
                f"missing {missing}, unknown {extra}; body joints are {model_joints}"
            )
        dims = dict(zip(c.joint_names, c.qpos_dims, strict=True))
        wrong = [
            n
            for n in model_joints
            if dims[n] != QPOS_SIZE[int(model.jnt_type[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n)])]
        ]
        if wrong:
            raise BindingError(
                f"clip '{c.name}' joints {wrong} have a different type (qpos size) than in body '{body_name}'"
            )
        if c.body_names:
            unknown = [
                n for n in c.body_names if n != "world" and mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, n) < 0
            ]
            if unknown:
                raise BindingError(
                    f"clip '{c.name}' has positions for bodies {unknown} that body '{body_name}' does not have"
                )
        if c.fps != fps:
            raise ClipError(
                f"clips have different frame rates ({headers[0].name}: {fps} Hz, {c.name}: {c.fps} Hz); "
                f"resample them to one rate"
            )
        if c.num_frames < min_frames:
            raise ClipError(
                f"clip '{c.name}' has {c.num_frames} frames, fewer than the {min_frames} needed "
                f"for an observation horizon of {min_frames - 1} frames; use longer clips or a "
                f"smaller env.horizon"
            )

    tracked_bodies = tuple(end_effectors if tracked_bodies is None else tracked_bodies)
    ee_ids = body_ids(model, end_effectors)
    tr_ids = body_ids(model, tracked_bodies)
    qadr, vadr = joint_blocks(model, model_joints)
    # One flat frame axis: each clip's frames, then its own padding (not the longest clip's).
    lengths = np.array([c.num_frames for c in headers], np.int32)
    starts = np.concatenate([[0], np.cumsum(lengths + pad)[:-1]]).astype(np.int32)
    F, N = int(np.sum(lengths + pad, dtype=np.int64)), len(headers)
    qpos = _zeros((F, model.nq))
    qvel = _zeros((F, model.nv))
    ee = _zeros((F, len(end_effectors), 3))
    tr = _zeros((F, len(tracked_bodies), 3))
    xpos = _zeros((F, model.nbody, 3))
    xquat = _zeros((F, model.nbody, 4))
    keypoints = _KeypointStack(model, keypoint_bodies or {}, N, F)
    for i in range(N):
        c = clips[i]  # read here when lazy; dropped before the next is read
        qcols, vcols = _clip_columns(c, model_joints)
        s, L = int(starts[i]), c.num_frames
        real, padding = slice(s, s + L), slice(s + L, s + L + pad)
        qpos[real, qadr] = c.qpos[:, qcols]
        qvel[real, vadr] = c.qvel[:, vcols]
        xpos[real], xquat[real] = reference_poses(model, qpos[real])
        wanted = (*end_effectors, *tracked_bodies)
        if c.xpos is not None and all(n in c.body_names for n in wanted):
            ee[real] = c.xpos[:, [c.body_names.index(n) for n in end_effectors]]
            tr[real] = c.xpos[:, [c.body_names.index(n) for n in tracked_bodies]]
        else:
            ee[real] = xpos[real][:, ee_ids]
            tr[real] = xpos[real][:, tr_ids]
        # Padding repeats the last frame at rest: its poses are the last frame's.
        qpos[padding] = qpos[s + L - 1]
        qvel[padding] = 0.0
        for a in (ee, tr, xpos, xquat):
            a[padding] = a[s + L - 1]
        keypoints.add(i, s, c)
    return ReferenceBank(
        names=tuple(c.name for c in headers),
        fps=float(fps),
        lengths=lengths,
        starts=starts,
        qpos=qpos,
        qvel=qvel,
        ee_pos=ee,
        body_pos=tr,
        xpos=xpos,
        xquat=xquat,
        **keypoints.result(),
    )


class _KeypointStack:
    """Recorded keypoints and marker offsets of the clips, stacked as they are bound.

    The keypoint names are the first clip with keypoints' that the body maps
    (none: nothing is bound). A clip without keypoints (or without marker
    offsets) gets a zero validity mask, so it is scored on joints and bodies alone.
    """

    def __init__(self, model: mujoco.MjModel, keypoint_bodies: dict[str, str], num_clips: int, frames: int):
        self.model, self.keypoint_bodies, self.shape = model, keypoint_bodies, (num_clips, frames)
        self.names: tuple[str, ...] | None = None  # None: no clip with keypoints seen yet

    def add(self, i: int, start: int, c: Clip) -> None:
        """Clip ``i``'s keypoints, at flat frames ``start`` onwards (its padding stays unrecorded)."""
        if c.keypoints is None:
            return
        if self.names is None:
            self.names = tuple(n for n in c.keypoint_names if n in self.keypoint_bodies)
            if not self.names:
                return
            self.bodies = tuple(self.keypoint_bodies[n] for n in self.names)
            body_ids(self.model, self.bodies)  # every mapped body must exist
            (N, F), K = self.shape, len(self.names)
            self.kp = _zeros((F, K, 3))
            self.valid = _zeros((F, K))
            self.offsets = _zeros((N, K, 3))
        if not self.names or c.marker_offsets is None:
            return
        missing = [n for n in self.names if n not in c.keypoint_names]
        if missing:
            raise BindingError(f"clip '{c.name}' lacks keypoints {missing} that other clips have")
        cols = [c.keypoint_names.index(n) for n in self.names]
        L = c.num_frames
        pos = np.asarray(c.keypoints[:, cols], np.float32)
        ok = np.all(np.isfinite(pos), axis=-1)
        self.kp[start : start + L] = np.where(ok[..., None], pos, 0.0)
        self.valid[start : start + L] = ok
        self.offsets[i] = c.marker_offsets[cols]

    def result(self) -> dict:
        if not self.names:
            return {}
        return {
            "keypoint_names": self.names,
            "keypoint_bodies": self.bodies,
            "keypoints": self.kp,
            "keypoint_valid": self.valid,
            "marker_offsets": self.offsets,
        }
