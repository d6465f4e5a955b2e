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
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from mimic_mjx.agents.normalizer import RunningStats
from mimic_mjx.agents.policy import PolicyParams
from mimic_mjx.errors import RunDirError

#: Version of the checkpoint layout; bump when what is stored changes shape.
LAYOUT = 2
_OLD_LAYOUT = (
    "was written by an earlier mimic-mjx (before checkpoint layout {layout}: no separate policy); "
    "retrain it with this version (`mimic train --config {run}/config.json --clips ... --run-dir NEW`) "
    "or evaluate it with mimic-mjx 0.1.0"
)


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
    return {
        "policy": ocp.StandardCheckpointHandler(),
        "train": ocp.StandardCheckpointHandler(),
        "meta": ocp.JsonCheckpointHandler(),
    }


class Checkpoints:
    def __init__(self, directory: str | Path, max_to_keep: int = 3):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            item_handlers=_handlers(),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, meta: dict) -> None:
        """Save a TrainState; ``meta`` adds the sizes that rebuild the network."""
        state = jax.device_get(state)
        policy = serialization.to_state_dict(state.policy)
        # Orbax cannot store empty arrays (e.g. MJX contact buffers of a body
        # without contacts); they carry no information and are rebuilt on restore.
        rest = {k: v for k, v in _as_dict(state.replace(policy=None)).items() if np.size(v)}
        meta = {**meta, "layout": LAYOUT, "update": int(step)}
        self.manager.save(
            step,
            args=ocp.args.Composite(
                policy=ocp.args.StandardSave(policy), train=ocp.args.StandardSave(rest), meta=ocp.args.JsonSave(meta)
            ),
        )
        self.manager.wait_until_finished()

    def restore(self, template, step: int | None = None):
        """Restore into the structure of ``template`` (arrays or ShapeDtypeStructs)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise RunDirError(f"no checkpoint in {self.directory}")
        _check_layout(self.directory, step)
        zeros = lambda tree: {k: np.zeros(v.shape, v.dtype) for k, v in _as_dict(tree).items() if np.prod(v.shape)}
        pol_template = serialization.to_state_dict(template.policy)
        rest_template = template.replace(policy=None)
        try:
            restored = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    policy=ocp.args.StandardRestore(jax.tree.map(lambda v: np.zeros(v.shape, v.dtype), pol_template)),
                    train=ocp.args.StandardRestore(zeros(rest_template)),
                ),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RunDirError(
                f"checkpoint {self.directory}/{step} does not match this experiment's "
                f"state ({exc}); was it written by another config or version?"
            ) from None
        policy = serialization.from_state_dict(template.policy, restored["policy"])
        leaves, treedef = jax.tree_util.tree_flatten_with_path(rest_template)
        values = [
            restored["train"].get(k, np.zeros(v.shape, v.dtype))
            for k, v in ((jax.tree_util.keystr(p), leaf) for p, leaf in leaves)
        ]
        return jax.tree_util.tree_unflatten(treedef, values).replace(policy=policy)

    def close(self):
        self.manager.close()


def read_policy(directory: str | Path, step: int | None = None) -> tuple[PolicyParams, dict]:
    """The inference part of a checkpoint (newest, or ``step``) and its metadata, no template needed."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RunDirError(f"{directory.parent} holds no checkpoint yet ({directory} is missing); train it first")
    manager = ocp.CheckpointManager(directory.absolute(), item_handlers=_handlers())
    try:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise RunDirError(f"{directory.parent} holds no checkpoint yet; train it first")
        _check_layout(directory, step)
        try:
            restored = manager.restore(
                step, args=ocp.args.Composite(policy=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
            )
        except (ValueError, KeyError, FileNotFoundError) as exc:
            raise RunDirError(f"checkpoint {directory}/{step} cannot be read ({exc})") from None
    finally:
        manager.close()
    tree = jax.tree.map(jnp.asarray, restored["policy"])
    stats = lambda d: RunningStats(count=d["count"], mean=d["mean"], m2=d["m2"])
    params = PolicyParams(
        params=tree["params"], ref_stats=stats(tree["ref_stats"]), prop_stats=stats(tree["prop_stats"])
    )
    return params, dict(restored["meta"])
