"""ONNX export: onnxruntime acts as the JAX policy does, documented inputs/outputs, errors, closed loop."""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import tiny_config_dict
from mimic_mjx import config as config_lib
from mimic_mjx.agents import export
from mimic_mjx.agents.networks import init_params
from mimic_mjx.agents.normalizer import RunningStats
from mimic_mjx.agents.policy import PolicyParams, make_policy
from mimic_mjx.bodies import get_body
from mimic_mjx.cli import export as export_cli
from mimic_mjx.cli.export import export_onnx
from mimic_mjx.data.clips import write_clips
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.errors import MimicError, RunDirError
from mimic_mjx.training.checkpoint import load_policy
from mimic_mjx.training.trainer import train

# float32 on both sides; only the order of the matrix products' sums may differ.
ATOL, RTOL = 1e-5, 1e-4
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "onnx_closed_loop.py"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    clips = make_reaching_clips(2, seed=3, num_frames=30)
    train(config_lib.from_dict(tiny_config_dict()), root / "run", clips, log=lambda m: None)
    return root / "run", clips


def _session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _observations(stats: RunningStats, n: int, seed: int) -> np.ndarray:
    """Observations at the scale the normaliser saw, a few beyond its +-10 clip."""
    rng = np.random.default_rng(seed)
    mean, std = np.asarray(stats.mean), np.asarray(stats.std)
    x = mean + std * rng.normal(0.0, 2.0, (n, mean.size))
    x[0, : min(3, mean.size)] = mean[:3] + 30.0 * std[:3]  # clipped at +10 in both
    return x.astype(np.float32)


def _ctrl(action, ctrlrange):
    lo, hi = ctrlrange[:, 0], ctrlrange[:, 1]
    return lo + 0.5 * (np.tanh(action) + 1.0) * (hi - lo)


