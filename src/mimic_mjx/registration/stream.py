"""Streamed, resumable registration of recordings of any length (``mimic register`` on long recordings).

1. Gaps: runs of frames with no keypoint longer than ``gap_s`` split the
   recording into segments, registered as separate clips.
2. Calibration, once: the marker offsets are fitted by full STAC (pose and
   offset rounds) on a sample of the recording, blocks of consecutive frames
   spread over it.
3. Poses, chunk by chunk, offsets held: one pose round per chunk. A chunk is
   solved with ``overlap_frames`` of context past its end (dropped), and
   continues from the previous chunk's last pose, held as frame 0's temporal
   neighbour, so that the smoothness and speed priors see the border.
4. Each finished chunk is written atomically to ``<out>.parts/``
   (registration.chunks); a killed run resumes from the chunks there; the
   clip file is assembled from them at the end.

Devices: the remaining chunks are cut into one contiguous run per local
device (and per process under the multi-host runtime); each step solves one
chunk of every run at once, sharded over the devices. Only the first chunk of
a run starts without a finished neighbour; it takes ``overlap_frames`` of
context before its start instead.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mimic_mjx.bodies.layout import reference_velocities
from mimic_mjx.data.clips import Clip, read_clips, write_clips
from mimic_mjx.data.keypoints import Keypoints
from mimic_mjx.errors import KeypointError, OutputError
from mimic_mjx.registration.chunks import (
    DEFAULT_STREAM,
    Chunk,
    PartsFolder,
    StreamConfig,
    calibration_windows,
    check_clip_length,
    data_digest,
    describe_ranges,
    differing,
    find_segments,
    plan_chunks,
    settings_hash,
)
from mimic_mjx.registration.config import DEFAULT_STAC, StacConfig
from mimic_mjx.registration.stac import StacSolver


def _windows(solver: StacSolver, kp, w, spans, befores, length, offsets):
    """Stack stretches of frames (padded to ``length``) with their initial poses for one batched solve."""
    C, K = len(spans), kp.shape[1]
    q = np.zeros((C, length, solver.model.nq))
    kpw, sw = np.zeros((C, length, K, 3)), np.zeros((C, length, K))
    qb, hb, nv = np.zeros((C, solver.model.nq)), np.zeros(C, np.float32), np.zeros(C, np.int32)
    for i, ((a, b), before) in enumerate(zip(spans, befores, strict=True)):
        n = b - a
        try:
            qi = solver.align_root(kp[a:b], w[a:b], offsets)
        except KeypointError:  # no frame here sees 3 trunk keypoints: start from the border pose
            if before is None:
                raise
            qi = np.tile(before, (n, 1))
        # Joints start neutral, not where the previous chunk ended: a chunk spans seconds, and the
        # previous pose is no better a start for its far end; the previous pose is held as frame 0's
        # neighbour instead, which is what keeps the border continuous.
        if before is not None:
            qb[i], hb[i] = before, 1.0
        q[i, :n], q[i, n:] = qi, qi[-1]
        kpw[i, :n], sw[i, :n] = np.nan_to_num(kp[a:b]), np.sqrt(w[a:b])
        nv[i] = n
    return q, kpw, sw, qb, hb, nv


class _BatchSolver:
    """One pose round on C stretches at once (vmapped), the stretch axis sharded over the local devices."""

    def __init__(self, solver: StacSolver, devices):
        self.solver, self.devices = solver, list(devices)
        fn = jax.vmap(solver._pose_round_impl, in_axes=(0, 0, 0, None, None, 0, 0, 0))
        if len(self.devices) > 1:
            from jax.sharding import Mesh, NamedSharding, PartitionSpec

            mesh = Mesh(np.array(self.devices), ("chunks",))
            split, whole = NamedSharding(mesh, PartitionSpec("chunks")), NamedSharding(mesh, PartitionSpec())
            fn = jax.jit(fn, in_shardings=(split, split, split, whole, whole, split, split, split))
        else:
            fn = jax.jit(fn)
        self.fn = fn

    def __call__(self, q, kp, sw, offsets, fps, qb, hb, nv):
        f32 = lambda a: jnp.asarray(a, jnp.float32)
        out, cost = self.fn(f32(q), f32(kp), f32(sw), f32(offsets), jnp.float32(fps), f32(qb), f32(hb), jnp.asarray(nv))
        return np.asarray(out, np.float64), np.asarray(cost)


def calibrate(solver: StacSolver, kp, w, fps, windows, log) -> tuple[np.ndarray, float]:
    """Marker offsets by STAC's alternation on the sample ``windows``; also the sample's median residual."""
    batch = _BatchSolver(solver, jax.local_devices()[:1])
    length = max(b - a for a, b in windows)
    idx = np.concatenate([np.arange(a, b) for a, b in windows])
    offsets = solver.initial_offsets.copy()
    q, kpw, sw, qb, hb, nv = _windows(solver, kp, w, windows, [None] * len(windows), length, offsets)
    t0 = time.perf_counter()
    for r in range(solver.cfg.rounds + 1):
        q, _ = batch(q, kpw, sw, offsets, fps, qb, hb, nv)
        flat = np.concatenate([q[i, : b - a] for i, (a, b) in enumerate(windows)])
        med = solver._median_residual(flat, kp[idx], w[idx], offsets)
        log(
            f"calibration round {r + 1}/{solver.cfg.rounds + 1} on {len(idx)} frames: median residual "
            f"{1e3 * med:.2f} mm ({time.perf_counter() - t0:.0f} s)"
        )
        if r < solver.cfg.rounds:
            offsets = solver.fit_offsets(flat, kp[idx], w[idx])
    return offsets, med


def _sync(what: str) -> None:
    """Wait for every process of a multi-host run (nothing with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"mimic register: {what}")


