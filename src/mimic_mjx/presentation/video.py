"""``mimic render``: a video of a trained controller's rollout on one clip, its reference drawn as a ghost.

The simulated body is drawn as modelled; the reference pose of the same
instant as a translucent blue copy (over it, or beside it by ``ghost_offset``);
the clip's recorded keypoints as red spheres (with the ghost: they are data)
and the body's registered markers as green ones (on the simulated body). Once
tracking is lost the body stays frozen where it was, tinted red, and the
caption says LOST.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import mujoco
import numpy as np

from mimic_mjx.errors import MimicError
from mimic_mjx.presentation.render import KEYPOINT_RGBA, MARKER_RGBA, add_sphere, mp4_writer, open_renderer

GHOST_RGBA = np.array([0.3, 0.6, 1.0, 0.3], np.float32)
LOST_RGBA = np.array([0.9, 0.25, 0.25, 1.0], np.float32)
MAX_FPS = 60.0  # players stutter or drop frames above this


def _root_body(model: mujoco.MjModel) -> int | None:
    """The body carrying a free joint (a body that moves about the scene), or None for a fixed base."""
    free = np.flatnonzero(model.jnt_type == mujoco.mjtJoint.mjJNT_FREE)
    return int(model.jnt_bodyid[free[0]]) if free.size else None


def _pose(model: mujoco.MjModel, data: mujoco.MjData, qpos) -> None:
    data.qpos[:] = qpos
    mujoco.mj_kinematics(model, data)
    # Tracking cameras follow the centre of mass; camera poses come from mj_camlight.
    mujoco.mj_comPos(model, data)
    mujoco.mj_camlight(model, data)


def _size_and_centre(model: mujoco.MjModel) -> tuple[float, np.ndarray]:
    """The body's size (m) and centre at its default pose: where a free camera looks, and from how far."""
    data = mujoco.MjData(model)
    _pose(model, data, model.qpos0)
    moving = model.geom_bodyid > 0
    xpos = data.geom_xpos[moving] if moving.any() else data.xpos[1:]
    reach = float(model.geom_rbound[moving].max()) if moving.any() else 0.0
    size = float(np.ptp(xpos, axis=0).max()) + 2 * reach
    return max(size, 1e-3), xpos.mean(axis=0)


