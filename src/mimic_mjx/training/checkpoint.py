"""Orbax checkpoints of the complete training state, with the policy readable on its own.

A checkpoint step holds three items:

- ``policy``: what inference needs (network parameters, observation
  normalisers) as a plain nested tree, restorable without any template, so
  ``load_policy`` needs no trainer and no environment;
- ``train``: the rest of the ``TrainState`` (optimiser state, the batched
  environment state, latent carry, RNG key, update counter), leaves stored
  under their tree paths, so a resumed run continues exactly;
- ``meta``: JSON with the layout version, the update and the sizes that
  rebuild the network (observation and action sizes).

Each finished step also gets a checksum manifest (see ``verify``). Reading the
newest checkpoint means the newest one that verifies: damaged steps are
reported and skipped, and rotation counts only verified steps, so it never
deletes the last good one.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from mimic_mjx.agents.networks import decoder_mismatch
from mimic_mjx.agents.normalizer import RunningStats
from mimic_mjx.agents.policy import Policy, PolicyParams, make_policy
from mimic_mjx.errors import RunDirError
from mimic_mjx.training.verify import has_manifest, manifest_problem, non_finite, read_meta, write_manifest

#: Version of the checkpoint layout; bump when what is stored changes shape.
LAYOUT = 2
_OLD_LAYOUT = (
    "was written by an earlier mimic-mjx (before checkpoint layout {layout}: no separate policy); "
    "retrain it with this version (`mimic train --config {run}/config.json --clips ... --run-dir NEW`) "
    "or evaluate it with mimic-mjx 0.1.0"
)
#: Texts of storage failures that orbax/tensorstore report without an OSError.
_STORAGE_FAILURES = ("No space left on device", "Disk quota exceeded", "Read-only file system", "Permission denied")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _as_dict(tree) -> dict:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def _check_layout(directory: Path, step: int) -> None:
    if not (Path(directory) / str(step) / "meta").is_dir():
        raise RunDirError(
            f"the checkpoint {Path(directory) / str(step)} "
            + _OLD_LAYOUT.format(layout=LAYOUT, run=Path(directory).parent)
        )


def _handlers():
    standard = ocp.StandardCheckpointHandler
    return {"policy": standard(), "train": standard(), "meta": ocp.JsonCheckpointHandler()}


def _manager(directory: Path, **options) -> ocp.CheckpointManager:
    """An orbax manager of ``directory`` that this process uses on its own.

    In a multi-process run only process 0 saves (``training.processes``): orbax would
    otherwise wait at each save, restore and delete for the other processes, which never
    come (and it then refuses to create the folder itself).
    """
    if jax.process_count() > 1:
        if options.get("create", True):  # orbax's default
            directory.mkdir(parents=True, exist_ok=True)
        options["create"] = False
        me = jax.process_index()
        options["multiprocessing_options"] = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    return ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(**options), item_handlers=_handlers())


def _storage_failure(exc: BaseException) -> str | None:
    """The reason a write failed for lack of space or permission, else None (a bug: re-raise it)."""
    chain, seen = [], exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for e in chain:
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
        hit = next((t for t in _STORAGE_FAILURES if t in str(e)), None)
        if hit:
            return hit
    return next((str(e) for e in chain if isinstance(e, OSError)), None)


def step_problem(directory: Path, step: int) -> str | None:
    """Why a step's files cannot be trusted (None: they match their manifest, or predate manifests)."""
    step_dir = Path(directory) / str(step)
    _check_layout(directory, step)
    if has_manifest(step_dir):
        return manifest_problem(step_dir)
    meta = read_meta(step_dir)
    if meta is None:
        return "its metadata is unreadable and it has no checksum manifest"
    # Steps written before manifests existed carry no "checksums" flag; orbax and the finiteness check still apply.
    return manifest_problem(step_dir) if meta.get("checksums") else None


def _read_problem(exc: Exception) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"orbax cannot read it ({type(exc).__name__}: {first})"


