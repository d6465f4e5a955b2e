"""Keypoints in, reference clips out: the `mimic register` pipeline."""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Callable

import mujoco
import numpy as np

from mimic_mjx.bodies import get_body
from mimic_mjx.bodies.keypoint_maps import get_keypoint_map
from mimic_mjx.bodies.layout import joint_qpos_dims, reference_velocities
from mimic_mjx.data.clips import Clip
from mimic_mjx.data.keypoints import Keypoints, KeypointWarning, body_extent, check_plausible_size
from mimic_mjx.errors import BodyError, KeypointError
from mimic_mjx.registration.joints import registration_layout
from mimic_mjx.registration.stac import StacConfig, StacResult, StacSolver


@dataclasses.dataclass
class Registration:
    clip: Clip  # the whole recording as one clip
    result: StacResult
    summary: dict


def rest_markers(model: mujoco.MjModel, bodies: list[str], offsets: np.ndarray) -> np.ndarray:
    """The mapped markers at the neutral pose (qpos0), (K, 3) m."""
    return markers_of(model, model.qpos0[None], bodies, offsets)[0]


def markers_of(model: mujoco.MjModel, qpos: np.ndarray, bodies: list[str], offsets: np.ndarray) -> np.ndarray:
    """The mapped markers (T, K, 3) m at each pose of ``qpos`` (T, nq)."""
    data = mujoco.MjData(model)
    ids = [model.body(b).id for b in bodies]
    out = np.zeros((len(qpos), len(ids), 3))
    for t, q in enumerate(qpos):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        out[t] = data.xpos[ids] + np.einsum("kij,kj->ki", data.xmat[ids].reshape(-1, 3, 3), offsets)
    return out


def lift_planar(kp: Keypoints, heights: np.ndarray) -> Keypoints:
    """2-D keypoints (z = 0) with each keypoint's z set to ``heights`` (K,), its marker's height at rest."""
    positions = kp.positions.copy()
    positions[..., 2] = np.where(np.isnan(positions[..., 2]), np.nan, heights[None])
    return dataclasses.replace(kp, positions=positions)


def expected_extent(model: mujoco.MjModel, bodies: list[str], offsets: np.ndarray) -> float:
    """Largest distance between the mapped markers at the neutral pose (m)."""
    pts = rest_markers(model, bodies, offsets)
    fake = Keypoints(
        positions=pts[None],
        names=tuple(f"k{i}" for i in range(len(pts))),
        fps=1.0,
        confidence=np.ones((1, len(pts))),
        source="model",
    )
    return body_extent(fake)


def estimate_scale(kp: np.ndarray, markers: np.ndarray, origin: np.ndarray, w: np.ndarray) -> float:
    """Least-squares factor s so that origin + s (markers - origin) best matches the keypoints.

    With the poses fixed, scaling the whole body about its root scales every
    marker's offset from the root, so the best factor is a ratio of sums.
    kp, markers: (T, K, 3); origin: (T, 3); w: (T, K) weights (0 for missing).
    """
    a = np.nan_to_num(kp) - origin[:, None]
    b = markers - origin[:, None]
    den = np.sum(w * np.sum(b * b, axis=-1))
    if den <= 0:
        raise KeypointError("cannot estimate a body scale: no keypoint away from the root")
    return float(np.sum(w * np.sum(a * b, axis=-1)) / den)


def _scalable_base(body) -> float:
    param = inspect.signature(body.build_spec).parameters.get("scale")
    if param is None or param.default is inspect.Parameter.empty:
        raise KeypointError(
            f"body '{body.name}' cannot be rescaled (its builder takes no scale); register without fitting the scale"
        )
    return float(param.default)


@dataclasses.dataclass
class Prepared:
    """What a registration needs besides the poses: the body, its markers and the keypoints' weights."""

    body: object  # bodies.Body
    model: mujoco.MjModel
    kp: Keypoints  # planar keypoints lifted to their markers' rest heights
    names: list[str]
    bodies: list[str]  # the body each keypoint's marker is attached to
    offsets0: np.ndarray  # (K, 3) initial marker offsets
    trunk: list[int]
    cfg: StacConfig  # priors scaled to the body's size
    weights: np.ndarray  # (T, K), 0 where missing or below min_confidence


