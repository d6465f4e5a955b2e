"""Assemble an experiment: body, bound reference clips, environment, trainer."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import mujoco

from mimic_mjx.bodies import BodyModel, get_body
from mimic_mjx.config import ExperimentConfig, RandomizeConfig
from mimic_mjx.data.binding import bind_clips
from mimic_mjx.data.clips import Clip
from mimic_mjx.environments.backends import default_backend
from mimic_mjx.environments.imitation import ImitationEnv


def build_env(
    cfg: ExperimentConfig,
    clips: Sequence[Clip],
    physics_model: mujoco.MjModel | None = None,
    body: BodyModel | None = None,
) -> ImitationEnv:
    """The task of ``cfg`` on ``clips``.

    ``physics_model`` replaces the body's model in simulation only (a virtual
    experiment's perturbed body): the references stay those of the body itself.
    ``body``: the body to use in place of the one ``env.body`` names (a run's
    stored body, training/runbody.py); it carries the same name.
    """
    body = get_body(cfg.env.body) if body is None else body
    # The trainable variant: same names as the registration model, simulation set up for speed.
    model = body.compile_trainable()
    e = cfg.env
    if e.backend == "auto":
        # Chosen here from the body itself: its files may be gone (a stored body), so the
        # backend must not look the body up by name. default_backend() without a body: mjx on a GPU.
        gpu = default_backend() == "mjx"
        e = dataclasses.replace(e, backend="mjx" if gpu else body.cpu_backend)
    bank = bind_clips(
        clips,
        model,
        body.name,
        body.end_effectors,
        min_frames=e.horizon * e.control_every + 1,
        pad=e.horizon * e.control_every,
        tracked_bodies=body.tracked(),
        keypoint_bodies=body.keypoint_bodies,
        # Computed only when a clip records the hash of the body it was registered to.
        body_hash=body.body_hash() if any(c.body_hash for c in getattr(clips, "infos", clips)) else None,
    )
    sim = model if physics_model is None else physics_model
    # Proprioception reports muscle forces as fractions of the body's own peak forces, also when
    # an experiment weakens a muscle: the controller feels the weaker force, as an animal would.
    return ImitationEnv(
        e,
        bank,
        sim,
        body.end_effectors,
        body.tracked(),
        cfg.reward,
        cfg.termination,
        force_scale_model=model,
        randomize=cfg.randomize,
    )


def build_eval_env(
    cfg: ExperimentConfig,
    clips: Sequence[Clip],
    physics_model: mujoco.MjModel | None = None,
    body: BodyModel | None = None,
    randomize: bool = False,
) -> ImitationEnv:
    """``build_env`` for rolling a controller out: every clip starts exactly in its reference state.

    Training may start episodes off the reference (``env.reset_noise_rad``)
    and randomise the body's physics (``randomize.*``); evaluation, rollout
    datasets, experiments and videos never do. ``randomize``: keep the
    config's physics ranges (each rollout its own draw), still without pose noise.
    """
    rz = dataclasses.replace(cfg.randomize, init_pose_noise_rad=0.0) if randomize else RandomizeConfig()
    cfg = cfg.replace(env=dataclasses.replace(cfg.env, reset_noise_rad=0.0), randomize=rz)
    return build_env(cfg, clips, physics_model, body)
