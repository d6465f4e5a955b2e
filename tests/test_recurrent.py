"""Recurrent decoders (agent.decoder lstm | gru) and PPOTrainer's transfer hooks.

The state is reset at episode starts and carried within them; each transition
stores the state its action was taken with, so the loss recomputes the stored
log-probabilities exactly; runs resume exactly; rollouts record the state as
layers; a checkpoint of another decoder is a one-line error naming both.
Hooks: a frozen subtree never changes, an initial policy is the one trained
from, frozen proprioception statistics stay as they were.
"""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config_dict
from mimic_mjx import config as config_lib
from mimic_mjx.agents.networks import gaussian_log_prob
from mimic_mjx.agents.policy import network_outputs
from mimic_mjx.analysis.rollout import collect, layer_order
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.errors import ConfigError, RunDirError
from mimic_mjx.training import parallel
from mimic_mjx.training.checkpoint import Checkpoints, load_policy
from mimic_mjx.training.experiment import build_env, build_eval_env
from mimic_mjx.training.losses import compute_ppo_loss
from mimic_mjx.training.ppo import PPOTrainer
from mimic_mjx.training.trainer import train

SIZE = 8  # recurrent units


def _cfg(decoder: str, **ppo):
    d = tiny_config_dict()
    d["env"] = {"backend": "native"}
    d["agent"].update(decoder=decoder, recurrent_size=SIZE)
    # One epoch of one minibatch: the logged ratio is the one before any gradient step.
    d["ppo"].update({"update_epochs": 1, "num_minibatches": 1, **ppo})
    return config_lib.from_dict(d)


@pytest.fixture(scope="module")
def clips():
    return make_reaching_clips(3, seed=7, num_frames=30)


@pytest.fixture(scope="module", params=["lstm", "gru"])
def trainer(request, clips):
    # Episodes of 8 steps at most within an unroll of 12: episode starts inside every rollout.
    cfg = _cfg(request.param, unroll_length=12)
    return PPOTrainer(cfg, build_env(cfg, make_reaching_clips(3, seed=7, num_frames=9)), mesh=None)


@pytest.mark.parametrize(
    "agent, match",
    [
        ({"decoder": "lstn"}, "agent.decoder must be one of mlp, lstm, gru, got 'lstn'; did you mean 'lstm'"),
        ({"decoder": "rnn"}, "agent.decoder must be one of mlp, lstm, gru"),
        ({"decoder": "gru", "recurrent_size": 0}, "agent.recurrent_size must be positive"),
    ],
)
def test_config_names_the_decoders(agent, match):
    with pytest.raises(ConfigError, match=match):
        config_lib.from_dict({"agent": agent})


def test_state_is_reset_at_episode_starts_and_carried_within_them(trainer):
    state = trainer.init(jax.random.PRNGKey(0))
    assert state.decoder_state.shape == (8, trainer.agent.state_size)
    traj = jax.jit(trainer._rollout)(state, jax.random.PRNGKey(1))[3]
    first, stored = np.asarray(traj.first), np.asarray(traj.decoder_state)
    assert first[0].all() and first[1:].any() and not first[1:].all()
    assert not np.any(stored[first])  # zeros wherever an episode starts
    # Within an episode each step starts from the state the previous step left.
    prev = jax.tree.map(lambda x: x[:-1], traj)
    out = network_outputs(trainer.agent, state.policy, prev.ref_obs, prev.prop_obs, prev.eps, prev.decoder_state)
    carried = ~first[1:]
    # (float32 noise: XLA fuses the batch of all steps differently from one step's batch)
    np.testing.assert_allclose(stored[1:][carried], np.asarray(out["decoder_state"])[carried], rtol=1e-5, atol=1e-6)
    assert np.abs(stored[1:][carried]).max() > 1e-3