def prepare(kp: Keypoints, body_name: str, cfg: StacConfig, log: Callable[[str], None] = print) -> Prepared:
    """Check keypoints against the body's keypoint map and derive the solver's inputs."""
    body = get_body(body_name)  # a built-in name or a body file's path
    kmap = body.keypoint_map
    if kmap is None and body.source is None:
        get_keypoint_map(body.name)  # a built-in body without a map: BodyError saying where maps live
    if kmap is None:
        raise BodyError(f"{body.source}: the body file maps no keypoints; add 'keypoints:' (keypoint: body or site)")
    body_name = body.name  # the name clips record, the same whatever path led to the body file
    unknown = [n for n in kp.names if n not in kmap.keypoints]
    if unknown:
        raise KeypointError(
            f"{kp.source}: keypoint(s) {unknown} are not in the '{body_name}' keypoint mapping "
            f"(which knows {list(kmap.names)}); rename them with names=/--names or drop them"
        )
    unused = [n for n in kmap.names if n not in kp.names]
    if unused:
        warnings.warn(
            f"the '{body_name}' mapping's keypoints {unused} are not in {kp.source}; fitting without them",
            KeypointWarning,
            stacklevel=2,
        )
    names = list(kp.names)
    bodies = [kmap.keypoints[n][0] for n in names]
    offsets0 = np.array([kmap.keypoints[n][1] for n in names], np.float64)
    model = body.compile()
    extent = expected_extent(model, bodies, offsets0)
    check_plausible_size(kp, extent, body=body_name)
    cfg, prior_factor = cfg.for_body_extent(extent)
    if prior_factor < 1:
        log(
            f"'{body_name}' spans {1e3 * extent:.3g} mm at rest: registration priors (smoothness, joint speed, "
            f"observable lever) scaled x{prior_factor:.3g} with the body's size"
        )
    if kp.planar:  # 2-D keypoints seen from above: each at its marker's height in the rest pose (on the floor)
        heights = rest_markers(model, bodies, offsets0)[:, 2]
        kp = lift_planar(kp, heights)
        log(
            f"{kp.source}: 2-D keypoints; each keypoint's z set to its marker's height in the rest pose of "
            f"'{body_name}' ({1e3 * heights.min():.3g} to {1e3 * heights.max():.3g} mm)"
        )

    missing = np.isnan(kp.positions).any(axis=-1)
    empty_frames = int(missing.all(axis=1).sum())
    if empty_frames:
        warnings.warn(
            f"{kp.source}: {empty_frames} frame(s) have no keypoints; their poses are filled in by "
            f"the smoothness term only",
            KeypointWarning,
            stacklevel=2,
        )
    weights = kp.confidence if cfg.weight_by_confidence else np.ones_like(kp.confidence)
    weights = np.where((kp.confidence > cfg.min_confidence) & ~missing, weights, 0.0)
    trunk = [names.index(n) for n in kmap.trunk_keypoints if n in names]
    lay = registration_layout(model)
    if lay.free_root and len(trunk) < 3:
        raise KeypointError(
            f"{kp.source}: the root of '{body_name}' is aligned on its trunk keypoints "
            f"{list(kmap.trunk_keypoints)}, but only {len(trunk)} are present; need 3 or more"
        )

    return Prepared(body, model, kp, names, bodies, offsets0, trunk, cfg, weights)


