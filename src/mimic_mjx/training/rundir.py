"""Run directories: one experiment per folder, never silently mixed.

Layout: ``config.json`` (the full experiment config), ``train_clips.h5`` (the
clips trained on, so the run is self-contained), ``checkpoints/`` (orbax),
``metrics.jsonl`` (one line per logged update).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from mimic_mjx import config as config_lib
from mimic_mjx.errors import MimicError, RunDirError
from mimic_mjx.files import read_text, write_text

# Keys that may change between a run and its resumption: how long to train, how
# often to log and checkpoint, where to log, and host threads. None changes the
# trained parameters.
RESUMABLE_CHANGES = {
    ("name",),
    ("train", "total_steps"),
    ("train", "max_minutes"),
    ("train", "log_every_updates"),
    ("train", "checkpoint_every_updates"),
    ("train", "tensorboard"),
    ("train", "wandb"),
    ("train", "wandb_project"),
    ("env", "native_threads"),
}


def _diff(a: dict, b: dict, prefix=()) -> list[tuple[str, ...]]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, prefix + (k,))
        elif va != vb:
            out.append(prefix + (k,))
    return out


def _value(d: dict, key: tuple[str, ...]):
    for k in key:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def _changes(old: dict, new: dict, keys) -> str:
    return ", ".join(f"{'.'.join(k)} {_value(old, k)!r} -> {_value(new, k)!r}" for k in keys)


def stored_config(run_dir: Path) -> config_lib.ExperimentConfig:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise RunDirError(f"{run_dir} is not a mimic-mjx run (no config.json); pass the folder `mimic train` wrote")
    try:
        values = json.loads(read_text(path, RunDirError, "run configuration"))  # checked: not a pipe, UTF-8
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


def has_checkpoints(run_dir: Path) -> bool:
    """Whether any checkpoint step (finished or not, good or not) was written."""
    ckpts = Path(run_dir) / "checkpoints"
    return ckpts.is_dir() and any(p.name.isdigit() and p.is_dir() for p in ckpts.iterdir())


def prepare_run_dir(
    run_dir: Path, cfg: config_lib.ExperimentConfig, resume: bool, log: Callable[[str], None] = lambda m: None
) -> str:
    """Create or check ``run_dir`` for ``cfg``; raise RunDirError on a conflict.

    Returns ``"new"``, ``"resume"``, or ``"restart"``: the folder holds a run that
    stopped before its first checkpoint, which is started again from update 0.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is a file, not a folder; pass another --run-dir")
    cfg_path = run_dir / "config.json"
    mode = "resume" if resume else "new"
    if cfg_path.exists():
        old = stored_config(run_dir)
        old_d, new_d = old.to_dict(), cfg.to_dict()
        diffs = _diff(old_d, new_d)
        conflicts = [d for d in diffs if d not in RESUMABLE_CHANGES]
        if not has_checkpoints(run_dir):
            # Nothing was trained yet (a crash or stop before the first checkpoint): nothing to lose.
            log(f"{run_dir} holds a run that stopped before its first checkpoint; starting it again from update 0")
            mode = "restart"
        elif conflicts:
            keys = ", ".join(".".join(map(str, d)) for d in conflicts)
            action = (
                "resume without these --config/--set values, or start a new run with another --run-dir"
                if resume
                else "choose another --run-dir"
            )
            raise RunDirError(
                f"{run_dir} already holds a different experiment (differs in: {keys}); "
                f"stored vs given: {_changes(old_d, new_d, conflicts)}; {action}"
            )
        elif not resume:
            raise RunDirError(
                f"{run_dir} already holds this experiment; pass --resume to continue it or choose another --run-dir"
            )
        elif diffs:
            log(f"resuming with changed settings: {_changes(old_d, new_d, diffs)}")
    else:
        if resume:
            raise RunDirError(f"nothing to resume in {run_dir}: it holds no run (no config.json)")
        if run_dir.exists() and any(run_dir.iterdir()):
            raise RunDirError(f"{run_dir} exists, is not empty and is not a mimic-mjx run; choose another --run-dir")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(cfg_path, cfg.to_json())
    except MimicError:
        raise  # already says what failed and what to do
    except OSError as exc:
        raise RunDirError(f"cannot write to {run_dir}: {exc.strerror or exc}; pass another --run-dir") from None
    return mode


def package_version(name: str) -> str:
    """The installed version of distribution ``name``, or "not installed"."""
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def record_provenance(run_dir: Path, devices: str, mode: str, start_update: int) -> dict:
    """Append where and with what this training session ran to ``provenance.jsonl`` (one line per session).

    A report written elsewhere, later, still names the machine, devices and
    versions that trained the run.
    """
    import datetime
    import os
    import platform

    entry = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": mode,
        "start_update": int(start_update),
        "host": platform.node(),
        "platform": f"{platform.platform()} ({platform.machine()})",
        "cpu_count": os.cpu_count(),
        "devices": devices,
        "python": platform.python_version(),
        "versions": {
            n: package_version(n) for n in ("mimic-mjx", "jax", "jaxlib", "mujoco", "mujoco-mjx", "flax", "optax")
        },
    }
    path = Path(run_dir) / "provenance.jsonl"
    old = path.read_bytes().decode(errors="replace") if path.is_file() else ""  # damaged bytes cost their line
    write_text(path, old + json.dumps(entry) + "\n")
    return entry
