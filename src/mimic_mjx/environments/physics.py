"""What the task reads from physics, and the MJX backend (``backends.make_backend`` picks one).

Physics backends behind one interface.

The imitation task never touches a simulator directly. It asks a backend to
``init`` a state from joint positions and velocities, to ``step`` it for
``substeps`` physics steps under constant controls, and to ``view`` it as a
``Physics`` record (joint state, muscle state, body positions, actuator
forces). All three are pure functions of JAX pytrees, so the task, the agent
and the jit-compiled training loop are the same for every backend:

- ``mjx``: MuJoCo XLA on JAX (compiled; the GPU default).
- ``warp``: MJX's Warp implementation (NVIDIA GPUs; ``pip install "mujoco-mjx[warp]"``).
- ``native``: MuJoCo's C engine on the host, the whole batch of environments
  stepped in ``mujoco.batch``'s C++ threads, called from jit through
  ``jax.pure_callback``. Nothing of the physics is compiled by XLA, so a large
  body starts training in seconds; its state (including the solver warm start)
  lives in JAX arrays, which keeps resets, checkpoints and resume exact, and
  the results are the same for any number of threads.

Both MJX flavours and the native engine leave the state in the same place after
a control step: positions of bodies are evaluated at the final joint angles,
actuator forces and velocities are those of the last physics step's forward pass.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from flax import struct

from mimic_mjx.environments.randomize import model_fields, nominal_fields
from mimic_mjx.errors import BackendError


@struct.dataclass
class Physics:
    """What the task reads from a physics state (one environment)."""

    qpos: jax.Array
    qvel: jax.Array
    act: jax.Array
    xpos: jax.Array  # (nbody, 3) world positions of every body, m
    xquat: jax.Array  # (nbody, 4) world orientations of every body (wxyz)
    actuator_force: jax.Array
    actuator_velocity: jax.Array


class MjxBackend:
    """MJX (``impl='jax'``) or MuJoCo Warp through MJX (``impl='warp'``)."""

    def __init__(self, model: mujoco.MjModel, impl: str, body: str = ""):
        from mujoco import mjx

        self._mjx = mjx
        self.name = "mjx" if impl == "jax" else "warp"
        self.model = copy.deepcopy(model)
        self._nominal = None  # the body's own fields that randomisation draws scale, built on first use
        try:
            self.mx = mjx.put_model(self.model, impl=impl)
            # The Warp implementation sizes its buffers from the MjModel itself.
            self._blank = mjx.make_data(self.model, impl=impl) if impl != "jax" else mjx.make_data(self.mx)
        except NotImplementedError as exc:
            what = f"body '{body}'" if body else "this body"
            raise BackendError(f"{what} cannot run on backend '{self.name}': {exc}; use env.backend=native") from None

    #: ``init`` runs in the compiled graph: body poses given beforehand save nothing.
    init_takes_poses = False

    def init(self, qpos, qvel):
        data = self._blank.replace(qpos=qpos, qvel=qvel)
        return self._mjx.kinematics(self.mx, data)

    def init_posed(self, qpos, qvel, xpos, xquat):
        """``init``; the given poses are those its kinematics computes, and go unused."""
        del xpos, xquat
        return self.init(qpos, qvel)

    def step(self, data, ctrl, act, substeps: int, xfrc=None, params=None):
        """``params``: one environment's domain-randomisation draw (``environments.randomize``), or None."""
        mjx = self._mjx
        mx = self.mx if params is None else self.randomized(params)
        data = data.replace(ctrl=ctrl, act=act)
        if xfrc is not None:  # (nbody, 6) external wrench; it stays in Data until replaced
            data = data.replace(xfrc_applied=xfrc)
        data = jax.lax.fori_loop(0, substeps, lambda _, d: mjx.step(mx, d), data)
        # mjx.step evaluates kinematics before integrating; refresh them so body
        # positions belong to the final joint angles.
        return mjx.kinematics(mx, data)

    def randomized(self, params):
        """The mjx.Model with one environment's draw in place of the body's own fields.

        Constants MuJoCo derives from masses at compile time (inverse inertias
        at qpos0, which set how soft contacts and joint limits are) stay the
        body's own: MJX has no mj_setConst (docs/tracking-task.md).
        """
        if self.name != "mjx":
            raise BackendError(
                f"domain randomisation (randomize.*) runs on env.backend=mjx or native, not '{self.name}'"
            )
        if self._nominal is None:
            # Host constants (made once, outside any trace), in MJX's float precision.
            real = jax.dtypes.canonicalize_dtype(np.float64)
            self._nominal = {k: np.asarray(v, real) for k, v in nominal_fields(self.model).items()}
        return self.mx.replace(**model_fields(self._nominal, params, jnp))

    def view(self, data) -> Physics:
        # MJX 3.17 keeps actuator velocities in the implementation-specific part of Data.
        impl = getattr(data, "_impl", None)
        vel = impl.actuator_velocity if hasattr(impl, "actuator_velocity") else data.actuator_velocity
        return Physics(
            qpos=data.qpos,
            qvel=data.qvel,
            act=data.act,
            xpos=data.xpos,
            xquat=data.xquat,
            actuator_force=data.actuator_force,
            actuator_velocity=vel,
        )