def _check_full(policy, path, ctrlrange, seed=0):
    ref = _observations(policy.params.ref_stats, 16, seed)
    prop = _observations(policy.params.prop_stats, 16, seed + 1)
    action, extras = policy.act(ref, prop)
    names = ["action", "ctrl", "latent_mean"]
    outs = _session(path).run(names, {"reference_obs": ref, "proprio_obs": prop})
    got = dict(zip(names, outs, strict=True))
    np.testing.assert_allclose(got["latent_mean"], np.asarray(extras["latent_mean"]), atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(got["action"], np.asarray(action), atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(got["ctrl"], _ctrl(np.asarray(action), ctrlrange), atol=ATOL, rtol=RTOL)
    assert got["action"].shape == (16, policy.action_size)
    return got


def test_onnx_controller_acts_as_the_jax_policy(run, tmp_path):
    run_dir, _ = run
    info = export_onnx(run_dir, tmp_path / "policy.onnx")
    policy = load_policy(run_dir)
    model = get_body(policy.config.env.body).compile_trainable()
    got = _check_full(policy, tmp_path / "policy.onnx", model.actuator_ctrlrange)
    assert np.all(got["ctrl"] >= model.actuator_ctrlrange[:, 0]) and np.all(
        got["ctrl"] <= model.actuator_ctrlrange[:, 1]
    )
    # A batch of one answers as the batch does, row for row: the batch dimension is dynamic.
    one = _session(tmp_path / "policy.onnx").run(
        ["action"],
        {
            "reference_obs": _observations(policy.params.ref_stats, 16, 0)[3:4],
            "proprio_obs": _observations(policy.params.prop_stats, 16, 1)[3:4],
        },
    )[0]
    np.testing.assert_allclose(one[0], got["action"][3], atol=1e-6)
    assert info["inputs"] == {
        "reference_obs": ["batch", policy.ref_obs_size],
        "proprio_obs": ["batch", policy.prop_obs_size],
    }
    assert list(info["outputs"]) == ["latent_mean", "action", "ctrl"]


def test_model_documents_inputs_outputs_and_provenance(run, tmp_path):
    run_dir, _ = run
    export_onnx(run_dir, tmp_path / "policy.onnx")
    m = onnx.load(tmp_path / "policy.onnx")
    onnx.checker.check_model(m, full_check=True)
    for v in list(m.graph.input) + list(m.graph.output):
        assert len(v.doc_string) > 20, v.name
        assert v.type.tensor_type.shape.dim[0].dim_param == "batch"
    meta = {p.key: p.value for p in m.metadata_props}
    policy = load_policy(run_dir)
    model = get_body("mouse_forelimb").compile_trainable()
    assert meta["body"] == "mouse_forelimb" and meta["part"] == "controller"
    assert int(meta["ref_obs_size"]) == policy.ref_obs_size and int(meta["prop_obs_size"]) == policy.prop_obs_size
    assert json.loads(meta["actuator_names"]) == [model.actuator(i).name for i in range(model.nu)]
    assert int(meta["checkpoint_update"]) == policy.update > 0
    assert Path(meta["run_dir"]) == run_dir.resolve()
    from mimic_mjx import __version__

    assert meta["mimic_version"] == __version__ and m.producer_name == "mimic-mjx"


def test_decoder_only_matches_the_jax_decoder(run, tmp_path):
    run_dir, _ = run
    info = export_onnx(run_dir, tmp_path / "decoder.onnx", decoder_only=True)
    policy = load_policy(run_dir)
    assert [i.name for i in onnx.load(tmp_path / "decoder.onnx").graph.input] == ["latent", "proprio_obs"]
    assert info["metadata"]["part"] == "decoder" and "reference_obs" not in info["inputs"]
    latent = np.random.default_rng(5).normal(0.0, 1.5, (16, policy.agent.latent_dim)).astype(np.float32)
    prop = _observations(policy.params.prop_stats, 16, 6)
    pp = policy.params
    want, _, _ = policy.agent.apply(
        {"params": pp.params},
        jnp.asarray(latent),
        pp.prop_stats.normalize(jnp.asarray(prop)),
        policy.initial_state((16,)),
        method=policy.agent.decode,
    )
    action, ctrl = _session(tmp_path / "decoder.onnx").run(["action", "ctrl"], {"latent": latent, "proprio_obs": prop})
    np.testing.assert_allclose(action, np.asarray(want), atol=ATOL, rtol=RTOL)
    ctrlrange = get_body("mouse_forelimb").compile_trainable().actuator_ctrlrange
    np.testing.assert_allclose(ctrl, _ctrl(np.asarray(want), ctrlrange), atol=ATOL, rtol=RTOL)
    # The full controller is this decoder fed the encoder's latent mean.
    export_onnx(run_dir, tmp_path / "full.onnx")
    ref = _observations(pp.ref_stats, 16, 7)
    z, a_full = _session(tmp_path / "full.onnx").run(
        ["latent_mean", "action"], {"reference_obs": ref, "proprio_obs": prop}
    )
    (a_dec,) = _session(tmp_path / "decoder.onnx").run(["action"], {"latent": z, "proprio_obs": prop})
    np.testing.assert_allclose(a_dec, a_full, atol=1e-6)


def _rat_policy():
    """The rat's default networks with random parameters and statistics, at synthetic observation sizes."""
    cfg = get_body("rat").default_config()
    model = get_body("rat").compile_trainable()
    ref_size, prop_size, nu = 470, 310, model.nu  # building the rat's task to measure them would be slow
    policy = make_policy(cfg, None, ref_size, prop_size, nu, update=7)
    params = init_params(policy.agent, jax.random.PRNGKey(1), ref_size, prop_size, cfg.agent.latent_dim)
    # Scale the decoder's output layer (initialised at 0.01) so actions span the tanh's range, as trained ones do.
    params = jax.tree_util.tree_map_with_path(
        lambda p, x: x * 100.0 if "decoder" in str(p) and "out" in str(p) else x, params
    )
    rng = np.random.default_rng(2)
    stats = lambda n: RunningStats(
        count=jnp.float32(1e5),
        mean=jnp.asarray(rng.normal(0, 50, n), jnp.float32),
        m2=jnp.asarray(1e5 * rng.uniform(0.01, 400.0, n) ** 2, jnp.float32),
    )
    pp = PolicyParams(params=params, ref_stats=stats(ref_size), prop_stats=stats(prop_size))
    return make_policy(cfg, pp, ref_size, prop_size, nu, update=7), model


def test_rat_sized_controller_and_decoder(tmp_path):
    policy, model = _rat_policy()
    names = [model.actuator(i).name for i in range(model.nu)]
    info = export.export_policy_onnx(policy, tmp_path / "rat.onnx", model.actuator_ctrlrange, actuator_names=names)
    got = _check_full(policy, tmp_path / "rat.onnx", model.actuator_ctrlrange, seed=10)
    assert np.std(got["action"]) > 0.3  # actions of a size the tolerance means something for
    assert info["metadata"]["body"] == "rat" and json.loads(info["metadata"]["actuator_names"]) == names
    assert info["inputs"]["reference_obs"] == ["batch", 470] and info["outputs"]["latent_mean"] == ["batch", 60]
    export.export_policy_onnx(policy, tmp_path / "dec.onnx", model.actuator_ctrlrange, decoder_only=True)
    latent = got["latent_mean"]
    prop = _observations(policy.params.prop_stats, 16, 11)
    (action,) = _session(tmp_path / "dec.onnx").run(["action"], {"latent": latent, "proprio_obs": prop})
    want, _ = policy.act(_observations(policy.params.ref_stats, 16, 10), prop)
    np.testing.assert_allclose(action, np.asarray(want), atol=ATOL, rtol=RTOL)
    with pytest.raises(MimicError, match="38 actions"):
        export.export_policy_onnx(policy, tmp_path / "bad.onnx", model.actuator_ctrlrange[:5])


def _recurrent_policy(decoder: str):
    """A small policy of a recurrent decoder, random parameters and statistics, on the forelimb's actuators."""
    d = tiny_config_dict()
    d["agent"].update(decoder=decoder, recurrent_size=8)
    cfg = config_lib.from_dict(d)
    ref_size, prop_size, nu = 12, 10, 5
    policy = make_policy(cfg, None, ref_size, prop_size, nu, update=3)
    params = init_params(policy.agent, jax.random.PRNGKey(4), ref_size, prop_size, cfg.agent.latent_dim)
    # Actions spanning the tanh's range, as trained ones do (the output layer starts at 0.01).
    params = jax.tree_util.tree_map_with_path(
        lambda p, x: x * 100.0 if "decoder" in str(p) and "out" in str(p) else x, params
    )
    rng = np.random.default_rng(3)
    stats = lambda n: RunningStats(
        count=jnp.float32(1e3), mean=jnp.asarray(rng.normal(0, 2, n), jnp.float32), m2=jnp.full(n, 4e3, jnp.float32)
    )
    return make_policy(cfg, PolicyParams(params, stats(ref_size), stats(prop_size)), ref_size, prop_size, nu, update=3)


@pytest.mark.parametrize("decoder", ["lstm", "gru"])
def test_recurrent_decoder_state_in_and_out_match_jax_over_steps(decoder, tmp_path):
    policy = _recurrent_policy(decoder)
    size = 16 if decoder == "lstm" else 8
    ctrlrange = np.tile(np.asarray([[0.0, 1.0]], np.float32), (policy.action_size, 1))
    info = export.export_policy_onnx(policy, tmp_path / "p.onnx", ctrlrange)
    assert info["inputs"]["decoder_state"] == ["batch", size] and info["outputs"]["next_decoder_state"] == [
        "batch",
        size,
    ]
    assert info["metadata"]["decoder"] == decoder and info["metadata"]["decoder_state_size"] == str(size)
    m = onnx.load(tmp_path / "p.onnx")
    assert all(len(v.doc_string) > 20 for v in list(m.graph.input) + list(m.graph.output))
    export.export_policy_onnx(policy, tmp_path / "d.onnx", ctrlrange, decoder_only=True)
    full, dec = _session(tmp_path / "p.onnx"), _session(tmp_path / "d.onnx")
    assert [i.name for i in dec.get_inputs()] == ["latent", "proprio_obs", "decoder_state"]
    # Five steps from zeros, each fed the state the last one returned, in both: the states stay together.
    s_onnx = s_jax = policy.initial_state((16,))
    names = ["action", "ctrl", "next_decoder_state", "latent_mean"]
    for t in range(5):
        ref = _observations(policy.params.ref_stats, 16, 20 + t)
        prop = _observations(policy.params.prop_stats, 16, 40 + t)
        got = dict(
            zip(
                names,
                full.run(names, {"reference_obs": ref, "proprio_obs": prop, "decoder_state": np.asarray(s_onnx)}),
                strict=True,
            )
        )
        action, extras = policy.act(ref, prop, decoder_state=s_jax)
        np.testing.assert_allclose(got["action"], np.asarray(action), atol=ATOL, rtol=RTOL)
        np.testing.assert_allclose(got["next_decoder_state"], np.asarray(extras["decoder_state"]), atol=ATOL, rtol=RTOL)
        np.testing.assert_allclose(got["ctrl"], _ctrl(np.asarray(action), ctrlrange), atol=ATOL, rtol=RTOL)
        feed = {"latent": got["latent_mean"], "proprio_obs": prop, "decoder_state": np.asarray(s_onnx)}
        a_dec, s_dec = dec.run(["action", "next_decoder_state"], feed)
        np.testing.assert_allclose(a_dec, got["action"], atol=1e-6)
        np.testing.assert_allclose(s_dec, got["next_decoder_state"], atol=1e-6)
        s_onnx, s_jax = got["next_decoder_state"], extras["decoder_state"]
    assert np.std(got["action"]) > 0.3 and np.abs(s_onnx).max() > 0.05  # sizes the tolerance means something for


def test_bad_runs_and_outputs_are_one_line_errors(run, tmp_path):
    run_dir, _ = run
    with pytest.raises(RunDirError, match="run folder not found") as e:
        export_onnx(tmp_path / "nope", tmp_path / "p.onnx")
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    shutil.copy(run_dir / "config.json", untrained / "config.json")
    with pytest.raises(RunDirError, match="no checkpoint.*train it first.*or pass the folder") as e2:
        export_onnx(untrained, tmp_path / "p.onnx")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(MimicError, match="cannot write") as e3:
        export_onnx(run_dir, blocker / "policy.onnx")
    with pytest.raises(MimicError, match="is a folder") as e4:
        export_onnx(run_dir, tmp_path)
    for exc in (e, e2, e3, e4):
        assert "\n" not in str(exc.value)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*tmp*"))


def test_subcommand_parses_and_writes(run, tmp_path, capsys):
    run_dir, _ = run
    ap = argparse.ArgumentParser()
    export_cli.add_parser(ap.add_subparsers(dest="command"))
    args = ap.parse_args(["export", str(run_dir), "--out", str(tmp_path / "d.onnx"), "--decoder-only"])
    assert args.func(args) == 0
    assert "latent" in capsys.readouterr().out
    assert [o.name for o in onnx.load(tmp_path / "d.onnx").graph.output] == ["action", "ctrl"]


def _bench():
    spec = importlib.util.spec_from_file_location("onnx_closed_loop", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_closed_loop_onnx_and_jax_rollouts_agree(run):
    run_dir, clips = run
    bench = _bench()
    res = bench.closed_loop(run_dir, clips[:1], max_steps=12, log=lambda s: None)
    assert res["max_abs_action_diff"] < ATOL
    o, j = res["rollouts"]["onnx"][0], res["rollouts"]["jax"][0]
    assert o["steps"] == j["steps"] == 12 and o["finite"] and j["finite"]
    # The same controller in the same physics: trajectories agree to float32 noise, amplified a little by the loop.
    np.testing.assert_allclose(o["qpos"], j["qpos"], atol=1e-4)
    assert abs(res["onnx"]["mean_joint_rmse_rad"] - res["jax"]["mean_joint_rmse_rad"]) < 1e-4
    assert res["onnx"]["mean_fraction_within"] == res["jax"]["mean_fraction_within"]
    # The loop moves the body: the first step's observation is not the last one's.
    assert not np.allclose(j["prop_obs"][0], j["prop_obs"][-1])


def test_closed_loop_script_prints_json_last(run, tmp_path, capsys):
    run_dir, clips = run
    write_clips(tmp_path / "clips.h5", clips[:1])
    export_onnx(run_dir, tmp_path / "p.onnx")
    bench = _bench()
    assert (
        bench.main(
            [
                str(run_dir),
                "--clips",
                str(tmp_path / "clips.h5"),
                "--onnx",
                str(tmp_path / "p.onnx"),
                "--max-steps",
                "3",
            ]
        )
        == 0
    )
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last) == {"onnx", "jax", "max_abs_action_diff"}
    assert last["onnx"]["clips"][clips[0].name]["steps"] == 3 and last["max_abs_action_diff"] < ATOL
