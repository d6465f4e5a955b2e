"""``mimic register``: keypoints in, reference clips out, in one piece or streamed in resumable chunks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from mimic_mjx.errors import MimicError


def cmd_register(args) -> int:
    from mimic_mjx.bodies import get_body
    from mimic_mjx.data.clips import write_clips
    from mimic_mjx.data.keypoints import read_keypoints
    from mimic_mjx.registration.chunks import StreamConfig
    from mimic_mjx.registration.register import format_residuals, register, split_clip
    from mimic_mjx.registration.stac import StacConfig
    from mimic_mjx.training.trainer import stderr_log

    if args.render:  # first: a registration takes minutes, finding that nothing can render it seconds
        from mimic_mjx.presentation.render import require_renderer

        require_renderer()
    velocity = StacConfig().velocity_m_per_rad_s if args.velocity_prior is None else 1e-3 * args.velocity_prior
    if not 0 <= velocity < float("inf"):
        raise MimicError(f"--velocity-prior must be 0 (off) or more, got {args.velocity_prior}")
    lever = StacConfig().observable_lever_m if args.observable_lever is None else 1e-3 * args.observable_lever
    if not 0 <= lever < float("inf"):
        raise MimicError(f"--observable-lever must be 0 (off) or more, got {args.observable_lever}")
    margin = StacConfig().limit_margin_rad if args.limit_margin is None else math.radians(args.limit_margin)
    body = get_body(args.body)  # before reading: a wrong body file fails in a second, and it may name the unit
    units = args.units or body.keypoint_unit
    kp = read_keypoints(
        args.keypoints, format=args.format, units=units, fps=args.fps, names=args.names, skeleton=args.skeleton
    )
    if args.frames is not None and args.frames < kp.num_frames:
        kp = dataclasses.replace(kp, positions=kp.positions[: args.frames], confidence=kp.confidence[: args.frames])
    said = "" if args.units or not body.keypoint_unit else f", the unit of body {body.display_name}"
    stderr_log(
        f"read {kp.num_frames} frames of {kp.num_keypoints} keypoints from {args.keypoints} "
        f"({kp.input_units} -> m{said}, {kp.fps:g} Hz)"
    )
    cfg = StacConfig(
        rounds=args.rounds,
        lm_iterations=args.iterations,
        min_confidence=args.min_confidence,
        weight_by_confidence=args.weight_by_confidence,
        velocity_m_per_rad_s=velocity,
        observable_lever_m=lever,
        limit_margin_rad=margin,
    )
    scfg = StreamConfig(
        chunk_frames=args.chunk_frames or StreamConfig.chunk_frames,
        overlap_frames=args.overlap_frames,
        chunk_iterations=args.chunk_iterations,
        calibration_frames=args.calibration_frames,
        gap_s=args.gap_s,
    )
    if _streams(args, kp, scfg):
        return _register_streamed(args, kp, body, cfg, scfg)
    reg = register(kp, body.name, cfg, fit_scale=args.fit_scale, log=stderr_log)
    clips = split_clip(reg.clip, args.clip_length) if args.clip_length is not None else [reg.clip]
    write_clips(args.out, clips)
    print(format_residuals(reg.summary))
    print(f"wrote {len(clips)} clip(s) to {args.out}")
    if args.render:
        from mimic_mjx.presentation.render import render_keypoint_fit

        render_keypoint_fit(
            body.compile(),
            reg.result.qpos,
            kp.positions,
            reg.result.markers,
            args.render,
            kp.fps,
            max_frames=args.render_frames,
        )
        print(f"wrote {args.render}")
    return 0


def _streams(args, kp, scfg) -> bool:
    """Chunked when asked (--chunk-frames, --resume), when one piece would be long, or across long gaps."""
    from mimic_mjx.registration.chunks import find_segments

    if args.chunk_frames or args.resume or kp.num_frames > scfg.chunk_frames:
        return True
    empty = ~(np.isfinite(kp.positions).all(axis=-1) & (kp.confidence > args.min_confidence)).any(axis=1)
    return bool(empty.any()) and len(find_segments(empty, kp.fps, scfg.gap_s)[1]) > 0


def _register_streamed(args, kp, body, cfg, scfg) -> int:
    from mimic_mjx.data.clip_files import list_clips
    from mimic_mjx.data.clips import read_clips, write_clips
    from mimic_mjx.registration.register import format_residuals
    from mimic_mjx.registration.stream import register_stream
    from mimic_mjx.training.trainer import stderr_log

    if args.fit_scale:
        raise MimicError(
            "--fit-scale fits the body's size in one piece: run it on an excerpt (--frames), then register the "
            "whole recording chunked with the scaled body file"
        )

    opts = {"resume": args.resume, "clip_length": args.clip_length, "keep_parts": args.keep_parts}
    res = register_stream(kp, body.name, args.out, cfg, scfg, log=stderr_log, write=write_clips, **opts)
    print(format_residuals(res.summary))
    kept = f"; kept {res.kept} finished chunk(s), solved {res.solved}" if args.resume else ""
    print(f"wrote {res.clips} clip(s) from {res.summary['chunks']} chunk(s) to {args.out}{kept}")
    if args.render:
        from mimic_mjx.presentation.render import render_keypoint_fit
        from mimic_mjx.registration.register import markers_of

        first = list_clips(args.out)[0].name  # the first clip alone: the file may hold hours
        clip = read_clips(args.out, names=[first])[0]
        n = min(clip.num_frames, args.render_frames or clip.num_frames)
        model = body.compile()
        qpos = clip.qpos[:n].astype(np.float64)
        markers = markers_of(model, qpos, res.bodies, clip.marker_offsets.astype(np.float64))
        render_keypoint_fit(
            model, qpos, clip.keypoints[:n], markers, args.render, kp.fps, max_frames=args.render_frames
        )
        print(f"wrote {args.render}")
    return 0


def add_parser(sub, body_help: str) -> None:
    """``mimic register`` on the subcommands ``sub``; ``body_help``: what --body takes, said as everywhere."""
    from mimic_mjx.cli.types import cli_number
    from mimic_mjx.data.clips import FPS_RANGE
    from mimic_mjx.registration.chunks import StreamConfig

    _COUNT = cli_number(int, 1, what="a whole number, 1 or more")
    _FPS = cli_number(
        float, FPS_RANGE[0], FPS_RANGE[1], what=f"a frame rate from {FPS_RANGE[0]:g} to {FPS_RANGE[1]:g} Hz"
    )
    d = StreamConfig()
    r = sub.add_parser("register", help="fit a body to 3D keypoints (STAC) and write reference clips")
    r.add_argument("--body", required=True, help=body_help)
    r.add_argument(
        "--keypoints",
        required=True,
        help="DANNCE .mat, NWB (ndx-pose), SLEAP .h5/.slp, DeepLabCut/Anipose .csv, a mouse-arm registration .h5, "
        "or a worm centreline (Tierpsy .hdf5, .npy)",
    )
    r.add_argument("--format", help="keypoint file format, if the extension is ambiguous")
    r.add_argument(
        "--units",
        choices=["m", "cm", "mm", "um"],
        help="length unit of the file (default: the body file's keypoint_unit, else the file's metadata)",
    )
    r.add_argument("--fps", type=_FPS, help="frame rate in Hz (overrides its metadata)")
    r.add_argument("--names", help="comma-separated keypoint names, in the file's order")
    r.add_argument("--skeleton", help="skeleton .mat with joint_names (and joints_idx)")
    r.add_argument("--frames", type=_COUNT, help="register only the first N frames of the recording")
    r.add_argument("--out", required=True, help="clip file to write (HDF5)")
    r.add_argument(
        "--clip-length",
        type=cli_number(int, 2, what="a whole number of frames, 2 or more"),
        help="split into clips of this many frames",
    )
    r.add_argument("--rounds", type=_COUNT, default=3, help="pose/offset alternations")
    r.add_argument("--iterations", type=_COUNT, default=25, help="Levenberg-Marquardt steps per pose round")
    r.add_argument(
        "--min-confidence",
        type=cli_number(float, 0, 1, what="a confidence from 0 to 1"),
        default=0.0,
        help="ignore keypoints at or below this confidence",
    )
    r.add_argument("--weight-by-confidence", action="store_true", help="weight keypoints by their confidence")
    r.add_argument("--fit-scale", action="store_true", help="also fit one global body scale factor")
    r.add_argument(
        "--velocity-prior",
        type=float,
        metavar="MM_PER_RAD_S",
        help="keypoint error (mm) that a joint speed of 1 rad/s costs in the fit, so that joints the keypoints "
        "cannot see do not swing; 0 turns it off (default 0.01: 100 rad/s costs like 1 mm; docs/registration.md)",
    )
    r.add_argument(
        "--observable-lever",
        type=float,
        metavar="MM",
        help="a joint that moves the keypoints less than this per radian at a frame is poorly seen there, and "
        "its speed prior grows accordingly (up to 50x); 0: the same prior everywhere (default 5)",
    )
    r.add_argument(
        "--limit-margin",
        type=cli_number(float, 0, 90, what="an angle in degrees from 0 to 90"),
        metavar="DEG",
        help="keep hinges this far inside their range limits (at most a tenth of each range), so that "
        "references do not ride a limit the simulated joint presses on; 0: the limits themselves (default 2.9)",
    )
    r.add_argument("--render", help="also write an MP4 of the fit (headless)")
    r.add_argument("--render-frames", type=_COUNT, help="render at most this many frames")
    r.add_argument(
        "--chunk-frames",
        type=cli_number(int, 2, what="a whole number of frames, 2 or more"),
        help=f"register in chunks of this many frames, written as they finish (default: {d.chunk_frames}, used "
        f"for recordings longer than that or with gaps)",
    )
    r.add_argument(
        "--overlap-frames",
        type=cli_number(int, 0, what="a whole number of frames, 0 or more"),
        default=d.overlap_frames,
        help=f"context frames solved past each end of a chunk and dropped (default {d.overlap_frames})",
    )
    r.add_argument(
        "--chunk-iterations",
        type=_COUNT,
        default=d.chunk_iterations,
        help=f"Levenberg-Marquardt steps per chunk once the marker offsets are fitted (default {d.chunk_iterations})",
    )
    r.add_argument(
        "--calibration-frames",
        type=_COUNT,
        default=d.calibration_frames,
        help=f"frames, spread over the recording, the marker offsets are fitted on (default {d.calibration_frames})",
    )
    r.add_argument(
        "--gap-s",
        type=cli_number(float, 0, what="a positive number of seconds"),
        default=d.gap_s,
        metavar="SECONDS",
        help=f"split the recording where no keypoint is seen for longer than this (default {d.gap_s:g})",
    )
    r.add_argument(
        "--resume",
        action="store_true",
        help="continue a chunked registration that was stopped (OUT.parts/ holds its finished chunks)",
    )
    r.add_argument(
        "--keep-parts",
        action="store_true",
        help="keep OUT.parts/ (the finished chunks) once the clip file is written; by default it is removed",
    )
    r.set_defaults(func=cmd_register)
