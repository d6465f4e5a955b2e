"""Assemble an experiment: body, bound reference clips, environment, trainer."""

from __future__ import annotations

from collections.abc import Sequence

from mimic_mjx.bodies import get_body
from mimic_mjx.config import ExperimentConfig
from mimic_mjx.data.binding import bind_clips
from mimic_mjx.data.clips import Clip
from mimic_mjx.environments.imitation import ImitationEnv


def build_env(cfg: ExperimentConfig, clips: Sequence[Clip]) -> ImitationEnv:
    body = get_body(cfg.env.body)
    # The trainable variant: same names as the registration model, simulation set up for speed.
    model = body.compile_trainable()
    e = cfg.env
    bank = bind_clips(
        clips,
        model,
        body.name,
        body.end_effectors,
        min_frames=e.horizon * e.control_every + 1,
        pad=e.horizon * e.control_every,
        tracked_bodies=body.tracked(),
        keypoint_bodies=body.keypoint_bodies,
    )
    return ImitationEnv(e, bank, model, body.end_effectors, body.tracked(), cfg.reward, cfg.termination)