def test_stored_states_reproduce_the_log_probabilities(trainer):
    """Replaying a trajectory through the loss's forward pass gives the stored log-probabilities: ratio 1."""
    state = trainer.init(jax.random.PRNGKey(2))
    traj = jax.jit(trainer._rollout)(state, jax.random.PRNGKey(3))[3]
    batch = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), traj._replace(metrics={}))
    pol = state.policy
    out = network_outputs(trainer.agent, pol, batch.ref_obs, batch.prop_obs, batch.eps, batch.decoder_state)
    log_prob = gaussian_log_prob(batch.action, out["action_mean"], out["action_log_std"])
    np.testing.assert_allclose(np.asarray(log_prob), np.asarray(batch.log_prob), rtol=1e-6, atol=1e-4)
    adv = jnp.linspace(-1.0, 1.0, batch.action.shape[0])
    kwargs = dict(clip_epsilon=0.2, value_cost=0.5, entropy_cost=0.0, kl_weight=0.0, ar1_alpha=0.0)
    _, info = compute_ppo_loss(pol.params, trainer.agent, pol.ref_stats, pol.prop_stats, batch, adv, adv, **kwargs)
    assert float(info["policy/approx_kl"]) < 1e-6 and float(info["policy/clip_fraction"]) == 0.0
    # Zero states instead of the stored ones are another policy: the state matters.
    _, zeroed = compute_ppo_loss(
        pol.params,
        trainer.agent,
        pol.ref_stats,
        pol.prop_stats,
        batch._replace(decoder_state=jnp.zeros_like(batch.decoder_state)),
        adv,
        adv,
        **kwargs,
    )
    assert float(zeroed["policy/approx_kl"]) > 1e-6
    # And in training: every update's first (only) minibatch starts at ratio 1.
    for _ in range(2):
        state, m = trainer.update(state)
        assert float(m["policy/approx_kl"]) < 1e-6 and np.isfinite(float(m["loss/policy"]))


def test_a_recurrent_policy_needs_its_state():
    from mimic_mjx.agents.networks import init_params
    from mimic_mjx.agents.normalizer import RunningStats
    from mimic_mjx.agents.policy import PolicyParams, make_policy

    cfg = _cfg("lstm")
    policy = make_policy(cfg, None, 6, 5, 3, update=0)
    params = init_params(policy.agent, jax.random.PRNGKey(0), 6, 5, cfg.agent.latent_dim)
    pp = PolicyParams(params, RunningStats.create(6), RunningStats.create(5))
    policy = make_policy(cfg, pp, 6, 5, 3, update=0)
    assert policy.decoder_state_size == 2 * SIZE and policy.initial_state((4,)).shape == (4, 2 * SIZE)
    with pytest.raises(ValueError, match="lstm decoder needs its state"):
        policy.act(np.zeros((4, 6)), np.zeros((4, 5)))
    a1, ex = policy.act(np.ones((4, 6)), np.ones((4, 5)), decoder_state=policy.initial_state((4,)))
    a2, _ = policy.act(np.ones((4, 6)), np.ones((4, 5)), decoder_state=ex["decoder_state"])
    assert ex["decoder_state"].shape == (4, 2 * SIZE) and not np.allclose(a1, a2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, clips):
    """LSTM: one run of 3 updates straight through, one stopped after 2 and resumed."""
    root = tmp_path_factory.mktemp("lstm")
    cfg = _cfg("lstm")
    short = cfg.replace(train=cfg.train.__class__(**{**cfg.train.__dict__, "total_steps": 64}))
    train(cfg, root / "full", clips, log=lambda m: None)
    train(short, root / "part", clips, log=lambda m: None)
    train(cfg, root / "part", resume=True, log=lambda m: None)
    return root, cfg


def _restore(run_dir, cfg, clips):
    ck = Checkpoints(run_dir / "checkpoints")
    try:
        return ck.restore(jax.eval_shape(PPOTrainer(cfg, build_env(cfg, clips), mesh=None).init, jax.random.PRNGKey(0)))
    finally:
        ck.close()


def test_lstm_resume_is_exact(runs, clips):
    root, cfg = runs
    a, b = _restore(root / "full", cfg, clips), _restore(root / "part", cfg, clips)
    assert int(a.updates) == 3 and np.abs(np.asarray(a.decoder_state)).max() > 0  # the carried state was stored
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_rollouts_record_the_state_as_layers(runs, clips):
    root, _ = runs
    policy = load_policy(root / "full")
    recs = collect(policy, build_eval_env(policy.config, clips[:1], body=policy.body))
    layers = recs["layers"]
    assert layer_order(layers) == ["encoder_0", "decoder_cell", "decoder_hidden", "decoder_0"]
    tracked = recs["tracked"][0, 0]
    hidden, cell = layers["decoder_hidden"][0, 0][tracked], layers["decoder_cell"][0, 0][tracked]
    assert hidden.shape[-1] == cell.shape[-1] == SIZE and np.all(np.isfinite(hidden))
    # Each step's recorded hidden state is the one the policy reaches stepping from zeros.
    env = build_eval_env(policy.config, clips[:1], body=policy.body)
    s = env.reset_to(jax.random.PRNGKey(0), 0, 0)
    _, ex = policy.act(s.ref_obs, s.prop_obs, decoder_state=policy.initial_state())
    np.testing.assert_allclose(np.asarray(ex["decoder_state"])[SIZE:], hidden[0], rtol=1e-5, atol=1e-6)


