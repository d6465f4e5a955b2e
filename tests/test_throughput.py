"""Raw physics in pieces (``training.throughput.RawPhysics``): what ``mimic bench`` interleaves with its figures."""

from __future__ import annotations

import numpy as np
import pytest

from mimic_mjx.bodies import get_body
from mimic_mjx.training.throughput import RawPhysics


@pytest.fixture(scope="module")
def arm():
    model = get_body("mouse_forelimb").compile_trainable()
    model.opt.timestep = 0.001
    return model


def test_a_native_piece_steps_every_world_from_the_states_it_is_given(arm):
    n = 8
    sim = RawPhysics(arm, n, substeps=1, backend="native", threads=2, control_steps=1, seed=0)
    try:
        assert sim.compile_s > 0  # the untimed first piece (thread start-up)
        mid = np.where(arm.jnt_limited, arm.jnt_range.mean(axis=1), arm.qpos0)
        for offset in (-0.15, 0.15):
            qpos = np.tile(mid + offset, (n, 1))
            count, seconds = sim.tick(qpos, np.zeros((n, arm.nv)), np.full((n, arm.na), 0.5))
            assert count == n and seconds > 0
            # One millisecond from rest: every world is still where it was put, not at the model's rest pose.
            assert np.all(np.abs(sim.final_qpos - qpos) < 0.05)
    finally:
        sim.close()


def test_pieces_count_their_control_steps(arm):
    sim = RawPhysics(arm, 4, substeps=5, backend="native", threads=1, control_steps=3, seed=1)
    try:
        count, seconds = sim.tick(np.tile(arm.qpos0, (4, 1)), np.zeros((4, arm.nv)))
        assert count == 12 and seconds > 0
    finally:
        sim.close()


@pytest.mark.slow
def test_an_mjx_piece_runs_compiled(arm):
    sim = RawPhysics(arm, 4, substeps=2, backend="mjx", control_steps=2, seed=0)
    count, seconds = sim.tick(np.tile(arm.qpos0, (4, 1)), np.zeros((4, arm.nv)))
    assert count == 8 and seconds > 0
