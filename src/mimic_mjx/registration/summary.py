"""Chunks of a streamed registration put together: one clip per segment, and the residual summary."""

from __future__ import annotations

import dataclasses

import numpy as np

from mimic_mjx.bodies.layout import JointLayout, reference_velocities
from mimic_mjx.data.clips import Clip
from mimic_mjx.registration.chunks import Chunk


def clip_stem(source: str) -> str:
    return source.rsplit("/", 1)[-1].rsplit(".", 1)[0] or "registered"


def assemble(
    pieces: list[Clip],
    chunks: list[Chunk],
    segments: list[tuple[int, int]],
    layout: JointLayout,
    fps: float,
    source: str,
) -> list[Clip]:
    """Concatenate each segment's chunk clips; velocities are taken again over the whole segment (no border)."""
    stem = clip_stem(source)
    out = []
    for s in range(len(segments)):
        mine = [p for p, c in zip(pieces, chunks, strict=True) if c.segment == s]
        cat = lambda key, m=mine: np.concatenate([getattr(p, key) for p in m])
        qpos = cat("qpos")
        name = stem if len(segments) == 1 else f"{stem}-seg{s:02d}"
        out.append(
            dataclasses.replace(
                mine[0],
                name=name,
                qpos=qpos,
                qvel=reference_velocities(qpos.astype(np.float64), fps, layout).astype(np.float32),
                xpos=cat("xpos"),
                xquat=cat("xquat"),
                keypoints=cat("keypoints"),
                keypoint_residuals=cat("keypoint_residuals"),
            ).validate()
        )
    return out


def summarise(clips: list[Clip], prepared, chunks: int) -> dict:
    """The figures `register` reports, over every segment of a streamed registration."""
    lay = JointLayout.from_model(prepared.model)
    res_mm = 1e3 * np.concatenate([c.keypoint_residuals for c in clips]).astype(np.float64)
    qh = np.concatenate([c.qpos for c in clips])[:, lay.hinge_qpos]
    names = list(prepared.names)
    col = lambda i, f: float(f(res_mm[:, i])) if np.isfinite(res_mm[:, i]).any() else float("nan")
    return {
        "body": prepared.body.name,
        "frames": int(sum(c.num_frames for c in clips)),
        "segments": len(clips),
        "chunks": chunks,
        "keypoints": names,
        "fps": float(clips[0].fps),
        "median_residual_mm": float(np.nanmedian(res_mm)),
        "p95_residual_mm": float(np.nanpercentile(res_mm, 95)),
        "per_keypoint_median_mm": {n: col(i, np.nanmedian) for i, n in enumerate(names)},
        "per_keypoint_p95_mm": {n: col(i, lambda x: np.nanpercentile(x, 95)) for i, n in enumerate(names)},
        # The layout of the model, without registration's margin: a violation is outside the real limits.
        "joint_limit_violations": int(((qh < lay.lo - 1e-6) | (qh > lay.hi + 1e-6)).sum()),
        "body_scale": 1.0,
    }
