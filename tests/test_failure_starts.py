"""Episodes that start before remembered terminations (environments.starts)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimic_mjx.bodies import get_body
from mimic_mjx.config import ConfigError, EnvConfig
from mimic_mjx.data.binding import bind_clips
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.environments.imitation import ImitationEnv
from mimic_mjx.environments.starts import (
    empty_failures,
    failure_cdf,
    hardest_frames,
    record_failures,
    sample_failure_start,
)

BODY = get_body("mouse_forelimb")


def test_record_counts_terminations_where_they_ended_and_forgets_old_ones():
    table = empty_failures(3, 10)
    clip = jnp.array([[0, 2, 2], [1, 2, 0]])
    frame = jnp.array([[4, 7, 7], [9, 3, 5]])
    term = jnp.array([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    t1 = np.asarray(record_failures(table, clip, frame, term, decay=0.5))
    expect = np.zeros((3, 10))
    expect[0, 4], expect[2, 7], expect[2, 3] = 1, 2, 1
    np.testing.assert_array_equal(t1, expect)
    # Nothing new: the memory halves.
    t2 = np.asarray(record_failures(jnp.asarray(t1), clip, frame, jnp.zeros_like(term), decay=0.5))
    np.testing.assert_array_equal(t2, expect / 2)
    # Out-of-range indices are dropped rather than wrapped onto another cell.
    t3 = record_failures(table, jnp.array([3, -1, 0]), jnp.array([0, 0, 10]), jnp.ones(3))
    assert float(jnp.sum(t3)) == 0.0
    # The summary names the busiest cells by clip name and frame, most first, and never an empty cell.
    names = ("a", "b", "c")
    assert hardest_frames(t1, names, n=5) == [
        {"clip": "c", "frame": 7, "weight": 2.0},
        {"clip": "a", "frame": 4, "weight": 1.0},
        {"clip": "c", "frame": 3, "weight": 1.0},
    ]
    assert hardest_frames(t1, names, n=1) == [{"clip": "c", "frame": 7, "weight": 2.0}]
    assert hardest_frames(empty_failures(3, 10), names) == [] == hardest_frames(empty_failures(0, 0), ())


def test_samples_come_from_remembered_cells_within_the_window():
    table = empty_failures(4, 50).at[1, 30].set(3.0).at[3, 2].set(1.0)
    cdf = failure_cdf(table)
    draw = jax.jit(jax.vmap(lambda k: sample_failure_start(k, cdf, 50, back_max=5, step=2)))
    known, clip, frame = (np.asarray(x) for x in draw(jax.random.split(jax.random.PRNGKey(0), 4000)))
    assert known.all()
    assert set(clip.tolist()) == {1, 3}
    # In proportion to the memory: 3 of 4 draws at clip 1.
    assert abs(np.mean(clip == 1) - 0.75) < 0.03
    f1 = frame[clip == 1]
    assert set(f1.tolist()) == {28, 26, 24, 22, 20}  # 1..5 control steps of 2 frames back
    assert set(frame[clip == 3].tolist()) == {0}  # clamped at the clip's start
    known, *_ = sample_failure_start(jax.random.PRNGKey(1), failure_cdf(empty_failures(4, 50)), 50, 5)
    assert not bool(known)


@pytest.fixture(scope="module")
def bank():
    clips = make_reaching_clips(3, seed=5)
    return bind_clips(clips, BODY.compile(), BODY.name, BODY.end_effectors, 6, 5)


def _env(bank, **kw):
    return ImitationEnv(EnvConfig(**kw), bank, BODY.compile(), BODY.end_effectors)


def test_reset_starts_before_a_remembered_termination(bank):
    env = _env(bank, failure_start_prob=1.0, failure_start_back_steps=4)
    n, t = env.failure_table_shape
    assert n == 3 and t == bank.lengths.max() + bank.pad  # (clips, frames of the longest clip with its padding)
    cdf = failure_cdf(empty_failures(n, t).at[2, 40].set(1.0))
    keys = jax.random.split(jax.random.PRNGKey(3), 64)
    states = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, cdf)
    assert np.all(np.asarray(states.clip) == 2)
    assert set(np.asarray(states.frame).tolist()) <= {36, 37, 38, 39} and len(set(np.asarray(states.frame))) > 1
    # An empty memory: starts are drawn as without one.
    plain = jax.jit(jax.vmap(env.reset))(keys)
    empty = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, failure_cdf(empty_failures(n, t)))
    np.testing.assert_array_equal(np.asarray(plain.frame), np.asarray(empty.frame))
    np.testing.assert_array_equal(np.asarray(plain.clip), np.asarray(empty.clip))


def test_share_of_failure_starts_follows_the_config(bank):
    env = _env(bank, failure_start_prob=0.3)
    n, t = env.failure_table_shape
    cdf = failure_cdf(empty_failures(n, t).at[1, 60].set(1.0))
    keys = jax.random.split(jax.random.PRNGKey(4), 3000)
    states = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, cdf)
    near = lambda s: (np.asarray(s.clip) == 1) & (np.asarray(s.frame) >= 40) & (np.asarray(s.frame) < 60)
    # 0.3 from the memory, plus the other starts that land there by chance.
    base = np.mean(near(jax.jit(jax.vmap(env.reset))(keys)))
    assert 0.0 < base < 0.2
    assert abs(np.mean(near(states)) - (0.3 + 0.7 * base)) < 0.04


def test_memory_off_leaves_resets_as_they_were(bank):
    """failure_start_prob 0: a CDF changes nothing (runs without the feature draw exactly as before)."""
    env = _env(bank)
    n, t = env.failure_table_shape
    keys = jax.random.split(jax.random.PRNGKey(5), 16)
    cdf = failure_cdf(empty_failures(n, t).at[0, 10].set(1.0))
    a = jax.vmap(env.reset)(keys)
    b = jax.vmap(env.reset, in_axes=(0, None))(keys, cdf)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize(
    "kw", [{"failure_start_prob": 1.5}, {"failure_start_prob": -0.1}, {"failure_start_back_steps": 0}]
)
def test_bad_failure_start_settings_are_named(kw):
    with pytest.raises(ConfigError, match="failure_start"):
        EnvConfig(**kw).validate()