def _runs(todo: list[Chunk], n: int) -> list[list[Chunk]]:
    """``todo`` cut into ``n`` contiguous runs of near-equal length (some empty when fewer chunks)."""
    cuts = np.linspace(0, len(todo), n + 1).round().astype(int)
    return [todo[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _bar(done: int, total: int, width: int = 24) -> str:
    k = int(width * done / max(total, 1))
    return "[" + "#" * k + "." * (width - k) + "]"


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@dataclasses.dataclass
class StreamResult:
    out: Path  # the clip file (written by process 0)
    clips: int  # clips written to it
    summary: dict
    kept: int  # chunks found finished when the run started
    bodies: list[str]  # the body each keypoint's marker is attached to
    solved: int  # chunks solved by this run


def register_stream(
    kp: Keypoints,
    body_name: str,
    out: str | Path,
    cfg: StacConfig = DEFAULT_STAC,
    scfg: StreamConfig = DEFAULT_STREAM,
    *,
    resume: bool = False,
    clip_length: int | None = None,
    keep_parts: bool = False,
    log: Callable[[str], None] = print,
    write: Callable[[Path, Sequence[Clip]], None] = write_clips,
) -> StreamResult:
    """Register ``kp`` chunk by chunk into the clip file ``out`` (one clip per gap-free segment).

    ``resume``: continue the registration that ``<out>.parts/`` holds (its
    settings must match; differing ones are named). Without it an existing
    parts folder is an error rather than hours of work silently discarded.
    ``clip_length``: cut each segment into clips of this many frames (a
    shorter tail, or a shorter segment, is dropped and said). ``keep_parts``:
    keep ``<out>.parts/`` once the clip file is written (it holds the same
    frames again).
    """
    from mimic_mjx.registration.register import prepare
    from mimic_mjx.registration.summary import SegmentClips, clip_stem, summarise

    if scfg.chunk_frames < 2 or scfg.overlap_frames < 0 or not scfg.gap_s > 0:
        raise KeypointError(
            f"chunk frames must be 2 or more (got {scfg.chunk_frames}), overlap 0 or more "
            f"(got {scfg.overlap_frames}), the gap threshold positive (got {scfg.gap_s} s)"
        )
    if scfg.chunk_iterations < 1:
        raise KeypointError(f"chunk iterations must be 1 or more, got {scfg.chunk_iterations}")
    p = prepare(kp, body_name, cfg, log)
    kp, fps, w = p.kp, float(p.kp.fps), p.weights
    pos = kp.positions
    segments, gaps = find_segments(~(w > 0).any(axis=1), fps, scfg.gap_s)
    for a, b in gaps:
        log(
            f"gap: no keypoints in frames {a}-{b} ({a / fps:.2f}-{b / fps:.2f} s, {(b - a) / fps:.2f} s > "
            f"{scfg.gap_s:g} s): the recording is split there"
        )
    if len(segments) > 1:
        log(f"{len(segments)} segments, registered as separate clips: " + ", ".join(f"{a}-{b}" for a, b in segments))
    chunks = plan_chunks(segments, scfg.chunk_frames)
    check_clip_length(segments, clip_length, fps, log)
    settings = {
        "body": p.body.name,
        "body_hash": p.body.body_hash(),
        "keypoints": list(p.names),
        "frames": int(kp.num_frames),
        "fps": fps,
        "data": data_digest(pos, w),
        **{f"stac.{k}": v for k, v in dataclasses.asdict(cfg).items()},
        **{f"stream.{k}": v for k, v in dataclasses.asdict(scfg).items()},
    }
    parts = PartsFolder(out)
    t_begin = time.perf_counter()
    solver = StacSolver(p.model, p.bodies, p.offsets0, p.trunk, p.cfg, log=log)
    existed = parts.exists()
    _sync("parts folder checked")  # several processes: none may see the manifest another just wrote
    if existed:
        if not resume:
            raise OutputError(
                f"{parts.path} holds an unfinished registration; pass --resume to continue it, or delete that "
                f"folder to start afresh"
            )
        manifest = parts.read_manifest()
        if manifest.get("settings_hash") != settings_hash(settings):
            raise KeypointError(
                f"cannot resume {out}: it was started with other settings ("
                + "; ".join(differing(manifest.get("settings", {}), settings))
                + "); rerun with the same settings, or delete "
                + f"{parts.path} to start afresh"
            )
        offsets = np.asarray(manifest["offsets"], np.float64)
        log(f"resuming {out}: marker offsets from {parts.manifest_path} (calibrated before)")
    else:
        if resume:
            log(f"--resume: {parts.path} does not exist; starting afresh")
        windows = calibration_windows(segments, scfg.calibration_frames, scfg.calibration_block)
        # Every process calibrates the same sample to the same offsets; process 0 records them.
        offsets, _ = calibrate(solver, pos, w, fps, windows, log)
        if jax.process_index() == 0:
            parts.write_manifest(
                {
                    "settings": settings,
                    "settings_hash": settings_hash(settings),
                    "offsets": offsets.tolist(),
                    "segments": segments,
                    "chunks": [[c.segment, c.start, c.end] for c in chunks],
                }
            )
    _sync("manifest written")
    finished = parts.finished()
    # Every process must list the folder before any writes a chunk: a process that lists late sees
    # chunks written meanwhile as kept, cuts a different share of the rest, and a chunk goes unsolved.
    _sync("chunks listed")
    kept = [c for c in chunks if (c.segment, c.start, c.end) in finished]
    todo = [c for c in chunks if (c.segment, c.start, c.end) not in finished]
    if resume and kept:
        log(
            f"kept {len(kept)} of {len(chunks)} finished chunks from {parts.path}: frames "
            f"{describe_ranges(kept, fps)}; {len(todo)} to go"
        )
    t_cal = time.perf_counter() - t_begin
    chunk_solver = StacSolver(
        p.model, p.bodies, p.offsets0, p.trunk, dataclasses.replace(p.cfg, lm_iterations=scfg.chunk_iterations)
    )
    timing = _solve_chunks(chunk_solver, pos, w, fps, offsets, chunks, todo, parts, scfg, p, log, write)
    timing["calibration_s"] = t_cal
    _sync("chunks written")  # every process's chunks are on disk before the clips are assembled
    files = [[parts.chunk_path(c) for c in chunks if c.segment == s] for s in range(len(segments))]
    frames = [b - a for a, b in segments]
    clips = SegmentClips(files, frames, solver.layout, fps, clip_stem(kp.source), clip_length)
    summary = summarise(clips, p, len(chunks))
    summary.update(timing)
    _sync("summaries read")  # no process reads a chunk file after this: process 0 may remove them
    if jax.process_index() == 0:
        write(Path(out), clips)
        if not keep_parts:
            shutil.rmtree(parts.path, ignore_errors=True)
            log(f"wrote {out}; removed the chunks in {parts.path} (keep them with --keep-parts)")
    return StreamResult(
        out=Path(out), clips=len(clips), summary=summary, kept=len(kept), solved=len(todo), bodies=list(p.bodies)
    )


def _solve_chunks(solver, pos, w, fps, offsets, chunks, todo, parts, scfg, p, log, write) -> dict:
    """Solve and write the chunks ``todo``, one per device run at a time, with a progress line per step.

    Returns the first step's seconds (it compiles) and the frames per second after it (NaN with one step).
    """
    if not todo:
        return {"first_step_s": 0.0, "warm_frames_per_s": float("nan"), "devices": len(jax.local_devices())}
    devices = jax.local_devices()
    D = len(devices)
    nproc, rank = jax.process_count(), jax.process_index()
    mine = _runs(todo, nproc)[rank]
    runs = _runs(mine, D)
    batch = _BatchSolver(solver, devices)
    ov = scfg.overlap_frames
    length = scfg.chunk_frames + 2 * ov
    last_pose = {}  # chunk index -> its last pose, for the chunk after it
    index = {c: i for i, c in enumerate(chunks)}
    pending = set(todo)
    total_frames = sum(c.end - c.start for c in mine)
    done_frames, t_start, t_warm, warm_frames = 0, time.perf_counter(), None, 0
    steps = max(len(r) for r in runs)
    for j in range(steps):
        step = [r[j] for r in runs if j < len(r)]
        spans, befores = [], []
        for c in step:
            i = index[c]
            prev = chunks[i - 1] if i > 0 and chunks[i - 1].segment == c.segment else None
            before = last_pose.get(i - 1)
            # Only a chunk finished before this run: one that another process is solving now may or may
            # not be on disk yet, and the result must not depend on which.
            if before is None and prev is not None and prev not in pending:
                before = read_clips(parts.chunk_path(prev))[0].qpos[-1].astype(np.float64)
            # Without the previous chunk's pose, context frames before the start stand in for it.
            a = c.start if before is not None else max(c.seg_start, c.start - ov)
            spans.append((a, min(c.seg_end, a + length, c.end + ov)))
            befores.append(before)
        # Pad to one chunk per device (repeats of the first, discarded): one compiled shape.
        pad = D - len(step)
        q, kpw, sw, qb, hb, nv = _windows(
            solver, pos, w, spans + spans[:1] * pad, befores + befores[:1] * pad, length, offsets
        )
        q, _ = batch(q, kpw, sw, offsets, fps, qb, hb, nv)
        # Body frames of the whole padded batch in one jitted call: one shape, one compilation,
        # whatever the chunks' lengths.
        frames = [
            np.asarray(a).reshape(q.shape[:2] + a.shape[1:]) for a in solver._kinematics(q.reshape(-1, q.shape[-1]))
        ]
        for k, c in enumerate(step):
            a = spans[k][0]
            sl = slice(c.start - a, c.end - a)
            qc = q[k, sl]
            _write_chunk(solver, c, qc, [f[k, sl] for f in frames], pos, w, offsets, fps, p, parts, write)
            last_pose[index[c]] = qc[-1]
            done_frames += c.end - c.start
        now = time.perf_counter()
        if t_warm is None:  # the first step compiles: the rate and time left count from after it
            t_warm, warm_frames, first = now, done_frames, now - t_start
            rate_text = f"first step {first:.0f} s (includes compilation)"
        else:
            rate = (done_frames - warm_frames) / (now - t_warm)
            rate_text = f"{rate:.0f} frames/s, {_hms((total_frames - done_frames) / rate)} left"
        log(
            f"{_bar(done_frames, total_frames)} {done_frames}/{total_frames} frames, chunk(s) "
            + ", ".join(f"{c.start}-{c.end}" for c in step)
            + f" written; {rate_text}"
        )
    warm = (done_frames - warm_frames) / (now - t_warm) if done_frames > warm_frames else float("nan")
    return {"first_step_s": first, "warm_frames_per_s": warm, "devices": D}


def _write_chunk(solver, c: Chunk, qc, frames, pos, w, offsets, fps, p, parts: PartsFolder, write) -> None:
    """One finished chunk as a clip file of its own (atomic: a kill or a full disk leaves none or all).

    ``frames``: the chunk's body positions, rotation matrices and quaternions.
    """
    sl = slice(c.start, c.end)
    xpos, xmat, xquat = frames
    b = solver.body_ids
    markers = xpos[:, b] + np.einsum("tkij,kj->tki", xmat[:, b], offsets)
    residuals = np.where(w[sl] > 0, np.linalg.norm(markers - pos[sl], axis=-1), np.nan)
    model = solver.model
    from mimic_mjx.bodies.layout import joint_qpos_dims

    clip = Clip(
        name=Path(c.filename).stem,
        body=p.body.name,
        fps=fps,
        joint_names=tuple(model.joint(j).name for j in range(model.njnt)),
        joint_qpos_dims=joint_qpos_dims(model),
        qpos=qc.astype(np.float32),
        qvel=reference_velocities(qc, fps, solver.layout).astype(np.float32),
        body_names=tuple(model.body(b).name for b in range(model.nbody)),
        xpos=xpos.astype(np.float32),
        xquat=xquat.astype(np.float32),
        keypoint_names=tuple(p.names),
        keypoints=pos[sl].astype(np.float32),
        marker_offsets=np.asarray(offsets, np.float32),
        keypoint_residuals=residuals.astype(np.float32),
        body_hash=p.body.body_hash(),
    ).validate()
    try:
        write(parts.chunk_path(c), [clip])
    except OSError as exc:
        raise OutputError(
            f"could not write chunk {c.start}-{c.end} ({' '.join(str(exc).split())}); the finished chunks stay in "
            f"{parts.path}: free space and rerun with --resume to continue from them"
        ) from None
