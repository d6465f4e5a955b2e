"""Train -> checkpoint -> resume -> evaluate, run-folder safety, and the CLI's error handling."""

from __future__ import annotations

import json

import h5py
import jax
import numpy as np
import pytest

from conftest import tiny_config_dict
from mimic_mjx import config as config_lib
from mimic_mjx.analysis.evaluate import evaluate
from mimic_mjx.cli.main import main
from mimic_mjx.data.clips import write_clips
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.errors import RunDirError
from mimic_mjx.training.checkpoint import Checkpoints
from mimic_mjx.training.experiment import build_env
from mimic_mjx.training.ppo import PPOTrainer
from mimic_mjx.training.trainer import train


@pytest.fixture(scope="module")
def clips():
    c = make_reaching_clips(4, seed=7, num_frames=30)
    return c[:3], c[3:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, clips):
    """One uninterrupted run of 3 updates, and one stopped after 2 then resumed."""
    root = tmp_path_factory.mktemp("runs")
    # 96 steps = 3 updates of 8 envs x 4 steps; half the episodes start before remembered terminations.
    cfg = config_lib.from_dict({**tiny_config_dict(), "env": {"failure_start_prob": 0.5}})
    short = cfg.replace(train=cfg.train.__class__(**{**cfg.train.__dict__, "total_steps": 64}))
    full = train(cfg, root / "full", clips[0], log=lambda m: None)
    part = train(short, root / "part", clips[0], log=lambda m: None)
    resumed = train(cfg, root / "part", resume=True, log=lambda m: None)
    return root, cfg, full, part, resumed


def _restore(run_dir, cfg, clips):
    trainer = PPOTrainer(cfg, build_env(cfg, clips))
    ck = Checkpoints(run_dir / "checkpoints")
    state = ck.restore(jax.eval_shape(trainer.init, jax.random.PRNGKey(0)))
    ck.close()
    return state


@pytest.mark.slow
def test_resume_is_exact_and_training_deterministic(runs, clips):
    """Two processes' worth of training from one seed (one interrupted) end bit-identical."""
    root, cfg, full, part, resumed = runs
    assert full["updates"] == 3 and part["updates"] == 2 and resumed["updates"] == 3
    a, b = _restore(root / "full", cfg, clips[0]), _restore(root / "part", cfg, clips[0])
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(a.policy.params))
    assert int(a.updates) == 3
    # The termination memory was used and resumed with the rest; the summary names its busiest cells.
    assert float(np.sum(a.failures)) > 0
    assert full["hardest_frames"] == resumed["hardest_frames"] and full["hardest_frames"]
    top = full["hardest_frames"][0]
    clip_names = [c.name for c in clips[0]]
    assert np.asarray(a.failures)[clip_names.index(top["clip"]), top["frame"]] == pytest.approx(top["weight"], abs=1e-3)
    # The logged metrics agree too, line by line.
    lines = lambda d: [json.loads(line) for line in (root / d / "metrics.jsonl").read_text().splitlines()]
    fa, fb = lines("full"), lines("part")
    assert [r["update"] for r in fb] == [1, 2, 3]
    for ra, rb in zip(fa, fb, strict=True):
        assert ra["reward/total"] == rb["reward/total"] and ra["loss/policy"] == rb["loss/policy"]


