"""Training metrics: a JSON-lines file, TensorBoard event files and (optionally) Weights & Biases.

One ``MetricsLog`` per training run. Every logged update goes to

* ``run_dir/metrics.jsonl``: always, one JSON object per line (non-finite values are
  written as ``null`` so that every line stays valid JSON);
* ``run_dir/tensorboard/``: TensorBoard event files (tensorboardX), one scalar per metric key,
  the metric key as the tag and the environment step count as the global step;
* Weights & Biases, when asked for: the same scalars, with ``step`` = environment steps.

Non-finite values are skipped for TensorBoard and W&B. Metric keys are namespaced by the
caller ("reward/total", "loss/policy", "train/steps_per_s", ...) and passed through unchanged.

This module is ``mimic_mjx.training.logging``; it does not shadow the standard library's
``logging`` (imports are absolute) and does not use it.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mimic_mjx.errors import ConfigError
from mimic_mjx.files import write_text

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
WANDB_ID_FILE = "wandb_id.txt"
WANDB_INSTALL_HINT = '.venv/bin/pip install wandb (or pip install -e ".[wandb]")'

# Keys of a JSON line that are the step itself, not metrics.
_STEP_KEYS = ("update", "env_steps")


def truncate_metrics(path: str | Path, upto_update: int) -> None:
    """Drop lines of a metrics.jsonl file logged after update ``upto_update`` (and unreadable lines)."""
    _truncate(Path(path), upto_update)


def _truncate(path: Path, upto_update: int) -> list[dict]:
    """Rewrite ``path`` without the lines past ``upto_update``; return the dropped records."""
    if not path.exists():
        return []
    keep, dropped = [], []
    for line in path.read_text(errors="replace").splitlines():  # damaged bytes fail JSON below: line dropped
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # e.g. a line half-written when the previous run was killed
        if not isinstance(rec, dict):
            continue
        if (rec.get("update") or 0) <= upto_update:
            keep.append(line)
        else:
            dropped.append(rec)
    write_text(path, "".join(line + "\n" for line in keep))
    return dropped


def _json_value(v: Any) -> Any:
    """A JSON-safe plain value: numbers (incl. numpy/jax scalars) as int/float, non-finite as None."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v
    kind = getattr(getattr(v, "dtype", None), "kind", None)  # numpy / jax scalars and 0-d arrays
    if kind in ("i", "u"):
        return int(v)
    if kind == "b":
        return bool(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f if math.isfinite(f) else None


class MetricsLog:
    """Where a training run's metrics go. Use as a context manager, or call ``close()``.

    Args:
        run_dir: the run folder (must exist or be creatable).
        tensorboard: write TensorBoard event files to ``run_dir/tensorboard/``.
        wandb: also log to Weights & Biases (needs the ``wandb`` package).
        wandb_project: W&B project name.
        wandb_run_name: W&B display name of the run (None: W&B picks one).
        config: the experiment configuration, attached to the W&B run.
        resume_from_update: None for a fresh run; for a resumed run, the update of the
            checkpoint resumed from: lines logged past it are dropped from metrics.jsonl,
            TensorBoard hides the events logged past it, and W&B continues the same run
            (its id is kept in ``run_dir/wandb_id.txt``).
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        tensorboard: bool = True,
        wandb: bool = False,
        wandb_project: str = "mimic-mjx",
        wandb_run_name: str | None = None,
        config: Mapping[str, Any] | None = None,
        resume_from_update: int | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / METRICS_FILE
        self._file = None
        self._tb = None
        self._wandb_run = None
        self._closed = False

        wandb_mod = _import_wandb() if wandb else None
        tbx = _import_tensorboardx() if tensorboard else None

        self.run_dir.mkdir(parents=True, exist_ok=True)
        dropped = _truncate(self.metrics_path, resume_from_update) if resume_from_update is not None else []
        try:
            self._file = open(self.metrics_path, "a", buffering=1)  # noqa: SIM115 (held open until close())
            if tbx is not None:
                # Steps logged by the interrupted run past the checkpoint are superseded:
                # TensorBoard purges events at or after purge_step.
                dropped_steps = [r["env_steps"] for r in dropped if isinstance(r.get("env_steps"), (int, float))]
                purge_step = int(min(dropped_steps)) if dropped_steps else None
                self._tb = tbx.SummaryWriter(
                    logdir=str(self.run_dir / TENSORBOARD_DIR), purge_step=purge_step, flush_secs=30
                )
            if wandb_mod is not None:
                self._wandb_run = self._start_wandb(
                    wandb_mod, wandb_project, wandb_run_name, config, resume=resume_from_update is not None
                )
        except BaseException:
            self.close()
            raise

    def _start_wandb(self, wandb_mod, project, name, config, resume: bool):
        id_path = self.run_dir / WANDB_ID_FILE
        run_id = id_path.read_text().strip() if resume and id_path.exists() else ""
        if not run_id:
            run_id = uuid.uuid4().hex[:16]
            write_text(id_path, run_id + "\n")
        try:
            return wandb_mod.init(
                project=project, name=name, config=dict(config or {}), dir=str(self.run_dir), resume="allow", id=run_id
            )
        except Exception as e:  # network, login, bad project name, ...
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConfigError(
                f"could not start the Weights & Biases run: {first} (run `wandb login`, or set WANDB_MODE=offline)"
            ) from e

    def log(self, update: int, env_steps: int, metrics: Mapping[str, Any]) -> None:
        """Record the metrics of one update; ``env_steps`` is the global step for TensorBoard/W&B."""
        if self._closed:
            raise RuntimeError("MetricsLog is closed")
        update, env_steps = int(update), int(env_steps)
        record: dict[str, Any] = {"update": update, "env_steps": env_steps}
        for k, v in metrics.items():
            if k not in _STEP_KEYS:
                record[str(k)] = _json_value(v)
        self._file.write(json.dumps(record, allow_nan=False) + "\n")

        scalars = {
            k: float(v)
            for k, v in record.items()
            if k not in _STEP_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if self._tb is not None:
            for tag, value in scalars.items():
                self._tb.add_scalar(tag, value, global_step=env_steps)
            self._tb.flush()
        if self._wandb_run is not None and scalars:
            self._wandb_run.log(scalars, step=env_steps)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        """Flush and close the JSON file, the TensorBoard writer and the W&B run. Idempotent."""
        self._closed = True
        file, tb, run = self._file, self._tb, self._wandb_run
        self._file = self._tb = self._wandb_run = None
        try:
            if tb is not None:
                tb.close()
            if run is not None:
                run.finish()
        finally:
            if file is not None:
                file.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _import_wandb():
    try:
        import wandb
    except ImportError as e:
        raise ConfigError(
            f"Weights & Biases logging needs the wandb package, which is not installed: {WANDB_INSTALL_HINT}"
        ) from e
    return wandb


def _import_tensorboardx():
    try:
        import tensorboardX
    except ImportError as e:
        raise ConfigError(
            "TensorBoard logging needs tensorboardX, which is not installed: "
            ".venv/bin/pip install -e . (or pass tensorboard=False)"
        ) from e
    return tensorboardX
