"""Orbax checkpoints of the complete training state.

The whole ``TrainState`` (parameters, optimiser state, normaliser statistics,
the batched environment state, latent carry, RNG key, update counter) is
saved, so a resumed run continues exactly as if it had never stopped.
Leaves are stored under their tree paths; restoring checks the structure
against the state a fresh experiment of the same config would have.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from mimic_mjx.errors import RunDirError


def _as_dict(tree) -> dict:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


class Checkpoints:
    def __init__(self, directory: str | Path, max_to_keep: int = 3):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state) -> None:
        # Orbax cannot store empty arrays (e.g. MJX contact buffers of a body
        # without contacts); they carry no information and are rebuilt on restore.
        tree = {k: v for k, v in _as_dict(jax.device_get(state)).items() if np.size(v)}
        self.manager.save(step, args=ocp.args.StandardSave(tree))
        self.manager.wait_until_finished()

    def restore(self, template, step: int | None = None):
        """Restore into the structure of ``template`` (arrays or ShapeDtypeStructs)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise RunDirError(f"no checkpoint in {self.directory}")
        template_dict = _as_dict(template)
        target = {k: np.zeros(v.shape, v.dtype) for k, v in template_dict.items() if np.prod(v.shape)}
        try:
            restored = self.manager.restore(step, args=ocp.args.StandardRestore(target))
        except (ValueError, KeyError) as exc:
            raise RunDirError(f"checkpoint {self.directory}/{step} does not match this experiment's "
                              f"state ({exc}); was it written by another config or version?") from None
        leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
        values = [restored.get(k, np.zeros(v.shape, v.dtype)) for k, v in
                  ((jax.tree_util.keystr(p), leaf) for p, leaf in leaves)]
        return jax.tree_util.tree_unflatten(treedef, values)

    def close(self):
        self.manager.close()
