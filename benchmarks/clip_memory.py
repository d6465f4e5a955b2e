"""Host memory of training and evaluation setup with many clips (docs/benchmarks.md).

For N generated 5-s forelimb reaches (200 Hz, 1,000 frames each): the clip
file's size on disk, and the process's resident memory (RSS) over its start
after each stage of a new training run's setup (open or read the clips, bind
them and build the environment, write the run's copy train_clips.h5, drop the
clips: what stays while training) and at its peak. Each N runs in a fresh
process so one N does not inherit another's heap. Device arrays on a CPU share
the bank's memory; their bytes are reported, not added.

    python benchmarks/clip_memory.py --clips 10 100 1000 [--mixed]

``--mixed``: every tenth clip is ten times longer, as the segments of a
recording split at tracking gaps are; a bank padded to the longest clip
would hold several times the frames on disk.

Prints one line per N and stage; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def _rss_mb(field: str = "VmRSS") -> float:
    """Resident memory now (VmRSS) or at its peak so far (VmHWM), MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _measure(n: int, folder: Path, eager: bool) -> dict:
    """Run in a fresh process: the stages' RSS for the file of ``n`` clips."""
    import gc

    import jax.numpy as jnp

    import mimic_mjx
    from mimic_mjx.config.loading import load
    from mimic_mjx.data.clip_files import store_clips
    from mimic_mjx.data.clips import read_clips
    from mimic_mjx.training.experiment import build_env

    path = folder / f"clips{n}.h5"
    jnp.zeros(1).block_until_ready()  # the runtime's own memory is not the clips'
    cfg = load(Path(mimic_mjx.__file__).parent / "configs" / "forelimb.yaml")
    out = {"clips": n, "disk_bytes": path.stat().st_size, "rss_start_mb": _rss_mb()}
    if eager:
        clips = read_clips(path)
    else:
        from mimic_mjx.data.clip_files import open_clip_files

        clips = open_clip_files([path])
    out["frames"] = sum(c.num_frames for c in getattr(clips, "infos", clips))
    out["rss_read_mb"] = _rss_mb()
    env = build_env(cfg, clips)
    out["rss_env_mb"] = _rss_mb()
    store_clips(folder / f"run{n}.h5", clips)  # a new run's copy of its clips (train_clips.h5), as a run stores it
    out["rss_written_mb"] = _rss_mb()
    del clips
    gc.collect()
    out["rss_training_mb"] = _rss_mb()  # what stays while training
    out["rss_peak_mb"] = _rss_mb("VmHWM")
    out["bank_bytes"] = sum(a.nbytes for a in vars(env.bank).values() if hasattr(a, "nbytes"))
    device = [a for a in vars(env).values() if hasattr(a, "devices")]
    device += [a for group in (env.ref_poses, env.noisy_starts) for a in group or ()]
    out["device_bytes"] = sum(a.nbytes for a in device)
    return out


def _generate(n: int, frames: int, mixed: bool):
    """``n`` reaches of ``frames`` frames; with ``mixed`` every tenth one is 10x longer."""
    import dataclasses

    from mimic_mjx.data.synthetic import make_reaching_clips

    if not mixed:
        return make_reaching_clips(n, seed=0, num_frames=frames)
    long_ids = set(range(0, n, 10))
    short = make_reaching_clips(n - len(long_ids), seed=0, num_frames=frames)
    long = make_reaching_clips(len(long_ids), seed=1, num_frames=10 * frames)
    out = []
    for i in range(n):
        src = long.pop() if i in long_ids else short.pop()
        out.append(dataclasses.replace(src, name=f"clip{i:05d}"))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--frames", type=int, default=1000, help="frames per clip (5 s at 200 Hz)")
    p.add_argument("--eager", action="store_true", help="read every clip before binding (read_clips), as before")
    p.add_argument(
        "--mixed",
        action="store_true",
        help="every tenth clip is 10x longer (segments of a recording split at gaps): tests padding waste",
    )
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one is not None:
        print(json.dumps(_measure(args.one, Path(args.folder), args.eager)))
        return 0
    from mimic_mjx.data.clips import write_clips

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.clips:
            # Written here, so the measuring process never held the generated clips.
            write_clips(Path(tmp) / f"clips{n}.h5", _generate(n, args.frames, args.mixed))
            cmd = [sys.executable, __file__, "--one", str(n), "--folder", tmp] + ["--eager"] * args.eager
            res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, check=True)
            row = json.loads(res.stdout.strip().splitlines()[-1])
            grow = row["rss_training_mb"] - row["rss_start_mb"]
            row["rss_bytes_per_frame"] = round(grow * 2**20 / row["frames"])
            row["peak_bytes_per_frame"] = round((row["rss_peak_mb"] - row["rss_start_mb"]) * 2**20 / row["frames"])
            row["disk_bytes_per_frame"] = round(row["disk_bytes"] / row["frames"])
            mb = lambda k, row=row: f"{row[k] - row['rss_start_mb']:6.0f}"
            print(
                f"{n:>5} clips  disk {row['disk_bytes'] / 2**20:6.1f} MB  RSS over start, MB: read {mb('rss_read_mb')} "
                f"env {mb('rss_env_mb')} written {mb('rss_written_mb')} training {mb('rss_training_mb')} "
                f"peak {mb('rss_peak_mb')}  bank {row['bank_bytes'] / 2**20:6.1f} MB  device arrays "
                f"{row['device_bytes'] / 2**20:6.1f} MB  bytes/frame: disk {row['disk_bytes_per_frame']}, "
                f"training {row['rss_bytes_per_frame']}, peak {row['peak_bytes_per_frame']}",
                flush=True,
            )
            rows.append(row)
    print(json.dumps({"rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
