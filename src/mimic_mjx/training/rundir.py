"""Run directories: one experiment per folder, never silently mixed.

Layout: ``config.json`` (the full experiment config), ``train_clips.h5`` (the
clips trained on, so the run is self-contained), ``checkpoints/`` (orbax),
``metrics.jsonl`` (one line per logged update).
"""

from __future__ import annotations

import json
from pathlib import Path

from mimic_mjx import config as config_lib
from mimic_mjx.data.atomic import write_text
from mimic_mjx.errors import RunDirError

# Keys that may change between a run and its resumption (how long to train).
RESUMABLE_CHANGES = {("train", "total_steps"), ("train", "max_minutes")}


def _diff(a: dict, b: dict, prefix=()) -> list[tuple[str, ...]]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, prefix + (k,))
        elif va != vb:
            out.append(prefix + (k,))
    return out


def stored_config(run_dir: Path) -> config_lib.ExperimentConfig:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise RunDirError(f"{run_dir} is not a mimic-mjx run (no config.json); pass the folder `mimic train` wrote")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path} is corrupted ({exc})") from None
    try:
        return config_lib.from_dict(values)
    except config_lib.ConfigError as exc:
        if "was renamed" in str(exc):
            raise RunDirError(
                f"{run_dir} was written by an earlier mimic-mjx whose config layout differs ({exc}); "
                f"retrain it with this version, starting from an updated copy of its config"
            ) from None
        raise RunDirError(f"{path}: {exc}") from None


def prepare_run_dir(run_dir: Path, cfg: config_lib.ExperimentConfig, resume: bool) -> None:
    """Create or check ``run_dir`` for ``cfg``; raise RunDirError on a conflict."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if cfg_path.exists():
        old = stored_config(run_dir)
        diffs = [d for d in _diff(old.to_dict(), cfg.to_dict()) if d not in RESUMABLE_CHANGES]
        if diffs:
            keys = ", ".join(".".join(map(str, d)) for d in diffs)
            raise RunDirError(
                f"{run_dir} already holds a different experiment (differs in: {keys}); choose another --run-dir"
            )
        if not resume:
            raise RunDirError(
                f"{run_dir} already holds this experiment; pass --resume to continue it or choose another --run-dir"
            )
    else:
        if resume:
            raise RunDirError(f"nothing to resume in {run_dir}: it holds no run (no config.json)")
        if run_dir.exists() and any(run_dir.iterdir()):
            raise RunDirError(f"{run_dir} exists, is not empty and is not a mimic-mjx run; choose another --run-dir")
        run_dir.mkdir(parents=True, exist_ok=True)
    write_text(cfg_path, cfg.to_json())