def register(
    kp: Keypoints,
    body_name: str,
    cfg: StacConfig = StacConfig(),
    *,
    fit_scale: bool = False,
    log: Callable[[str], None] = print,
) -> Registration:
    """Fit ``body_name`` to the keypoints; return the clip, raw result and a residual summary.

    ``fit_scale``: first fit poses at the body's default size, estimate one
    global scale factor in closed form, rebuild the body at that size (offsets
    scaled alike) and register again.
    """
    p = prepare(kp, body_name, cfg, log)
    body, model, kp, names, bodies, offsets0, trunk, cfg, weights = (
        p.body,
        p.model,
        p.kp,
        p.names,
        p.bodies,
        p.offsets0,
        p.trunk,
        p.cfg,
        p.weights,
    )
    body_name = body.name
    lay = registration_layout(model)
    log(
        f"registering {kp.num_frames} frames x {len(names)} keypoints ({kp.duration_s:.1f} s at {kp.fps:g} Hz) "
        f"to '{body_name}' ({model.nq} qpos); the first round includes compilation"
    )
    scale = 1.0
    if fit_scale:
        base = _scalable_base(body)
        probe = StacSolver(model, bodies, offsets0, trunk, dataclasses.replace(cfg, rounds=0), log=log)
        first = probe.solve(kp.positions, weights, fps=kp.fps)
        origin = first.qpos[:, 0:3] if lay.free_root else np.zeros((kp.num_frames, 3))
        scale = estimate_scale(kp.positions, first.markers, origin, first.weights)
        log(f"fitted body scale: x{scale:.3f} of '{body_name}' (absolute {base * scale:.3f})")
        model = body.build_spec(scale=base * scale).compile()
        offsets0 = offsets0 * scale
        if kp.planar:  # the rescaled body rests at another height
            kp = lift_planar(kp, rest_markers(model, bodies, offsets0)[:, 2])
    solver = StacSolver(model, bodies, offsets0, trunk, cfg, log=log)
    result = solver.solve(kp.positions, weights, fps=kp.fps)

    xpos, xquat = solver.body_poses(result.qpos)
    qh = result.qpos[:, lay.hinge_qpos]
    violations = int(((qh < lay.lo - 1e-6) | (qh > lay.hi + 1e-6)).sum())
    res_mm = 1e3 * result.residuals
    summary = {
        "body": body_name,
        "frames": kp.num_frames,
        "keypoints": names,
        "fps": kp.fps,
        "median_residual_mm": float(np.nanmedian(res_mm)),
        "p95_residual_mm": float(np.nanpercentile(res_mm, 95)),
        "per_keypoint_median_mm": {
            n: float(np.nanmedian(res_mm[:, i])) if np.isfinite(res_mm[:, i]).any() else float("nan")
            for i, n in enumerate(names)
        },
        "per_keypoint_p95_mm": {
            n: float(np.nanpercentile(res_mm[:, i], 95)) if np.isfinite(res_mm[:, i]).any() else float("nan")
            for i, n in enumerate(names)
        },
        "joint_limit_violations": violations,
        "body_scale": scale,
        "solve_s": result.seconds,
    }
    clip = Clip(
        name=kp.source.rsplit("/", 1)[-1].rsplit(".", 1)[0] or "registered",
        body=body_name,
        fps=kp.fps,
        joint_names=tuple(model.joint(j).name for j in range(model.njnt)),
        joint_qpos_dims=joint_qpos_dims(model),
        qpos=result.qpos.astype(np.float32),
        qvel=reference_velocities(result.qpos, kp.fps, solver.layout).astype(np.float32),
        body_names=tuple(model.body(b).name for b in range(model.nbody)),
        xpos=xpos.astype(np.float32),
        xquat=xquat.astype(np.float32),
        keypoint_names=tuple(names),
        keypoints=kp.positions.astype(np.float32),
        marker_offsets=result.offsets.astype(np.float32),
        keypoint_residuals=result.residuals.astype(np.float32),
        # The body's own model (also after fit_scale, whose clips train the body as built), so training
        # refuses these clips for another model of the body (data/binding.py).
        body_hash=body.body_hash(),
    ).validate()
    return Registration(clip=clip, result=result, summary=summary)


def split_clip(clip: Clip, length: int) -> list[Clip]:
    """Cut a clip into consecutive clips of ``length`` frames (a shorter tail is dropped)."""
    if length < 2:
        raise KeypointError(f"clip length must be at least 2 frames, got {length}")
    if clip.num_frames < length:
        raise KeypointError(f"the recording has {clip.num_frames} frames, fewer than one clip of {length}")
    starts = range(0, clip.num_frames - length + 1, length)
    return [clip.frames(slice(s, s + length), f"{clip.name}-{i:04d}") for i, s in enumerate(starts)]


def format_residuals(summary: dict) -> str:
    lines = [f"{'keypoint':<12} {'median (mm)':>12} {'95th pct (mm)':>14}"]
    for n in summary["keypoints"]:
        lines.append(
            f"{n:<12} {summary['per_keypoint_median_mm'][n]:>12.2f} {summary['per_keypoint_p95_mm'][n]:>14.2f}"
        )
    lines.append(f"{'all':<12} {summary['median_residual_mm']:>12.2f} {summary['p95_residual_mm']:>14.2f}")
    lines.append(f"joint-limit violations: {summary['joint_limit_violations']}")
    return "\n".join(lines)
