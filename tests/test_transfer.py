"""mimic transfer: a trained decoder reused on a task without references (frozen, trainable, scratch)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from conftest import tiny_config_dict
from mimic_mjx import config as config_lib
from mimic_mjx.analysis.task_eval import evaluate_task
from mimic_mjx.cli.main import main
from mimic_mjx.data.synthetic import make_reaching_clips, make_still_clip
from mimic_mjx.errors import MimicError
from mimic_mjx.training.checkpoint import load_policy
from mimic_mjx.training.trainer import train
from mimic_mjx.training.transfer import TransferError, read_transfer, transfer

QUIET = {"log": lambda m: None}
# 2 updates of 8 envs x 4 steps, a checkpoint after each.
SHORT = ["train.total_steps=64", "train.checkpoint_every_updates=1", "train.log_every_updates=1", "train.seed=1"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A forelimb imitation run of 2 updates on generated reaches."""
    run = tmp_path_factory.mktemp("source") / "run"
    # Another seed than the transfers': a fresh decoder of the same shape then starts from other weights.
    train_cfg = {**tiny_config_dict()["train"], "total_steps": 64, "seed": 5}
    cfg = config_lib.from_dict({**tiny_config_dict(), "train": train_cfg})
    train(cfg, run, make_reaching_clips(3, seed=3, num_frames=30), **QUIET)
    return run


@pytest.fixture(scope="module")
def runs(source, tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    out = {}
    for mode in ("frozen", "trainable", "scratch"):
        out[mode] = root / mode
        transfer(source, out[mode], task="reach_target", decoder=mode, overrides=SHORT, **QUIET)
    return out


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(b), strict=True))


def test_frozen_decoder_is_the_source_decoder_after_training(source, runs):
    src, new = load_policy(source), load_policy(runs["frozen"])
    assert new.update == 2
    assert _same(src.params.params["decoder"], new.params.params["decoder"])
    # The decoder reads proprioception normalised as in imitation.
    assert _same(src.params.prop_stats, new.params.prop_stats)
    # The high-level policy (encoder) learned: it reads the task's observation, a new input size.
    assert new.ref_obs_size != src.ref_obs_size or not _same(src.params.params["encoder"], new.params.params["encoder"])


def test_trainable_decoder_starts_from_the_source_and_moves(source, runs):
    src, new = load_policy(source), load_policy(runs["trainable"])
    assert not _same(src.params.params["decoder"], new.params.params["decoder"])
    moved = [
        np.max(np.abs(a - b))
        for a, b in zip(_leaves(src.params.params["decoder"]), _leaves(new.params.params["decoder"]), strict=True)
    ]
    # Two small Adam steps from the source's weights: close to them, unlike a fresh decoder.
    scratch = load_policy(runs["scratch"])
    far = [
        np.max(np.abs(a - b))
        for a, b in zip(_leaves(src.params.params["decoder"]), _leaves(scratch.params.params["decoder"]), strict=True)
    ]
    assert max(moved) < 0.05 < max(far)


def test_transfer_record_and_resume_is_exact(source, runs, tmp_path):
    info = read_transfer(runs["frozen"])
    assert info["decoder"] == "frozen" and info["task"] == "reach_target"
    assert info["source_run"] == str(source.resolve()) and info["control_dt"] > 0
    part = tmp_path / "part"
    transfer(source, part, task="reach_target", decoder="frozen", overrides=[*SHORT, "train.total_steps=32"], **QUIET)
    transfer(None, part, resume=True, overrides=["train.total_steps=64"], **QUIET)
    assert _same(load_policy(part).params, load_policy(runs["frozen"]).params)


def test_evaluate_task_run_writes_success_energy_jerk_and_latents(runs, tmp_path):
    s = evaluate_task(runs["frozen"], tmp_path / "eval", instances=4, seed=0)
    assert s["instances"] == 4 and len(s["instances_detail"]) == 4
    assert 0.0 <= s["success_rate"] <= 1.0 and s["mean_energy_mj"] > 0 and np.isfinite(s["mean_jerk_m_s3"])
    lat = s["latent"]
    assert len(lat["task_mean"]) == 4 and "rms_z" in lat  # imitation latents recorded from the source
    assert "imitation_latent" in read_transfer(runs["frozen"])
    again = evaluate_task(runs["frozen"], tmp_path / "eval2", instances=4, seed=0)
    assert again["success_rate"] == s["success_rate"] and again["mean_energy_mj"] == s["mean_energy_mj"]
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["task"] == "reach_target"


def test_cli_transfer_and_evaluate(source, tmp_path, capsys):
    run = tmp_path / "cli"
    argv = ["transfer", str(source), "--task", "reach_target", "--run-dir", str(run), "--decoder", "frozen", "--set"]
    assert main([*argv, "train.total_steps=32"]) == 0
    assert main(["evaluate", str(run), "--instances", "2"]) == 0
    assert "held-out instances" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--clips", "x.h5"]) == 2
    assert "transfer run" in capsys.readouterr().err
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "success rate" in page and "reach_target" in page


