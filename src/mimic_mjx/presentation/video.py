"""``mimic render``: a video of a trained controller's rollout on one clip, its reference drawn as a ghost.

The simulated body is drawn as modelled; the reference pose of the same
instant as a translucent blue copy (over it, or beside it by ``ghost_offset``);
the clip's recorded keypoints as red spheres (with the ghost: they are data)
and the body's registered markers as green ones (on the simulated body). Once
tracking is lost the body stays frozen where it was, tinted red, and the
caption says LOST. The camera is fitted to what the body sweeps over the clip,
a body without a floor stands over a grid, and a short clip plays in slow
motion, labelled as such (``presentation/scene.py``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import mujoco
import numpy as np

from mimic_mjx.data.clips import require_clip_names
from mimic_mjx.errors import MimicError
from mimic_mjx.presentation import scene as S
from mimic_mjx.presentation.render import (
    KEYPOINT_RGBA,
    MARKER_RGBA,
    add_sphere,
    draw_caption,
    mp4_writer,
    open_renderer,
)
from mimic_mjx.presentation.scene import pose as _pose
from mimic_mjx.presentation.scene import resolve_camera

GHOST_RGBA = np.array([0.25, 0.55, 1.0, 0.4], np.float32)
LOST_RGBA = np.array([0.9, 0.25, 0.25, 1.0], np.float32)
MAX_FPS = 60.0  # players stutter or drop frames above this


class GhostPainter:
    """Renders frames of a body and its reference ghost; use as a context manager (it holds a GL context)."""

    def __init__(
        self,
        model: mujoco.MjModel,
        width: int = 640,
        height: int = 480,
        *,
        camera: str | None = None,
        azimuth: float | None = None,
        elevation: float | None = None,
        distance: float | None = None,
        ghost_offset: Sequence[float] = (0.0, 0.0, 0.0),
        poses: np.ndarray | None = None,
    ):
        """``poses`` (frames, nq): what the body will sweep (the clip's reference), to fit the free camera to."""
        self.model = model
        self.offset = np.asarray(ghost_offset, np.float64).reshape(3)
        self.camera, self.camera_label = resolve_camera(model, camera, azimuth, elevation, distance)
        self._root = S.root_body(model)
        poses = model.qpos0[None] if poses is None else np.asarray(poses, np.float64)
        points, radii = S.swept_points(model, poses)
        points, radii = np.concatenate([points, points + self.offset]), np.tile(radii, 2)  # body and ghost
        cam = self.camera
        self._centre, fitted, size = S.fit_view(
            points, radii, cam.azimuth, cam.elevation, model.vis.global_.fovy, width / height
        )
        self.radius = 0.015 * size
        free = camera is None
        if free and distance is None:
            cam.distance = fitted
            self.camera_label = f"free (azimuth {cam.azimuth:g}, elevation {cam.elevation:g}, distance {fitted:.3g} m)"
        self.floor = None  # (height, grid spacing) of a floor drawn for a body whose model has none
        if not S.has_floor(model):
            world, wr = S.swept_points(model, poses, relative=False)
            self.floor = (float((world[:, 2] - wr).min() - 0.05 * size), S.grid_spacing(size))
            self._floor_xy = world.mean(axis=0)[:2]
        S.brighten(model, cam.distance if free else None)
        self.option, self.perturb = mujoco.MjvOption(), mujoco.MjvPerturb()
        self.sim, self.ref = mujoco.MjData(model), mujoco.MjData(model)
        self.renderer = open_renderer(model, width, height)

    def __enter__(self) -> GhostPainter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.renderer.close()

    def frame(
        self,
        sim_qpos,
        ref_qpos=None,
        *,
        keypoints=None,
        markers=None,
        lost: bool = False,
        caption: str = "",
        label: str = "",
    ) -> np.ndarray:
        """One RGB frame (height, width, 3): the body at ``sim_qpos``, its ghost at ``ref_qpos`` (None: none).

        ``keypoints`` (K, 3) are drawn with the ghost (shifted by its offset),
        ``markers`` (K, 3) on the body; non-finite rows are skipped. ``caption`` is
        written at the top, ``label`` (e.g. the playback speed) at the bottom.
        """
        _pose(self.model, self.sim, sim_qpos)
        if self.camera.type == mujoco.mjtCamera.mjCAMERA_FREE:
            # A free body is followed (its centre is relative to the root); a fixed base is not.
            self.camera.lookat[:] = self._centre + (0.0 if self._root is None else self.sim.xpos[self._root])
        self.renderer.update_scene(self.sim, self.camera, self.option)
        scene = self.renderer.scene
        if self.floor is not None:
            S.add_floor(scene, self._floor_xy, *self.floor)
        if lost:
            self._tint(scene, 0, scene.ngeom, LOST_RGBA, transparent=False)
        if ref_qpos is not None:
            self._add_ghost(scene, ref_qpos)
        for points, rgba, shift in ((keypoints, KEYPOINT_RGBA, self.offset), (markers, MARKER_RGBA, 0.0)):
            for p in np.zeros((0, 3)) if points is None else np.asarray(points):
                if np.isfinite(p).all():
                    add_sphere(scene, p + shift, self.radius, rgba)
        image = self.renderer.render()
        image = draw_caption(image, caption) if caption else image
        return draw_caption(image, label, bottom=True) if label else image

    def _add_ghost(self, scene: mujoco.MjvScene, ref_qpos) -> None:
        _pose(self.model, self.ref, ref_qpos)
        first = scene.ngeom
        # Dynamic geoms only: the floor and other static geoms are drawn once, by the body's scene.
        mujoco.mjv_addGeoms(self.model, self.ref, self.option, self.perturb, mujoco.mjtCatBit.mjCAT_DYNAMIC, scene)
        self._tint(scene, first, scene.ngeom, GHOST_RGBA, transparent=True)
        for i in range(first, scene.ngeom):
            scene.geoms[i].pos[:] += self.offset

    @staticmethod
    def _tint(scene: mujoco.MjvScene, start: int, stop: int, rgba, transparent: bool) -> None:
        for i in range(start, stop):
            g = scene.geoms[i]
            if g.category != mujoco.mjtCatBit.mjCAT_DYNAMIC or g.rgba[3] == 0:
                continue  # the floor stays; invisible geoms stay invisible
            g.rgba[:] = rgba
            g.matid = -1  # a texture would hide the colour
            g.transparent = int(transparent)


def _caption(t_s: float, joint_deg: float, ee: dict[str, float], kp_mm: float, lost_at: float | None) -> str:
    text = f"t {t_s:.3f} s"
    if lost_at is not None:
        return f"{text}  LOST at {lost_at:.3f} s"
    text += f"  joint {joint_deg:.1f} deg"
    text += "".join(f"  {name} {mm:.2f} mm" for name, mm in ee.items())
    return text + (f"  keypoints {kp_mm:.2f} mm" if np.isfinite(kp_mm) else "")


def _effector_errors(names: Sequence[str], ee_error_m: np.ndarray) -> dict[str, float]:
    # More than two effectors crowd a caption line: their mean instead.
    if len(names) <= 2:
        return {n.removesuffix("_body"): 1e3 * float(e) for n, e in zip(names, ee_error_m, strict=True)}
    return {"end effectors": 1e3 * float(np.mean(ee_error_m))}


def _mean_mm(errors_m: np.ndarray) -> float:
    finite = errors_m[np.isfinite(errors_m)]  # keypoints not recorded at this frame are NaN
    return 1e3 * float(finite.mean()) if finite.size else np.nan


def _frozen(qpos: np.ndarray, tracked: np.ndarray, start: np.ndarray) -> np.ndarray:
    """The body's pose at each step, held at its last tracked pose (``start`` if none) once tracking is lost."""
    last = np.maximum.accumulate(np.where(tracked, np.arange(len(tracked)), -1))
    return np.where((last >= 0)[:, None], qpos[np.maximum(last, 0)], start[None])


def _check_args(slowmo: float | None, fps: float | None, width: int, height: int) -> None:
    if slowmo is not None and not slowmo > 0:
        raise MimicError(f"--slowmo must be a positive factor (4: four times slower than real time), got {slowmo}")
    if fps is not None and not fps > 0:
        raise MimicError(f"fps must be a positive frame rate, got {fps}")
    if width < 1 or height < 1:
        raise MimicError(f"--width and --height must be positive numbers of pixels, got {width}x{height}")


def _pick_clip(clips: Sequence, name: str):
    # A lazy sequence (data.clip_files) lists its names without reading any clip: read only this one.
    names = list(getattr(clips, "names", None) or [c.name for c in clips])
    require_clip_names([name], names)
    return clips[names.index(name)]


def render_rollout(
    run_dir: str | Path,
    clips: Sequence,
    clip_name: str,
    out: str | Path,
    *,
    camera: str | None = None,
    azimuth: float | None = None,
    elevation: float | None = None,
    distance: float | None = None,
    slowmo: float | None = None,
    fps: float | None = None,
    width: int = 640,
    height: int = 480,
    ghost_offset: Sequence[float] = (0.0, 0.0, 0.0),
    log: Callable[[str], None] = print,
) -> dict:
    """Roll the run's controller out (deterministically) on one clip and write an MP4 of it.

    ``slowmo``: times slower than real time (default: a clip shorter than
    ``scene.MIN_VIDEO_S`` is slowed to last about that long, else 1); the
    video says its speed. ``fps``: the highest frame rate of the video
    (default 60); above it steps are dropped, never the playback speed
    changed. Returns the frames written, the frame rate, the video's length in
    seconds, the slow-down, its path and the camera.
    """
    from mimic_mjx.analysis.rollout import collect
    from mimic_mjx.training.checkpoint import load_policy
    from mimic_mjx.training.experiment import build_eval_env

    _check_args(slowmo, fps, width, height)
    clip = _pick_clip(clips, clip_name)
    policy = load_policy(run_dir)
    env = build_eval_env(policy.config, [clip], body=policy.body)
    view = dict(camera=camera, azimuth=azimuth, elevation=elevation, distance=distance, ghost_offset=ghost_offset)
    reference = env.bank.clip_frames(0, "qpos")  # what the camera must keep in view
    # Made before the rollout: no GL fails fast.
    with GhostPainter(env.model, width, height, poses=reference, **view) as painter:
        log(f"rolling {policy.run_dir} out on {clip.name} ({clip.num_frames} frames at {clip.fps:g} Hz)")
        recs = collect(policy, env)
        recs = {k: recs[k][0, 0] for k in ("qpos", "tracked", "joint_error", "ee_error", "markers", "keypoint_error")}
        steps = len(recs["tracked"])
        if slowmo is None:
            slowmo = S.auto_slowmo(steps * env.control_dt)
            if slowmo > 1:
                log(f"the clip lasts {steps * env.control_dt:.3g} s: {S.speed_label(slowmo)} (--slowmo 1: real time)")
        times, rate = S.frame_times(1.0 / env.control_dt, steps, slowmo, fps or MAX_FPS)
        if len(times) > 1 and times[1] - times[0] > 1:
            log(
                f"control rate {1 / env.control_dt:g} Hz / slowmo {slowmo:g} is above {fps or MAX_FPS:g} fps: "
                f"drawing one step in {times[1] - times[0]:g}, at {rate:.4g} fps, to keep {S.speed_label(slowmo)}"
            )
        _encode(painter, env, recs, times, rate, S.speed_label(slowmo), out, log)
    seconds = len(times) / rate
    return {
        "frames": len(times),
        "fps": rate,
        "seconds": seconds,
        "slowmo": slowmo,
        "path": str(out),
        "camera": painter.camera_label,
    }


def _encode(painter: GhostPainter, env, recs: dict, times: np.ndarray, rate: float, label: str, out, log) -> None:
    tracked = recs["tracked"].astype(bool)
    qpos = _frozen(recs["qpos"], tracked, env.bank.clip_frames(0, "qpos", 0))
    lost = np.flatnonzero(~tracked)
    lost_at = (lost[0] + 1) * env.control_dt if lost.size else None
    floor = f", grid {1e3 * painter.floor[1]:g} mm" if painter.floor else ""
    log(f"rendering {len(times)} frames ({rate:.4g} fps, {label}, camera {painter.camera_label}{floor}) to {out}")
    every = max(1, math.ceil(len(times) / 10))
    last = len(tracked) - 1
    with mp4_writer(out, rate) as writer:
        for i, pos in enumerate(times):
            t = int(pos)
            # Between control steps (slow motion): the pose on its way to the next step's.
            body = S.interpolate_qpos(env.model, qpos[t], qpos[min(t + 1, last)], pos - t)
            writer.append_data(_draw_step(painter, env, recs, body, pos, lost_at if not tracked[t] else None, label))
            if (i + 1) % every == 0 or i + 1 == len(times):
                log(f"  {i + 1}/{len(times)} frames ({100 * (i + 1) // len(times)}%)")


def _draw_step(
    painter: GhostPainter, env, recs: dict, qpos: np.ndarray, pos: float, lost_at: float | None, label: str
) -> np.ndarray:
    """Control step position ``pos`` (fractional between steps): the body (``qpos``), the reference, the caption."""
    bank = env.bank
    t = int(pos)
    frame = round((pos + 1) * env.cfg.control_every)  # the clip frame the step (or the moment) ends at
    kp = markers = None
    kp_mm = np.nan
    if bank.keypoints is not None and len(bank.keypoint_names):
        valid = bank.clip_frames(0, "keypoint_valid", frame)
        kp = np.where(valid[:, None] > 0, bank.clip_frames(0, "keypoints", frame), np.nan)
        if lost_at is None:  # the recorded markers and errors are NaN once lost
            nxt = min(t + 1, len(recs["markers"]) - 1)
            markers = recs["markers"][t] + (pos - t) * (recs["markers"][nxt] - recs["markers"][t])
            kp_mm = _mean_mm(recs["keypoint_error"][t])
    text = _caption(
        frame / bank.fps,
        float(np.degrees(np.mean(np.abs(recs["joint_error"][t])))),
        _effector_errors(env.end_effectors, recs["ee_error"][t]),
        kp_mm,
        lost_at,
    )
    ref = bank.clip_frames(0, "qpos", frame)
    return painter.frame(qpos, ref, keypoints=kp, markers=markers, lost=lost_at is not None, caption=text, label=label)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("render", help="video of a trained controller on a clip, its reference as a ghost")
    p.add_argument("run", help="run directory written by `mimic train`")
    p.add_argument("--clip", required=True, metavar="NAME", help="the clip to roll out (a name inside the files)")
    p.add_argument("--clips", nargs="+", metavar="FILE", help="clip files (HDF5; default: the run's train_clips)")
    p.add_argument("--out", required=True, help="video to write (.mp4)")
    p.add_argument("--camera", help="a camera of the body model by name (default: a free camera following the body)")
    p.add_argument("--azimuth", type=float, help="free camera azimuth, degrees (default 135)")
    p.add_argument("--elevation", type=float, help="free camera elevation, degrees (default -20)")
    p.add_argument(
        "--distance",
        type=float,
        help="free camera distance, metres (default: the body's sweep over the clip fills the frame)",
    )
    p.add_argument(
        "--slowmo",
        type=float,
        help=f"play this many times slower than real time (default: a clip shorter than {S.MIN_VIDEO_S:g} s is "
        f"slowed to last about {S.MIN_VIDEO_S:g} s, a longer one plays in real time; 1: real time)",
    )
    p.add_argument("--width", type=int, default=640, help="frame width, pixels")
    p.add_argument("--height", type=int, default=480, help="frame height, pixels")
    p.add_argument(
        "--ghost-offset", type=float, nargs=3, default=(0.0, 0.0, 0.0), metavar=("X", "Y", "Z"),
        help="draw the reference ghost this far (metres) from the body instead of over it",
    )  # fmt: skip
    p.set_defaults(func=run)


def run(args) -> int:
    from mimic_mjx.data.clip_files import open_clip_files
    from mimic_mjx.presentation.render import require_renderer
    from mimic_mjx.training.rundir import stored_config

    require_renderer()  # first: no OpenGL must not cost a rollout
    paths = args.clips or list(stored_config(Path(args.run)).train_clips)
    if not paths:
        raise MimicError(f"{args.run} names no training clip files (train_clips); pass --clips FILE [FILE ...]")
    view = {k: getattr(args, k) for k in ("camera", "azimuth", "elevation", "distance", "slowmo", "width", "height")}
    result = render_rollout(
        args.run,
        open_clip_files(paths),  # lists the files' clips; reads only --clip's
        args.clip,
        args.out,
        ghost_offset=tuple(args.ghost_offset),
        log=lambda m: print(m, file=sys.stderr, flush=True),
        **view,
    )
    speed = S.speed_label(result["slowmo"])
    frames = f"{result['frames']} frames at {result['fps']:.4g} fps"
    print(f"wrote {result['path']}: {frames} ({result['seconds']:.2f} s, {speed})")
    return 0
