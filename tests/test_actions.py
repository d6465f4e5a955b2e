"""env.action: absolute (the whole control range) and relative (servo targets from the joint's angle)."""

from __future__ import annotations

import jax.numpy as jnp
import mujoco
import numpy as np
import onnxruntime as ort
import pytest

from mimic_mjx import config as config_lib
from mimic_mjx.agents import export
from mimic_mjx.bodies import get_body
from mimic_mjx.bodies.layout import JointLayout
from mimic_mjx.environments.actions import ActionMap, relative_qpos_index
from mimic_mjx.errors import ConfigError

SERVOS = """
<mujoco>
  <worldbody>
    <body name="a"><joint name="j0" axis="0 1 0" range="-1 1"/><geom size="0.01" fromto="0 0 0 0.1 0 0" type="capsule"/>
      <body name="b" pos="0.1 0 0"><joint name="j1" axis="0 1 0" range="-2 0.5"/>
        <geom size="0.01" fromto="0 0 0 0.1 0 0" type="capsule"/></body></body>
  </worldbody>
  <actuator>
    <position name="s1" joint="j1" kp="2" kv="0.1" ctrlrange="-2 0.5"/>
    <position name="s0" joint="j0" kp="3" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""


def test_absolute_spans_the_control_range():
    model = mujoco.MjModel.from_xml_string(SERVOS)
    amap = ActionMap(model)
    np.testing.assert_allclose(amap(jnp.array([-40.0, 40.0])), [-2.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(amap(jnp.zeros(2)), [-0.75, 0.0], atol=1e-6)


def test_relative_moves_targets_from_the_joint_angles_within_range_and_limits():
    model = mujoco.MjModel.from_xml_string(SERVOS)
    np.testing.assert_array_equal(relative_qpos_index(model), [1, 0])  # actuator order, not joint order
    amap = ActionMap(model, "relative", range_rad=0.3)
    qpos = jnp.array([0.2, -1.0])
    np.testing.assert_allclose(amap(jnp.zeros(2), qpos), [-1.0, 0.2], atol=1e-6)  # zero holds the posture
    np.testing.assert_allclose(amap(jnp.array([40.0, -40.0]), qpos), [-0.7, -0.1], atol=1e-6)  # +-range at most
    np.testing.assert_allclose(amap(jnp.array([40.0, 40.0]), jnp.array([0.9, 0.4])), [0.5, 1.0], atol=1e-6)  # clipped


def test_relative_accepts_servos_a_perturbation_silenced():
    """`mimic experiment` scales a servo's gain and bias to 0 (an amputated leg): still a servo."""
    model = mujoco.MjModel.from_xml_string(SERVOS)
    model.actuator_gainprm[0, :3] = 0.0
    model.actuator_biasprm[0, :3] = 0.0
    np.testing.assert_array_equal(relative_qpos_index(model), [1, 0])


def test_relative_refuses_muscles_and_bad_modes_naming_the_actuators():
    forelimb = get_body("mouse_forelimb").compile_trainable()
    with pytest.raises(ConfigError, match="body mouse_forelimb: actuators Pec_C, Lat.*not position servos.*absolute"):
        ActionMap(forelimb, "relative", body="mouse_forelimb")
    with pytest.raises(ConfigError, match="env.action must be 'absolute' or 'relative', got 'delta'"):
        config_lib.apply_overrides(config_lib.ExperimentConfig(), ["env.action=delta"])
    with pytest.raises(ConfigError, match="action_range_rad"):
        config_lib.apply_overrides(config_lib.ExperimentConfig(), ["env.action_range_rad=0"])


def test_onnx_ctrl_of_a_relative_controller_matches_the_task(tmp_path):
    """The exported graph takes each servo's joint angle from proprio_obs as the task does."""
    import jax

    from mimic_mjx.agents.networks import init_params
    from mimic_mjx.agents.normalizer import RunningStats
    from mimic_mjx.agents.policy import PolicyParams, make_policy
    from test_export import _observations

    cfg = config_lib.apply_overrides(get_body("stick_insect").default_config(), ["env.action=relative"])
    model = get_body("stick_insect").compile_trainable()  # 18 position servos
    ref_size, prop_size = 300, 200  # synthetic sizes: building the task to measure them would be slow
    params = init_params(
        make_policy(cfg, None, ref_size, prop_size, model.nu, update=0).agent,
        jax.random.PRNGKey(1),
        ref_size,
        prop_size,
        cfg.agent.latent_dim,
    )
    params = jax.tree_util.tree_map_with_path(lambda p, x: x * 100.0 if "out" in str(p) else x, params)
    rng = np.random.default_rng(2)
    stats = lambda n: RunningStats(
        count=jnp.float32(1e5), mean=jnp.asarray(rng.normal(0, 1, n), jnp.float32), m2=jnp.full(n, 1e5, jnp.float32)
    )
    pp = PolicyParams(params=params, ref_stats=stats(ref_size), prop_stats=stats(prop_size))
    policy = make_policy(cfg, pp, ref_size, prop_size, model.nu, update=0)
    idx = relative_qpos_index(model)
    hinges = list(JointLayout.from_model(model).hinge_qpos)
    columns = [hinges.index(i) for i in idx]
    path = tmp_path / "rel.onnx"
    info = export.export_policy_onnx(policy, path, model.actuator_ctrlrange, relative=(0.4, columns))
    assert info["metadata"]["action_mode"].startswith("relative")
    ref = _observations(policy.params.ref_stats, 8, 0)
    prop = _observations(policy.params.prop_stats, 8, 1)
    action, _ = policy.act(ref, prop)
    (ctrl,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        ["ctrl"], {"reference_obs": ref, "proprio_obs": prop}
    )
    qpos = np.zeros((8, model.nq), np.float32)
    qpos[:, hinges] = prop[:, : len(hinges)]
    amap = ActionMap(model, "relative", 0.4)
    want = np.stack(
        [np.asarray(amap(jnp.asarray(a), jnp.asarray(q))) for a, q in zip(np.asarray(action), qpos, strict=True)]
    )
    np.testing.assert_allclose(ctrl, want, atol=1e-5, rtol=1e-5)