def test_bad_transfers_are_named_and_leave_nothing(source, runs, tmp_path):
    with pytest.raises(MimicError, match="go_to_target"):
        transfer(source, tmp_path / "a", task="go_to_target", overrides=SHORT, **QUIET)
    with pytest.raises(TransferError, match="another shape"):
        transfer(source, tmp_path / "b", task="reach_target", overrides=[*SHORT, "agent.decoder_layers=[8]"], **QUIET)
    with pytest.raises(TransferError, match="itself a transfer run"):
        transfer(runs["frozen"], tmp_path / "c", task="reach_target", overrides=SHORT, **QUIET)
    with pytest.raises(MimicError, match="reach"):
        transfer(
            source, tmp_path / "d", task="reach_target", overrides=[*SHORT, "task.target_m=[1.0,1.0,1.0]"], **QUIET
        )
    with pytest.raises(MimicError, match="frozen"):
        transfer(source, tmp_path / "e", task="reach_target", decoder="half", overrides=SHORT, **QUIET)
    assert not any((tmp_path / n).exists() for n in "abcde")


@pytest.mark.slow
def test_rat_bowl_escape_end_to_end(tmp_path):
    """A rat imitation run's decoder drives a new policy in the heightfield bowl: train, resume, evaluate."""
    cfg = config_lib.from_dict({**tiny_config_dict(), "env": {"body": "rat"}})
    cfg = config_lib.apply_overrides(cfg, ["train.total_steps=32"])
    src = tmp_path / "rat"
    train(cfg, src, [make_still_clip("rat", num_frames=40)], **QUIET)
    run = tmp_path / "bowl"
    transfer(
        src,
        run,
        task="bowl_escape",
        decoder="frozen",
        overrides=["train.total_steps=32", "task.episode_s=0.2"],
        **QUIET,
    )
    transfer(None, run, resume=True, overrides=["train.total_steps=64"], **QUIET)
    assert load_policy(run).update == 2
    s = evaluate_task(run, tmp_path / "eval", instances=2)
    assert s["task"] == "bowl_escape" and np.isfinite(s["mean_final_distance_mm"])


def test_task_episodes_draw_randomised_physics_and_record_it():
    from mimic_mjx.bodies import get_body
    from mimic_mjx.environments.tasks import make_task_env

    sets = ["task.name=reach_target", "randomize.mass_scale=[0.5,1.5]", "randomize.init_pose_noise_rad=0.1"]
    cfg = config_lib.apply_overrides(config_lib.from_dict(tiny_config_dict()), sets)
    env = make_task_env("reach_target", cfg, get_body("mouse_forelimb"), 0.005)
    reset, step = jax.jit(jax.vmap(env.reset)), jax.jit(jax.vmap(env.step))
    s = reset(jax.random.split(jax.random.PRNGKey(0), 4))
    masses = np.asarray(s.randomize["mass"])
    assert masses.min() >= 0.5 and masses.max() <= 1.5 and not np.allclose(masses[0], masses[1])
    nxt = step(s, np.zeros((4, env.action_size), np.float32))
    m = {k: np.asarray(v) for k, v in nxt.metrics.items()}
    assert np.all(m["randomize/init_pose_rms_deg"] > 0) and np.all(np.isfinite(m["randomize/mass_scale"]))
    np.testing.assert_allclose(
        m["randomize/mass_scale"], np.asarray(jax.vmap(env.randomizer.summary)(s.randomize)["randomize/mass_scale"])
    )
    # Off: the state carries no draw and the metrics no randomize/* entries.
    plain = make_task_env(
        "reach_target",
        config_lib.apply_overrides(cfg, ["randomize.mass_scale=[1,1]", "randomize.init_pose_noise_rad=0"]),
        get_body("mouse_forelimb"),
        0.005,
    )
    s0 = jax.jit(plain.reset)(jax.random.PRNGKey(0))
    assert s0.randomize == {} and not any(k.startswith("randomize/") for k in s0.metrics)


def test_recurrent_decoder_transfers_frozen(tmp_path):
    """An LSTM decoder is reused with its state carried through the task's episodes."""
    sets = ["agent.decoder=lstm", "agent.recurrent_size=8", "train.total_steps=32", "train.seed=2"]
    cfg = config_lib.apply_overrides(config_lib.from_dict(tiny_config_dict()), sets)
    src = tmp_path / "lstm"
    train(cfg, src, make_reaching_clips(2, seed=4, num_frames=30), **QUIET)
    run = tmp_path / "reach"
    transfer(src, run, task="reach_target", decoder="frozen", overrides=["train.total_steps=32"], **QUIET)
    assert _same(load_policy(src).params.params["decoder"], load_policy(run).params.params["decoder"])
    s = evaluate_task(run, tmp_path / "eval", instances=2)
    assert np.isfinite(s["mean_final_distance_mm"]) and "rms_z" in s["latent"]