class Checkpoints:
    def __init__(self, directory: str | Path, max_to_keep: int = 3, log: Callable[[str], None] = _stderr):
        self.directory = Path(directory).absolute()
        self.max_to_keep = max_to_keep
        self.log = log
        self.restored_step: int | None = None
        self.skipped: list[int] = []  # damaged steps passed over by the last restore, newest first
        self._verified: set[int] = set()
        try:
            # Orbax rotates by age alone and could delete the last good step; ``_rotate`` does it instead.
            self.manager = _manager(self.directory, max_to_keep=None, create=True)
        except OSError as exc:
            raise RunDirError(
                f"cannot create {self.directory}: {exc.strerror or exc}; pass another --run-dir"
            ) from None

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def _good_steps(self) -> list[int]:
        out = []
        for s in self.all_steps():
            step_dir = self.directory / str(s)
            if s not in self._verified and has_manifest(step_dir) and manifest_problem(step_dir) is None:
                self._verified.add(s)
            if s in self._verified:
                out.append(s)
        return out

    def save(self, step: int, state, meta: dict) -> bool:
        """Save a TrainState; ``meta`` adds the sizes that rebuild the network. False: not finite, not saved."""
        state = jax.device_get(state)
        bad = non_finite(state.policy) or non_finite(state.opt_state)
        if bad:
            # A diverged state would count as a good step and rotate the last usable ones away.
            good = self._good_steps()
            last = f"the last good checkpoint is update {good[-1]}" if good else "no checkpoint was written before"
            self.log(f"warning: checkpoint at update {step} not written: NaN or inf in {bad}; {last}")
            return False
        policy = serialization.to_state_dict(state.policy)
        # Orbax cannot store empty arrays (e.g. MJX contact buffers of a body
        # without contacts); they carry no information and are rebuilt on restore.
        rest = {k: v for k, v in _as_dict(state.replace(policy=None)).items() if np.size(v)}
        meta = {**meta, "layout": LAYOUT, "update": int(step), "checksums": True}
        step_dir = self.directory / str(step)
        try:
            saved = self.manager.save(
                step,
                args=ocp.args.Composite(
                    policy=ocp.args.StandardSave(policy),
                    train=ocp.args.StandardSave(rest),
                    meta=ocp.args.JsonSave(meta),
                ),
            )
            if not saved:  # orbax skips, silently, any step not after its newest
                raise RunDirError(
                    f"checkpoint at update {step} not written: {self.directory} already holds update "
                    f"{self.latest_step()}; resume the run instead of training it again"
                )
            self.manager.wait_until_finished()
            write_manifest(step_dir)
        except Exception as exc:
            reason = _storage_failure(exc)
            if reason is None:
                raise
            # A finalised step without its manifest would only be skipped later; drop it now.
            if step_dir.is_dir() and not has_manifest(step_dir):
                shutil.rmtree(step_dir, ignore_errors=True)
            self.manager.reload()
            good = [s for s in self._good_steps() if s != step]
            last = f"the last good checkpoint is update {good[-1]}" if good else "no checkpoint was written before"
            raise RunDirError(
                f"could not write checkpoint at update {step} to {self.directory}: {reason}; "
                f"free space or pass another --run-dir; {last}"
            ) from None
        if has_manifest(step_dir):
            self._verified.add(step)
        self._rotate()
        return True

    def _rotate(self) -> None:
        if not self.max_to_keep:
            return
        good = self._good_steps()
        if len(good) <= self.max_to_keep:
            return
        oldest_kept = good[-self.max_to_keep]
        for s in self.all_steps():
            if s < oldest_kept:
                self.manager.delete(s)
                self._verified.discard(s)

    def _restore_step(self, template, step: int):
        """(state, None) or (None, why the step cannot be used)."""
        problem = step_problem(self.directory, step)
        if problem:
            return None, problem
        zeros = lambda tree: {k: np.zeros(v.shape, v.dtype) for k, v in _as_dict(tree).items() if np.prod(v.shape)}
        pol_template = serialization.to_state_dict(template.policy)
        rest_template = template.replace(policy=None)
        # Fields added since the step was written (e.g. the termination memory) are
        # not asked for: orbax refuses a template key the step lacks; they restore as zeros.
        stored = self._stored_train_keys(step, template)
        train_template = {k: v for k, v in zeros(rest_template).items() if stored is None or k in stored}
        try:
            restored = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    policy=ocp.args.StandardRestore(jax.tree.map(lambda v: np.zeros(v.shape, v.dtype), pol_template)),
                    train=ocp.args.StandardRestore(train_template),
                ),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RunDirError(
                f"checkpoint {self.directory}/{step} does not match this experiment's "
                f"state ({exc}); was it written by another config or version?"
            ) from None
        except Exception as exc:  # tensorstore and OS errors of files that verified but cannot be decoded
            return None, _read_problem(exc)
        policy = serialization.from_state_dict(template.policy, restored["policy"])
        leaves, treedef = jax.tree_util.tree_flatten_with_path(rest_template)
        values = [
            restored["train"].get(k, np.zeros(v.shape, v.dtype))
            for k, v in ((jax.tree_util.keystr(p), leaf) for p, leaf in leaves)
        ]
        state = jax.tree_util.tree_unflatten(treedef, values).replace(policy=policy)
        bad = non_finite(state.policy) or non_finite(state.opt_state)
        if bad:
            return None, f"its parameters are not finite (NaN or inf in {bad})"
        return state, None

    def _stored_train_keys(self, step: int, template) -> set[str] | None:
        """The keys of a step's ``train`` item (None: unreadable metadata); a RunDirError naming both decoders
        when the step's is not the template's (orbax would name only keys)."""
        try:
            meta = self.manager.item_metadata(step)
            keys, decoder = set(meta["train"].tree), meta["policy"].tree["params"]["decoder"]
        except Exception:  # unreadable metadata: the restore itself reports what is wrong
            return None
        mismatch = decoder_mismatch(decoder, template.policy.params["decoder"])
        if mismatch:
            raise RunDirError(f"checkpoint {self.directory}/{step} {mismatch}; resume with the settings it had")
        return keys

    def restore(self, template, step: int | None = None):
        """Restore into the structure of ``template`` (arrays or ShapeDtypeStructs).

        Without ``step``: the newest step that verifies; damaged ones are logged and
        listed in ``skipped``. With ``step``: that step, or a RunDirError saying why not.
        """
        self.skipped = []
        if step is not None:
            state, problem = self._restore_step(template, step)
            if problem:
                raise RunDirError(f"checkpoint {self.directory}/{step} is damaged: {problem}")
            self.restored_step = step
            return state
        steps = self.all_steps()
        if not steps:
            raise RunDirError(f"no checkpoint in {self.directory}")
        for s in reversed(steps):
            state, problem = self._restore_step(template, s)
            if problem is None:
                self.restored_step = s
                return state
            self.log(f"warning: checkpoint at update {s} ({self.directory / str(s)}) is damaged: {problem}; skipped")
            self.skipped.append(s)
        raise RunDirError(_none_verifies(self.directory, self.skipped))

    def set_aside(self, steps, into: Path) -> None:
        """Move damaged steps out of the way (kept for inspection), so their updates can be saved again."""
        for s in steps:
            dest = Path(into) / str(s)
            n = 1
            while dest.exists():
                dest, n = Path(into) / f"{s}.{n}", n + 1
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(self.directory / str(s)), dest)
        self.manager.reload()

    def close(self):
        self.manager.close()