def test_checkpoint_from_before_the_termination_memory_restores_it_empty(runs, clips, tmp_path):
    """A step written before ``TrainState.failures`` existed (empty leaves are not stored) still resumes."""
    root, cfg, *_ = runs
    state = _restore(root / "full", cfg, clips[0])
    old = Checkpoints(tmp_path / "checkpoints")
    assert old.save(3, state.replace(failures=np.zeros((0, 0), np.float32)), {"note": "older release"})
    old.close()
    template = jax.eval_shape(PPOTrainer(cfg, build_env(cfg, clips[0])).init, jax.random.PRNGKey(0))
    ck = Checkpoints(tmp_path / "checkpoints")
    back = ck.restore(template)
    ck.close()
    assert back.failures.shape == state.failures.shape and not np.any(back.failures)
    for x, y in zip(jax.tree.leaves(back.replace(failures=0)), jax.tree.leaves(state.replace(failures=0)), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_evaluate_writes_rollouts_and_summary(runs, clips, tmp_path):
    root, cfg, *_ = runs
    summary = evaluate(root / "full", clips[1], tmp_path / "eval")
    assert summary["num_clips"] == 1
    c = summary["clips"][0]
    assert 0.0 < c["fraction_tracked"] <= 1.0
    assert np.isfinite(c["joint_rmse_deg"]) and np.isfinite(c["ee_error_mm"])
    assert len(c["joint_rmse_deg_per_joint"]) == 4
    assert json.loads((tmp_path / "eval" / "summary.json").read_text()) == summary
    assert summary["ee_termination_mm"] == pytest.approx(1e3 * cfg.termination.max_ee_error_m)
    with h5py.File(tmp_path / "eval" / "rollouts.h5") as f:
        g = f["clips"][clips[1][0].name]
        steps = clips[1][0].num_frames - 1
        # The peak is the largest wrist error over the tracked steps: at least the mean, never past the end.
        # A rollout dataset (docs/rollout-format.md) of one deterministic seed.
        tracked = g["tracked"][0].astype(bool)
        peak = 1e3 * g["ee_error"][0][tracked].max(initial=0.0) if tracked.all() else None
        assert c["ee_error_mm"] <= c["peak_ee_error_mm"] == summary["peak_ee_error_mm"]
        if peak is not None:
            assert c["peak_ee_error_mm"] == pytest.approx(peak, rel=1e-5)
        assert g["qpos"].shape == (1, steps, 4)
        assert g["activation"].shape == (1, steps, 9)
        assert g["latent_mean"].shape == (1, steps, 4)
        assert g["joint_error"].shape == (1, steps, 4)
        assert set(g["layers"]) == {"encoder_0", "decoder_0"}
        assert g["layers"]["decoder_0"].shape == (1, steps, 16)
        act, n = g["activation"][0], int(tracked.sum())
        assert np.all((act[:n] >= 0) & (act[:n] <= 1))
        # Past the loss of tracking the records are NaN, never a state that looks tracked.
        assert np.isnan(act[n:]).all() and np.isfinite(act[:n]).all()


@pytest.mark.slow
def test_run_dir_protection(runs, clips, tmp_path):
    root, cfg, *_ = runs
    with pytest.raises(RunDirError, match="already holds this experiment; pass --resume"):
        train(cfg, root / "full", clips[0], log=lambda m: None)
    other = config_lib.apply_overrides(cfg, ["ppo.learning_rate=0.01"])
    with pytest.raises(RunDirError, match=r"different experiment \(differs in: ppo.learning_rate\)"):
        train(other, root / "full", clips[0], resume=True, log=lambda m: None)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not empty and is not a mimic-mjx run"):
        train(cfg, foreign, clips[0], log=lambda m: None)
    assert (foreign / "notes.txt").read_text() == "mine"
    with pytest.raises(RunDirError, match="nothing to resume"):
        train(cfg, tmp_path / "empty", resume=True, log=lambda m: None)


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys, clips):
    good = tmp_path / "good.h5"
    write_clips(good, clips[0])
    cases = [
        (["train", "--clips", str(tmp_path / "missing.h5"), "--run-dir", str(tmp_path / "r1")], "clip file not found"),
        (
            ["train", "--clips", str(good), "--run-dir", str(tmp_path / "r2"), "--set", "ppo.num_env=4"],
            "unknown config key 'ppo.num_env'",
        ),
        (
            ["train", "--clips", str(good), "--run-dir", str(tmp_path / "r3"), "--set", "env.body=cat"],
            "unknown body 'cat'",
        ),
        (["evaluate", str(tmp_path / "nope"), "--clips", str(good)], "run directory not found"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    # Nothing was left behind by the failed training commands.
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


@pytest.mark.slow
def test_cli_evaluate_with_plots(runs, clips, tmp_path, capsys):
    root, *_ = runs
    test_file = tmp_path / "test.h5"
    write_clips(test_file, clips[1])
    assert (
        main(["evaluate", str(root / "full"), "--clips", str(test_file), "--out", str(tmp_path / "ev"), "--plots", "1"])
        == 0
    )
    out = capsys.readouterr().out
    assert "mean over 1 clips" in out
    pngs = sorted(p.name for p in (tmp_path / "ev").glob("*.png"))
    assert pngs == [f"{clips[1][0].name}_joints.png", f"{clips[1][0].name}_muscles.png"]


@pytest.mark.slow
def test_cli_resume_extends_a_run(runs, capsys, tmp_path):
    import shutil

    root, *_ = runs
    run = tmp_path / "copy"
    shutil.copytree(root / "part", run)
    assert main(["train", "--run-dir", str(run), "--resume", "--set", "train.total_steps=128"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["updates"] == 4 and summary["steps_this_run"] == 32
    assert json.loads((run / "config.json").read_text())["train"]["total_steps"] == 128


@pytest.mark.slow
def test_load_policy_needs_no_trainer_and_matches_the_checkpoint(runs, clips):
    from mimic_mjx.training.checkpoint import load_policy

    root, cfg, *_ = runs
    policy = load_policy(root / "full")
    state = _restore(root / "full", cfg, clips[0])
    for x, y in zip(jax.tree.leaves(policy.params), jax.tree.leaves(state.policy), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert policy.update == 3 and policy.config == cfg and policy.action_size == 9
    env = build_env(cfg, clips[0])
    assert (policy.ref_obs_size, policy.prop_obs_size) == (env.ref_obs_size, env.prop_obs_size)
    s = env.reset_to(jax.random.PRNGKey(0), 0, 0)
    a1, ex = policy.act(s.ref_obs, s.prop_obs)
    a2, _ = policy.act(s.ref_obs, s.prop_obs)
    np.testing.assert_array_equal(a1, a2)  # deterministic: latent and action means
    np.testing.assert_array_equal(ex["latent"], ex["latent_mean"])
    b1, _ = policy.act(s.ref_obs, s.prop_obs, key=jax.random.PRNGKey(1), deterministic=False)
    b2, _ = policy.act(s.ref_obs, s.prop_obs, key=jax.random.PRNGKey(2), deterministic=False)
    assert a1.shape == b1.shape == (9,) and not np.allclose(b1, b2) and not np.allclose(a1, b1)


@pytest.mark.slow
def test_training_writes_tensorboard_and_named_metrics(runs):
    root, *_ = runs
    assert list((root / "full" / "tensorboard").glob("events.out.tfevents.*"))
    rec = json.loads((root / "full" / "metrics.jsonl").read_text().splitlines()[-1])
    for key in (
        "reward/total",
        "reward/joint",
        "reward/end_effector",
        "reward/ctrl",
        "error/joint_deg",
        "error/ee_mm",
        "episode/length",
        "episode/terminated",
        "episode/unstable",
        "loss/latent_kl",
        "policy/kl_weight",
        "policy/entropy",
        "policy/approx_kl",
        "train/steps_per_s",
    ):
        assert key in rec, key
    terms = sum(v for k, v in rec.items() if k.startswith("reward/") and k != "reward/total")
    assert rec["reward/total"] == pytest.approx(terms, rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_checkpoint_of_an_earlier_layout_is_reported(runs, clips, tmp_path, capsys):
    import shutil

    root, *_ = runs
    old = tmp_path / "old"
    shutil.copytree(root / "full", old)
    for step in (old / "checkpoints").iterdir():
        if (step / "meta").is_dir():
            shutil.rmtree(step / "meta")
    test_file = tmp_path / "test.h5"
    write_clips(test_file, clips[1])
    assert main(["evaluate", str(old), "--clips", str(test_file)]) == 2
    err = capsys.readouterr().err
    assert "written by an earlier mimic-mjx" in err and "retrain" in err and "Traceback" not in err
    # A run folder whose config uses keys of an earlier release: same kind of message.
    cfg = json.loads((old / "config.json").read_text())
    cfg["env"]["joint_scale_rad"] = 0.15
    (old / "config.json").write_text(json.dumps(cfg))
    assert main(["evaluate", str(old), "--clips", str(test_file)]) == 2
    err = capsys.readouterr().err
    assert "earlier mimic-mjx" in err and "reward.joint.scale_rad" in err and "Traceback" not in err


def test_progress_line_time_left_respects_the_time_limit():
    from mimic_mjx.training.trainer import progress_line, time_left

    # 10 of 1000 updates in 60 s: 99 min to go at this rate, but only 4 min of the limit remain.
    assert time_left(1000, 10, 10, 60.0) == pytest.approx(5940.0)
    assert time_left(1000, 10, 10, 60.0, deadline_left_s=240.0) == pytest.approx(240.0)
    line = progress_line(
        10,
        1000,
        10_000,
        500.0,
        {"reward/total": 0.5, "error/joint_deg": 3.0, "error/ee_mm": 0.4, "error/root_mm": 0.0},
        240.0,
    )
    assert "left 4m00s" in line and "joint err 3.00 deg" in line and "root err" not in line
    worm = {"error/ee_mm": 0.0379, "error/body_mm": 0.0462, "error/root_mm": 0.25}  # a 1-mm body's errors
    line = progress_line(10, 1000, 10_000, 500.0, worm, 240.0)
    assert "end-effector err 37.9 um" in line and "body err 46.2 um" in line and "root err 0.2 mm" in line


@pytest.mark.slow
def test_evaluation_scores_markers_against_recorded_keypoints(runs, clips, tmp_path):
    root, *_ = runs
    summary = evaluate(root / "full", clips[1], tmp_path / "eval")
    c = summary["clips"][0]
    assert summary["keypoint_names"] == ["Shoulder", "Elbow", "Wrist"]
    assert set(c["keypoint_error_mm_per_keypoint"]) == {"Shoulder", "Elbow", "Wrist"}
    # Synthetic reaches put the wrist keypoint on the wrist body: both scores agree.
    assert c["keypoint_error_mm_per_keypoint"]["Wrist"] == pytest.approx(c["ee_error_mm"], rel=1e-4)
    assert summary["mean_keypoint_error_mm"] == pytest.approx(c["keypoint_error_mm"])
    with h5py.File(tmp_path / "eval" / "rollouts.h5") as f:
        g = f["clips"][clips[1][0].name]
        steps = g["qpos"].shape[1]
        assert g["markers"].shape == (1, steps, 3, 3) and g["keypoint_error"].shape == (1, steps, 3)
        assert g["reference_keypoints"].shape == (steps, 3, 3)
        assert [n.decode() for n in f["keypoint_names"][()]] == ["Shoulder", "Elbow", "Wrist"]


def test_each_training_session_records_its_machine(runs):
    root = runs[0]
    full = [json.loads(x) for x in (root / "full" / "provenance.jsonl").read_text().splitlines()]
    part = [json.loads(x) for x in (root / "part" / "provenance.jsonl").read_text().splitlines()]
    assert len(full) == 1 and full[0]["mode"] == "new" and full[0]["start_update"] == 0
    assert [p["mode"] for p in part] == ["new", "resume"] and part[1]["start_update"] == 2
    assert part[1]["versions"]["jax"] == jax.__version__ and "cpu" in part[1]["devices"].lower()