def test_onnx_closed_loop_carries_the_state(runs, clips):
    """benchmarks/onnx_closed_loop.py: onnxruntime and JAX drive the body alike with an LSTM decoder."""
    import importlib.util
    from pathlib import Path

    pytest.importorskip("onnxruntime")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "onnx_closed_loop.py"
    spec = importlib.util.spec_from_file_location("onnx_closed_loop", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    root, _ = runs
    res = bench.closed_loop(root / "full", clips[:1], max_steps=10, log=lambda s: None)
    assert res["max_abs_action_diff"] < 1e-5
    o, j = res["rollouts"]["onnx"][0], res["rollouts"]["jax"][0]
    np.testing.assert_allclose(o["qpos"], j["qpos"], atol=1e-4)
    assert np.abs(j["decoder_state"][-1]).max() > 0 and not np.any(j["decoder_state"][0])


def test_a_checkpoint_of_another_decoder_is_a_one_line_error(runs, clips, tmp_path):
    root, cfg = runs
    mlp = cfg.replace(agent=cfg.agent.__class__(**{**cfg.agent.__dict__, "decoder": "mlp"}))
    with pytest.raises(RunDirError, match=r"holds a decoder lstm\(8\) -> MLP \[16\].* builds MLP \[16\]") as e:
        _restore(root / "full", mlp, clips)
    run = tmp_path / "edited"
    shutil.copytree(root / "full", run)
    stored = json.loads((run / "config.json").read_text())
    stored["agent"]["decoder"] = "gru"
    (run / "config.json").write_text(json.dumps(stored))
    with pytest.raises(RunDirError, match=r"holds a decoder lstm\(8\) -> MLP \[16\].*builds gru\(8\)") as e2:
        load_policy(run)
    assert "\n" not in str(e.value) + str(e2.value)


# -- PPOTrainer's hooks for transfer -------------------------------------------------------------


def test_frozen_decoder_initial_policy_and_frozen_prop_stats(clips):
    cfg = _cfg("gru", update_epochs=2, num_minibatches=2)
    env = build_env(cfg, clips)
    donor = PPOTrainer(cfg, env, mesh=None).init(jax.random.PRNGKey(5)).policy
    paste = lambda pp: pp.replace(params={**pp.params, "decoder": donor.params["decoder"]}, prop_stats=donor.prop_stats)
    tr = PPOTrainer(cfg, env, mesh=None, initial_policy=paste, frozen=("decoder",), freeze_prop_stats=True)
    state = tr.init(jax.random.PRNGKey(0))
    start = jax.device_get(state.policy)  # read now: update donates the state
    for x, y in zip(jax.tree.leaves(start.params["decoder"]), jax.tree.leaves(donor.params["decoder"]), strict=True):
        np.testing.assert_array_equal(x, np.asarray(y))
    for _ in range(3):
        state, m = tr.update(state)
    end = jax.device_get(state.policy)
    for x, y in zip(jax.tree.leaves(end.params["decoder"]), jax.tree.leaves(start.params["decoder"]), strict=True):
        assert x.tobytes() == y.tobytes()  # bit-identical
    for x, y in zip(jax.tree.leaves(end.prop_stats), jax.tree.leaves(start.prop_stats), strict=True):
        assert x.tobytes() == y.tobytes()
    assert not np.array_equal(end.params["encoder"]["out"]["kernel"], start.params["encoder"]["out"]["kernel"])
    assert not np.array_equal(end.params["log_std"], start.params["log_std"])
    assert float(end.ref_stats.count) > float(start.ref_stats.count)  # the reference statistics still learn
    assert float(m["policy/learning_rate"]) == pytest.approx(cfg.ppo.learning_rate)
    with pytest.raises(ConfigError, match="cannot freeze 'decodr'.*decoder, encoder, log_std, value_net"):
        PPOTrainer(cfg, env, mesh=None, frozen=("decodr",))


def test_state_is_split_like_the_latent_on_a_mesh(clips):
    cfg = _cfg("lstm")
    tr = PPOTrainer(cfg, build_env(cfg, clips), mesh=parallel.make_mesh(1))
    shardings = tr.state_sharding
    assert shardings.decoder_state == shardings.prev_latent == parallel.env_sharding(tr.mesh)
    state, m = tr.update(tr.init(jax.random.PRNGKey(0)))
    assert state.decoder_state.shape == (8, 2 * SIZE) and float(m["policy/approx_kl"]) < 1e-6