def _none_verifies(directory: Path, steps) -> str:
    return (
        f"no checkpoint in {directory} verifies (damaged: updates {', '.join(map(str, steps))}); "
        f"to start this run over, move {directory} away and run `mimic train --run-dir {directory.parent} --resume`"
    )


def _read_step(manager, directory: Path, step: int) -> tuple[dict | None, str | None]:
    """(the step's policy and meta items, None) or (None, why the step cannot be used): manifest, orbax, finiteness."""
    problem = step_problem(directory, step)
    if problem is not None:
        return None, problem
    try:
        restored = manager.restore(
            step, args=ocp.args.Composite(policy=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
        )
    except (ValueError, KeyError, FileNotFoundError) as exc:
        raise RunDirError(f"checkpoint {directory}/{step} cannot be read ({exc})") from None
    except Exception as exc:
        return None, _read_problem(exc)
    bad = non_finite(restored["policy"])
    return (None, f"its parameters are not finite (NaN or inf in {bad})") if bad else (restored, None)


def read_policy(directory: str | Path, step: int | None = None) -> tuple[PolicyParams, dict]:
    """The inference part of a checkpoint (newest that verifies, or ``step``) and its metadata, no template needed."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RunDirError(f"{directory.parent} holds no checkpoint yet ({directory} is missing); train it first")
    manager = _manager(directory.absolute())
    try:
        steps = sorted(manager.all_steps()) if step is None else [step]
        if not steps:
            raise RunDirError(f"{directory.parent} holds no checkpoint yet; train it first")
        skipped = []
        for s in reversed(steps):
            restored, problem = _read_step(manager, directory, s)
            if problem is None:
                break
            if step is not None:
                raise RunDirError(f"checkpoint {directory}/{s} is damaged: {problem}")
            _stderr(f"warning: checkpoint at update {s} ({directory / str(s)}) is damaged: {problem}; skipped")
            skipped.append(s)
        else:
            raise RunDirError(_none_verifies(directory.absolute(), skipped))
    finally:
        manager.close()
    tree = jax.tree.map(jnp.asarray, restored["policy"])
    stats = lambda d: RunningStats(count=d["count"], mean=d["mean"], m2=d["m2"])
    return PolicyParams(tree["params"], stats(tree["ref_stats"]), stats(tree["prop_stats"])), dict(restored["meta"])


def verify_checkpoints(directory: str | Path) -> tuple[int | None, list[tuple[int, str]]]:
    """The newest step that verifies as ``read_policy`` checks it (None: none does), and every newer step with
    why it fails; no warnings printed, nothing raised for a damaged step (for a report that names them)."""
    directory = Path(directory)
    if not directory.is_dir():
        return None, []
    manager = _manager(directory.absolute())
    damaged = []
    try:
        for s in sorted(manager.all_steps(), reverse=True):
            try:
                problem = _read_step(manager, directory, s)[1]
            except RunDirError as exc:  # an earlier layout, or items this version cannot decode
                problem = str(exc)
            if problem is None:
                return s, damaged
            damaged.append((s, problem))
    finally:
        manager.close()
    return None, damaged


def load_policy(run_dir: str | Path, step: int | None = None) -> Policy:
    """Load a trained controller from a run folder (its newest checkpoint, or ``step``): ``config.json``, the
    checkpoint's inference part and the body the run stores (training/runbody.py); no trainer, environment,
    clips or body files."""
    from mimic_mjx.training.runbody import run_body
    from mimic_mjx.training.rundir import stored_config

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory not found: {run_dir}")
    cfg = stored_config(run_dir)
    params, meta = read_policy(run_dir / "checkpoints", step)
    body = run_body(run_dir, cfg.env.body, _stderr)
    return make_policy(
        cfg, params, meta["ref_obs_size"], meta["prop_obs_size"], meta["action_size"], meta["update"], run_dir, body
    )
