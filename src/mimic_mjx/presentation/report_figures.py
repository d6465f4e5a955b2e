"""Figures and embedded media of ``mimic report``: PNG data URIs of training curves and error distributions,
and videos as data URIs that play in any browser (H.264 MP4 plus a VP9 WebM fallback)."""

from __future__ import annotations

import base64
import io
import math
import re
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np

from mimic_mjx.analysis.rollout_format import RolloutFileError, open_rollouts
from mimic_mjx.errors import MimicError
from mimic_mjx.files import require_regular_file

#: Training-curve panels: title and which metric keys (a key ending in "/" takes every key under it).
CURVE_GROUPS = (
    ("reward", ("reward/",)),
    ("tracking errors", ("error/",)),
    ("task", ("task/", "episode/success")),  # tasks without references (mimic transfer)
    ("KL", ("loss/latent_kl", "policy/approx_kl", "policy/kl_weight")),
    ("losses", ("loss/policy", "loss/value", "policy/entropy")),
    ("episodes", ("episode/length", "episode/terminated")),
    ("throughput", ("train/steps_per_s",)),
)
#: Error datasets of a rollout dataset (docs/rollout-format.md) with their label and scale to the unit shown.
ERRORS = (
    ("joint_error", "joint error (deg)", 180.0 / math.pi),
    ("ee_error", "end-effector error (mm)", 1e3),
    ("body_error", "body error (mm)", 1e3),
    ("keypoint_error", "keypoint error (mm)", 1e3),
)
MAX_BOX_CLIPS = 40
VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".ogv": "video/ogg"}
# Codecs parameter of <source type>, so a browser without H.264 skips to the WebM without fetching.
_H264_CODECS = {"baseline": "avc1.42E01E", "constrained": "avc1.42E01E", "main": "avc1.4D401E", "high": "avc1.640028"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def fig_uri(fig) -> str:
    """The figure as a PNG data URI (the figure is closed)."""
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return data_uri(buf.getvalue(), "image/png")


def image_uri(path: Path) -> str:
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
    data = require_regular_file(path, MimicError, "image").read_bytes()  # a named pipe would block forever
    return data_uri(data, mime.get(Path(path).suffix.lower(), "application/octet-stream"))


def _series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [r for r in records if key in r]
    x = np.array([r.get("env_steps", r.get("update", i)) or 0 for i, r in enumerate(rows)], float)
    y = np.array([np.nan if r[key] is None else float(r[key]) for r in rows], float)
    return x, y


def training_figures(records: list[dict]) -> list[tuple[str, str]]:
    """One figure per group of :data:`CURVE_GROUPS` that the metrics hold: (title, PNG data URI)."""
    plt = _pyplot()
    keys = sorted({k for r in records for k, v in r.items() if isinstance(v, (int, float)) or v is None})
    out = []
    for title, patterns in CURVE_GROUPS:
        chosen = [k for p in patterns for k in keys if (k.startswith(p) if p.endswith("/") else k == p)]
        chosen = [k for k in dict.fromkeys(chosen) if np.isfinite(_series(records, k)[1]).any()]
        # Errors that are always zero do not apply to this body (a fixed root, no keypoints).
        chosen = [k for k in chosen if not k.startswith("error/") or np.nanmax(np.abs(_series(records, k)[1])) > 0]
        if not chosen:
            continue
        # Reward: the total, and its terms together; the other groups: one panel per metric (units differ).
        panels = [(k, [k]) for k in chosen]
        if title == "reward":
            terms = [k for k in chosen if k != "reward/total"]
            panels = [(k, [k]) for k in chosen if k == "reward/total"] + ([("reward terms", terms)] if terms else [])
        cols = min(len(panels), 3)
        fig, axes = plt.subplots(-(-len(panels) // cols), cols, figsize=(4.2 * cols, 2.8 * -(-len(panels) // cols)))
        axes = np.atleast_1d(axes).ravel()
        for ax, (name, ks) in zip(axes, panels, strict=False):
            for key in ks:
                x, y = _series(records, key)
                ax.plot(x, y, "o-" if len(x) < 30 else "-", ms=3, lw=1.2, label=key.split("/", 1)[-1])
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("environment steps", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if len(ks) > 1:
                ax.legend(fontsize=7)
        for ax in axes[len(panels) :]:
            ax.axis("off")
        fig.tight_layout()
        out.append((title, fig_uri(fig)))
    return out


def read_errors(rollouts_h5: Path) -> dict[str, dict[str, np.ndarray]]:
    """Per error kind, per clip: the finite errors (in the unit shown) over the tracked steps of every seed."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with open_rollouts(rollouts_h5, "rerun `mimic evaluate` to write it in the layout of docs/rollout-format.md") as f:
        for name, g in f["clips"].items():
            tracked = np.asarray(g["tracked"][()], bool)  # (S, T), the leading axes of every error
            for key, _, scale in ERRORS:
                if key not in g:
                    continue
                v = np.asarray(g[key][()], float)
                if v.shape[:2] != tracked.shape:
                    raise RolloutFileError(
                        f"{rollouts_h5}: clip '{name}': '{key}' has shape {v.shape}, not (S, T) = {tracked.shape} "
                        "as 'tracked'; rerun `mimic evaluate`"
                    )
                v = np.abs(scale * v[tracked]).ravel()
                v = v[np.isfinite(v)]
                if v.size:
                    out.setdefault(key, {})[name] = v
    return out


def error_figures(errors: dict[str, dict[str, np.ndarray]]) -> list[tuple[str, str]]:
    """Histograms of each error pooled over clips, and box plots per clip."""
    plt = _pyplot()
    kinds = [(k, label) for k, label, _ in ERRORS if k in errors]
    if not kinds:
        return []
    out = []
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.0), squeeze=False)
    for ax, (k, label) in zip(axes.flat, kinds, strict=True):
        v = np.concatenate(list(errors[k].values()))
        ax.hist(v, bins=min(50, max(5, int(np.sqrt(v.size)))), color="C0", alpha=0.85)
        ax.axvline(np.median(v), color="C1", lw=1, label=f"median {np.median(v):.3g}")
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel("count (steps x elements)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.suptitle("error distributions over tracked steps, all clips", fontsize=10)
    fig.tight_layout()
    out.append(("histograms", fig_uri(fig)))

    clips = sorted({c for k, _ in kinds for c in errors[k]})[:MAX_BOX_CLIPS]
    wide = len(clips) <= 8  # few clips: the kinds side by side; many: one row each
    size = (4.2 * len(kinds), 3.4) if wide else (max(6.0, 0.35 * len(clips) + 2), 2.2 * len(kinds) + 1)
    fig, axes = plt.subplots(1 if wide else len(kinds), len(kinds) if wide else 1, figsize=size, squeeze=False)
    for ax, (k, label) in zip(axes.flat, kinds, strict=True):
        ax.boxplot([errors[k].get(c, np.array([np.nan])) for c in clips], showfliers=False)
        ax.set_ylabel(label, fontsize=8)
        last = wide or ax is axes.flat[-1]
        ax.set_xticks(np.arange(1, len(clips) + 1), clips if last else [""] * len(clips), rotation=60, ha="right")
        ax.tick_params(labelsize=7)
    fig.suptitle("errors per clip (boxes: quartiles, whiskers: 1.5 IQR)", fontsize=10)
    fig.tight_layout()
    out.append(("per clip", fig_uri(fig)))
    return out


def _ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or no binary for this platform
        return None


def _run(cmd: list[str], text: bool = False) -> subprocess.CompletedProcess:
    with warnings.catch_warnings():
        # JAX warns at every fork; subprocess execs ffmpeg straight away, which is safe.
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        return subprocess.run(cmd, capture_output=True, text=text, check=False)


def _video_codec(ffmpeg: str, path: Path) -> tuple[str, str]:
    """(codec, profile) of the first video stream, as ffmpeg names them; ("", "") if unknown."""
    r = _run([ffmpeg, "-hide_banner", "-i", str(path)], text=True)
    m = re.search(r"Video: (\w+)(?: \(([^)]*)\))?", r.stderr)
    if not m:
        if "Invalid data" in r.stderr or "No such file" in r.stderr or "moov atom not found" in r.stderr:
            raise MimicError(f"{path}: not a readable video file; pass an MP4 written by `mimic render`")
        return "", ""
    return m.group(1), (m.group(2) or "").lower()


def _to_webm(ffmpeg: str, path: Path) -> bytes | None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "video.webm"
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(path), "-an", "-c:v", "libvpx-vp9"]
        cmd += ["-pix_fmt", "yuv420p", "-b:v", "0", "-crf", "34", "-deadline", "realtime", "-cpu-used", "8"]
        r = _run([*cmd, "-threads", "2", str(out)])
        return out.read_bytes() if r.returncode == 0 and out.is_file() and out.stat().st_size else None


def video_sources(path: str | Path) -> tuple[list[tuple[str, str]], str]:
    """``<source>`` (type, data URI) pairs for a video file, and a note for the reader.

    An H.264 MP4 is embedded as it is and, where ffmpeg (imageio-ffmpeg) is available, also as VP9 WebM:
    browsers without H.264 (e.g. Chromium builds without proprietary codecs) play the WebM.
    """
    path = Path(path)
    if not path.is_file():
        raise MimicError(f"{path}: no such video file; make one with `mimic render`")
    ffmpeg = _ffmpeg()
    codec, profile = _video_codec(ffmpeg, path) if ffmpeg else ("", "")
    mime = VIDEO_TYPES.get(path.suffix.lower())
    sources = []
    if mime == "video/mp4" and codec == "h264":
        mime += f'; codecs="{_H264_CODECS.get(profile.split()[0] if profile else "high", "avc1.640028")}"'
    if mime and (codec in ("", "h264", "vp8", "vp9", "av1", "theora") or ffmpeg is None):
        sources.append((mime, data_uri(path.read_bytes(), mime.split(";")[0])))
    if ffmpeg and codec not in ("vp8", "vp9"):
        webm = _to_webm(ffmpeg, path)
        if webm:
            sources.append(('video/webm; codecs="vp9"', data_uri(webm, "video/webm")))
    if not sources:
        raise MimicError(f"{path}: cannot embed this video (codec {codec or 'unknown'}); pass an MP4 or WebM")
    note = "" if ffmpeg else "H.264 only (imageio-ffmpeg not installed): browsers without H.264 cannot play it"
    return sources, note