def resolve_camera(
    model: mujoco.MjModel,
    camera: str | None = None,
    azimuth: float | None = None,
    elevation: float | None = None,
    distance: float | None = None,
) -> tuple[mujoco.MjvCamera, str]:
    """The camera to render with and a description of it: a model camera by name, else a free one."""
    cam = mujoco.MjvCamera()
    if camera is not None:
        names = [model.camera(i).name for i in range(model.ncam)]
        if camera not in names:
            have = ", ".join(names) if names else "none"
            raise MimicError(
                f"unknown camera {camera!r}; this body's cameras: {have}; or leave --camera out and "
                f"aim a free camera with --azimuth/--elevation/--distance"
            )
        if (azimuth, elevation, distance) != (None, None, None):
            raise MimicError("--azimuth/--elevation/--distance aim the free camera; leave them out with --camera")
        cam.type, cam.fixedcamid = mujoco.mjtCamera.mjCAMERA_FIXED, names.index(camera)
        return cam, camera
    if distance is not None and not distance > 0:
        raise MimicError(f"--distance must be a positive number of metres, got {distance}")
    size, _ = _size_and_centre(model)
    cam.type = mujoco.mjtCamera.mjCAMERA_FREE
    cam.azimuth = 135.0 if azimuth is None else float(azimuth)
    cam.elevation = -20.0 if elevation is None else float(elevation)
    cam.distance = 1.5 * size if distance is None else float(distance)
    return cam, f"free (azimuth {cam.azimuth:g}, elevation {cam.elevation:g}, distance {cam.distance:.3g} m)"


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def draw_caption(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` with ``text`` in white on a dark band at its top left, shrunk to fit small frames."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    size = max(9, frame.shape[0] // 20)
    font = _font(size)
    while size > 6 and draw.textbbox((4, 3), text, font=font)[2] > frame.shape[1] - 4:
        size -= 1
        font = _font(size)
    right, bottom = draw.textbbox((4, 3), text, font=font)[2:]
    draw.rectangle((0, 0, right + 4, bottom + 3), fill=(0, 0, 0))
    draw.text((4, 3), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


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
    ):
        self.model = model
        self.offset = np.asarray(ghost_offset, np.float64).reshape(3)
        self.camera, self.camera_label = resolve_camera(model, camera, azimuth, elevation, distance)
        size, self._centre = _size_and_centre(model)
        self.radius = 0.015 * size
        if camera is None and distance is None:
            self.camera.distance += float(np.linalg.norm(self.offset))  # keep a ghost beside in view
        self._root = _root_body(model)
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
    ) -> np.ndarray:
        """One RGB frame (height, width, 3): the body at ``sim_qpos``, its ghost at ``ref_qpos`` (None: none).

        ``keypoints`` (K, 3) are drawn with the ghost (shifted by its offset),
        ``markers`` (K, 3) on the body; non-finite rows are skipped.
        """
        _pose(self.model, self.sim, sim_qpos)
        if self.camera.type == mujoco.mjtCamera.mjCAMERA_FREE:
            follow = self._centre if self._root is None else self.sim.xpos[self._root]
            self.camera.lookat[:] = follow + self.offset / 2
        self.renderer.update_scene(self.sim, self.camera, self.option)
        scene = self.renderer.scene
        if lost:
            self._tint(scene, 0, scene.ngeom, LOST_RGBA, transparent=False)
        if ref_qpos is not None:
            self._add_ghost(scene, ref_qpos)
        for points, rgba, shift in ((keypoints, KEYPOINT_RGBA, self.offset), (markers, MARKER_RGBA, 0.0)):
            for p in np.zeros((0, 3)) if points is None else np.asarray(points):
                if np.isfinite(p).all():
                    add_sphere(scene, p + shift, self.radius, rgba)
        image = self.renderer.render()
        return draw_caption(image, caption) if caption else image

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


def frame_steps(control_rate: float, steps: int, slowmo: float = 1.0, max_fps: float = MAX_FPS):
    """Control steps to draw and the video's frame rate: real time / ``slowmo``, at most ``max_fps``.

    Above ``max_fps``, every k-th step is drawn and the rate divided by k, so
    the video still plays at the intended speed.
    """
    natural = control_rate / slowmo
    stride = max(1, math.ceil(natural / max_fps - 1e-9))
    return np.arange(0, steps, stride), natural / stride, stride


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


def _check_args(slowmo: float, fps: float | None, width: int, height: int) -> None:
    if not slowmo > 0:
        raise MimicError(f"--slowmo must be a positive factor (4: four times slower than real time), got {slowmo}")
    if fps is not None and not fps > 0:
        raise MimicError(f"fps must be a positive frame rate, got {fps}")
    if width < 1 or height < 1:
        raise MimicError(f"--width and --height must be positive numbers of pixels, got {width}x{height}")


def _pick_clip(clips: Sequence, name: str):
    by_name = {c.name: c for c in clips}
    if name not in by_name:
        raise MimicError(f"no clip named {name!r}; the clips are: {', '.join(by_name) or 'none'}")
    return by_name[name]


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
    slowmo: float = 1.0,
    fps: float | None = None,
    width: int = 640,
    height: int = 480,
    ghost_offset: Sequence[float] = (0.0, 0.0, 0.0),
    log: Callable[[str], None] = print,
) -> dict:
    """Roll the run's controller out (deterministically) on one clip and write an MP4 of it.

    ``fps``: the highest frame rate of the video (default 60); above it steps
    are dropped, never the playback speed changed. Returns the frames written,
    the frame rate, the video's length in seconds, its path and the camera.
    """
    from mimic_mjx.analysis.rollout import collect
    from mimic_mjx.training.checkpoint import load_policy
    from mimic_mjx.training.experiment import build_eval_env

    _check_args(slowmo, fps, width, height)
    clip = _pick_clip(clips, clip_name)
    policy = load_policy(run_dir)
    env = build_eval_env(policy.config, [clip])
    view = dict(camera=camera, azimuth=azimuth, elevation=elevation, distance=distance, ghost_offset=ghost_offset)
    with GhostPainter(env.model, width, height, **view) as painter:  # fails fast without GL, before the rollout
        log(f"rolling {policy.run_dir} out on {clip.name} ({clip.num_frames} frames at {clip.fps:g} Hz)")
        recs = collect(policy, env)
        recs = {k: recs[k][0, 0] for k in ("qpos", "tracked", "joint_error", "ee_error", "markers", "keypoint_error")}
        steps, rate, stride = frame_steps(1.0 / env.control_dt, len(recs["tracked"]), slowmo, fps or MAX_FPS)
        if stride > 1:
            speed = "real time" if slowmo == 1 else f"{slowmo:g}x slow motion"
            log(
                f"control rate {1 / env.control_dt:g} Hz / slowmo {slowmo:g} is above {fps or MAX_FPS:g} fps: "
                f"drawing one step in {stride}, at {rate:.4g} fps, to keep {speed}"
            )
        _encode(painter, env, recs, steps, rate, out, log)
    seconds = len(steps) / rate
    return {"frames": len(steps), "fps": rate, "seconds": seconds, "path": str(out), "camera": painter.camera_label}


def _encode(painter: GhostPainter, env, recs: dict, steps: np.ndarray, rate: float, out, log) -> None:
    tracked = recs["tracked"].astype(bool)
    qpos = _frozen(recs["qpos"], tracked, env.bank.qpos[0, 0])
    lost = np.flatnonzero(~tracked)
    lost_at = (lost[0] + 1) * env.control_dt if lost.size else None
    log(f"rendering {len(steps)} frames ({rate:.4g} fps, camera {painter.camera_label}) to {out}")
    every = max(1, math.ceil(len(steps) / 10))
    with mp4_writer(out, rate) as writer:
        for i, t in enumerate(steps):
            writer.append_data(_draw_step(painter, env, recs, qpos[t], t, lost_at if not tracked[t] else None))
            if (i + 1) % every == 0 or i + 1 == len(steps):
                log(f"  {i + 1}/{len(steps)} frames ({100 * (i + 1) // len(steps)}%)")


def _draw_step(painter: GhostPainter, env, recs: dict, qpos: np.ndarray, t: int, lost_at: float | None) -> np.ndarray:
    """Control step ``t``: the body (``qpos``, frozen once lost), the reference and the caption."""
    bank = env.bank
    frame = (t + 1) * env.cfg.control_every  # the clip frame step t ends at
    kp = markers = None
    kp_mm = np.nan
    if bank.keypoints is not None and len(bank.keypoint_names):
        kp = np.where(bank.keypoint_valid[0, frame, :, None] > 0, bank.keypoints[0, frame], np.nan)
        if lost_at is None:  # the recorded markers and errors are NaN once lost
            markers, kp_mm = recs["markers"][t], _mean_mm(recs["keypoint_error"][t])
    text = _caption(
        frame / bank.fps,
        float(np.degrees(np.mean(np.abs(recs["joint_error"][t])))),
        _effector_errors(env.end_effectors, recs["ee_error"][t]),
        kp_mm,
        lost_at,
    )
    return painter.frame(
        qpos, bank.qpos[0, frame], keypoints=kp, markers=markers, lost=lost_at is not None, caption=text
    )


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("render", help="video of a trained controller on a clip, its reference as a ghost")
    p.add_argument("run", help="run directory written by `mimic train`")
    p.add_argument("--clip", required=True, metavar="NAME", help="the clip to roll out (a name inside the files)")
    p.add_argument("--clips", nargs="+", metavar="FILE", help="clip files (HDF5; default: the run's train_clips)")
    p.add_argument("--out", required=True, help="video to write (.mp4)")
    p.add_argument("--camera", help="a camera of the body model by name (default: a free camera following the body)")
    p.add_argument("--azimuth", type=float, help="free camera azimuth, degrees (default 135)")
    p.add_argument("--elevation", type=float, help="free camera elevation, degrees (default -20)")
    p.add_argument("--distance", type=float, help="free camera distance, metres (default: 1.5 times the body's size)")
    p.add_argument("--slowmo", type=float, default=1.0, help="play this many times slower than real time")
    p.add_argument("--width", type=int, default=640, help="frame width, pixels")
    p.add_argument("--height", type=int, default=480, help="frame height, pixels")
    p.add_argument(
        "--ghost-offset", type=float, nargs=3, default=(0.0, 0.0, 0.0), metavar=("X", "Y", "Z"),
        help="draw the reference ghost this far (metres) from the body instead of over it",
    )  # fmt: skip
    p.set_defaults(func=run)


def run(args) -> int:
    from mimic_mjx.data.clips import read_clip_files
    from mimic_mjx.presentation.render import require_renderer
    from mimic_mjx.training.rundir import stored_config

    require_renderer()  # first: no OpenGL must not cost a rollout
    paths = args.clips or list(stored_config(Path(args.run)).train_clips)
    if not paths:
        raise MimicError(f"{args.run} names no training clip files (train_clips); pass --clips FILE [FILE ...]")
    view = {k: getattr(args, k) for k in ("camera", "azimuth", "elevation", "distance", "slowmo", "width", "height")}
    result = render_rollout(
        args.run,
        read_clip_files(paths),
        args.clip,
        args.out,
        ghost_offset=tuple(args.ghost_offset),
        log=lambda m: print(m, file=sys.stderr, flush=True),
        **view,
    )
    print(f"wrote {result['path']}: {result['frames']} frames at {result['fps']:.4g} fps ({result['seconds']:.2f} s)")
    return 0
