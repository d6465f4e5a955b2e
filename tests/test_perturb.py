"""Perturbation specs: each kind changes the physics or the network as stated; bad input is refused."""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from mimic_mjx.agents.networks import init_params as init_net
from mimic_mjx.agents.networks import make_agent
from mimic_mjx.agents.normalizer import RunningStats
from mimic_mjx.agents.policy import PolicyParams, network_outputs
from mimic_mjx.analysis import perturb as pt
from mimic_mjx.analysis import perturb_apply as PA
from mimic_mjx.bodies import get_body
from mimic_mjx.bodies.registry import CONFIGS
from mimic_mjx.config import AgentConfig
from mimic_mjx.errors import MimicError

FREE_BODY = """
<mujoco>
  <option timestep="0.001"/>
  <worldbody>
    <body name="ball" pos="0 0 1"><freejoint/><geom size="0.1" mass="1" contype="0" conaffinity="0"/></body>
    <body name="cart"><joint name="slide" type="slide" axis="1 0 0"/><geom size="0.1" mass="1" contype="0"/></body>
    <body name="arm">
      <joint name="hinge" axis="0 1 0" range="-1 1"/><geom size="0.1" mass="1" pos="0.2 0 0" contype="0"/>
    </body>
  </worldbody>
  <actuator>
    <position name="servo" joint="slide" kp="10" kv="1"/>
    <muscle name="auto" joint="hinge" force="-1" scale="50"/>
  </actuator>
</mujoco>
"""


def parse(*entries):
    return pt.parse_perturbations(list(entries))


def arrays(model):
    return {k: getattr(model, k) for k in dir(model) if isinstance(getattr(model, k, None), np.ndarray)}


@pytest.fixture(scope="module")
def forelimb():
    return get_body("mouse_forelimb").compile_trainable()


@pytest.fixture(scope="module")
def tiny():
    return mujoco.MjModel.from_xml_string(FREE_BODY)


def test_gravity_scale_doubles_free_fall(tiny):
    accel = []
    for model in (tiny, PA.apply_to_model(tiny, parse({"kind": "gravity", "scale": 2.0}))):
        data = mujoco.MjData(model)
        mujoco.mj_step(model, data)
        accel.append(data.qacc[2])
    assert accel[0] == pytest.approx(-9.81)
    assert accel[1] == pytest.approx(2 * accel[0])
    vec = PA.apply_to_model(tiny, parse({"kind": "gravity", "vector": [1, 0, 0]}))
    np.testing.assert_array_equal(vec.opt.gravity, [1, 0, 0])


def test_mass_scales_named_bodies_only_and_leaves_input(forelimb):
    before = arrays(forelimb)
    out = PA.apply_to_model(forelimb, parse({"kind": "mass", "scale": 2.0, "bodies": ["humerus"]}))
    h = forelimb.body("humerus").id
    others = np.arange(forelimb.nbody) != h
    assert out.body_mass[h] == 2 * forelimb.body_mass[h]
    np.testing.assert_array_equal(out.body_inertia[h], 2 * forelimb.body_inertia[h])
    np.testing.assert_array_equal(out.body_mass[others], forelimb.body_mass[others])
    np.testing.assert_array_equal(out.body_inertia[others], forelimb.body_inertia[others])
    assert out.body_subtreemass[1] > forelimb.body_subtreemass[1]  # constants were recomputed
    for k, v in before.items():
        np.testing.assert_array_equal(getattr(forelimb, k), v, err_msg=k)
    everything = PA.apply_to_model(forelimb, parse({"kind": "mass", "scale": 3.0, "bodies": "all"}))
    np.testing.assert_allclose(everything.body_mass, 3 * forelimb.body_mass)


def test_length_scales_child_positions_sites_and_capsule(forelimb):
    out = PA.apply_to_model(forelimb, parse({"kind": "length", "scale": 1.1, "bodies": ["ulna"]}))
    ulna = forelimb.body("ulna").id
    for child in ("radius", "elbow"):
        np.testing.assert_allclose(out.body(child).pos, 1.1 * forelimb.body(child).pos, rtol=1e-12)
    np.testing.assert_array_equal(out.body("wrist_body").pos, forelimb.body("wrist_body").pos)
    sites = forelimb.site_bodyid == ulna
    np.testing.assert_allclose(out.site_pos[sites], 1.1 * forelimb.site_pos[sites])
    np.testing.assert_array_equal(out.site_pos[~sites], forelimb.site_pos[~sites])
    g = np.flatnonzero(forelimb.geom_bodyid == ulna)[0]
    assert out.geom_size[g, 1] == pytest.approx(1.1 * forelimb.geom_size[g, 1])
    assert out.geom_size[g, 0] == forelimb.geom_size[g, 0]
    # A muscle inserting on the ulna changes length; its length range follows at the reference pose.
    a = forelimb.actuator("Triceps_Lateral").id
    assert out.tendon_length0[a] != pytest.approx(forelimb.tendon_length0[a], rel=1e-6)
    ratio = out.actuator_lengthrange[a] / forelimb.actuator_lengthrange[a]
    assert ratio[0] == pytest.approx(out.tendon_length0[a] / forelimb.tendon_length0[a])
    kept = PA.apply_to_model(
        forelimb, parse({"kind": "length", "scale": 1.1, "bodies": ["ulna"], "lengthrange": "keep"})
    )
    np.testing.assert_array_equal(kept.actuator_lengthrange, forelimb.actuator_lengthrange)


def test_muscle_force_scale_scales_actuator_force(forelimb):
    spec = parse(
        {"kind": "muscle_force", "scale": 0.5, "actuators": "all"},
        {"kind": "actuator_gain", "scale": 0.0, "actuators": ["Triceps_Long"]},
    )
    out = PA.apply_to_model(forelimb, spec)
    forces = []
    for model in (forelimb, out):
        data = mujoco.MjData(model)
        data.qpos[:] = 0.1
        data.act[:] = 0.6
        data.ctrl[:] = 0.6
        mujoco.mj_forward(model, data)
        forces.append(data.actuator_force.copy())
    tl = forelimb.actuator("Triceps_Long").id
    assert np.all(forces[0] != 0)
    np.testing.assert_allclose(np.delete(forces[1], tl), 0.5 * np.delete(forces[0], tl), rtol=1e-9)
    assert forces[1][tl] == 0.0
    np.testing.assert_array_equal(out.actuator_biasprm[:, 2], out.actuator_gainprm[:, 2])


def test_name_patterns_select_in_model_order(forelimb):
    """Shell patterns pick a group of names (the worm's quadrant ``MDL*``), each once, in model order."""
    spec = parse({"kind": "muscle_force", "scale": 0.0, "actuators": ["Triceps_L*", "Triceps_Long", "PD"]})
    pt.validate(spec, forelimb)
    out = PA.apply_to_model(forelimb, spec)
    ids = {forelimb.actuator(n).id for n in ("Triceps_Lateral", "Triceps_Long", "PD")}
    silenced = {a for a in range(forelimb.nu) if out.actuator_gainprm[a, 2] == 0}
    assert silenced == ids


def test_gain_scale_on_a_non_muscle_actuator(tiny):
    out = PA.apply_to_model(tiny, parse({"kind": "actuator_gain", "scale": 0.25, "actuators": ["servo"]}))
    forces = []
    for model in (tiny, out):
        data = mujoco.MjData(model)
        data.qpos[7], data.qvel[6], data.ctrl[0] = 0.2, 0.3, 1.0
        mujoco.mj_forward(model, data)
        forces.append(data.actuator_force[0])
    assert forces[0] != 0 and forces[1] == pytest.approx(0.25 * forces[0])


def test_automatic_muscle_force_is_resolved_before_scaling(tiny):
    auto = copy.deepcopy(tiny)
    a = auto.actuator("auto").id
    auto.actuator_gainprm[a, 2] = auto.actuator_biasprm[a, 2] = -1.0  # as MuJoCo stores force="-1" before set0
    out = PA.apply_to_model(auto, parse({"kind": "muscle_force", "scale": 0.5, "actuators": ["auto"]}))
    forces = []
    for model in (auto, out):
        data = mujoco.MjData(model)
        data.act[0] = data.ctrl[a] = 0.8
        mujoco.mj_forward(model, data)
        forces.append(data.actuator_force[a])
    assert forces[0] != 0 and forces[1] == pytest.approx(0.5 * forces[0])


def test_damping_adds_to_named_joint(forelimb):
    out = PA.apply_to_model(forelimb, parse({"kind": "joint_damping", "add": 1e-5, "joints": ["elbow_joint"]}))
    dof = forelimb.joint("elbow_joint").dofadr[0]
    delta = out.dof_damping - forelimb.dof_damping
    assert delta[dof] == pytest.approx(1e-5)
    assert np.count_nonzero(delta) == 1


def test_force_pulse_window_magnitude_and_direction(forelimb):
    (spec,) = parse(
        {
            "kind": "force_pulse",
            "body": "wrist_body",
            "direction": [0, 3, 4],
            "newtons": 2.0,
            "start_s": 0.1,
            "duration_s": 0.05,
        }
    )
    times = np.arange(300) * 0.001
    xfrc = PA.force_pulse_xfrc(forelimb, spec, times)
    assert xfrc.shape == (300, forelimb.nbody, 6)
    on = np.any(xfrc != 0, axis=(1, 2))
    np.testing.assert_array_equal(np.flatnonzero(on), np.arange(100, 150))
    np.testing.assert_allclose(xfrc[120, forelimb.body("wrist_body").id], [0, 1.2, 1.6, 0, 0, 0])
    assert np.count_nonzero(xfrc[120]) == 2
    np.testing.assert_array_equal(PA.xfrc_schedule(forelimb, [spec, spec], times), 2 * xfrc)
    assert PA.apply_to_model(forelimb, [spec]).body_mass.tolist() == forelimb.body_mass.tolist()


# --- network ----------------------------------------------------------------------------------------

LATENT = 4


@pytest.fixture(scope="module")
def net():
    cfg = AgentConfig(encoder_layers=(8, 6), decoder_layers=(10, 7), value_layers=(5,), latent_dim=LATENT)
    agent = make_agent(cfg, action_size=3)
    params = init_net(agent, jax.random.PRNGKey(0), ref_size=5, prop_size=4, latent_dim=LATENT)
    # Flax initialises biases at zero; a trained network's are not, and silencing must zero them too.
    params = jax.tree_util.tree_map(lambda x: x + 0.3, params)
    ref = jax.random.normal(jax.random.PRNGKey(1), (6, 5))
    prop = jax.random.normal(jax.random.PRNGKey(2), (6, 4))

    def run(p):
        pp = PolicyParams(p, RunningStats.create(5), RunningStats.create(4))
        return network_outputs(agent, pp, ref, prop, jnp.ones((6, LATENT)), record_layers=True)

    return cfg, params, run


@pytest.mark.parametrize("layer", ["decoder_0", "encoder_1"])
def test_silenced_hidden_units_are_exactly_zero(net, layer):
    _, params, run = net
    spec = parse({"kind": "silence_layer", "layer": layer, "units": [2, 4]})
    base, out = run(params)["layers"][layer], run(PA.apply_to_params(params, spec, LATENT))["layers"][layer]
    assert np.any(np.asarray(base[:, [2, 4]]) != 0)
    np.testing.assert_array_equal(out[:, [2, 4]], 0.0)
    keep = [j for j in range(base.shape[1]) if j not in (2, 4)]
    np.testing.assert_array_equal(out[:, keep], base[:, keep])


def test_silence_fraction_is_seeded(net):
    _, params, run = net
    (spec,) = parse({"kind": "silence_layer", "layer": "decoder_0", "fraction": 0.5, "seed": 3})
    units = PA.silenced_units(spec, 10)
    assert len(units) == 5 and np.array_equal(units, PA.silenced_units(spec, 10))
    acts = np.asarray(run(PA.apply_to_params(params, [spec], LATENT))["layers"]["decoder_0"])
    np.testing.assert_array_equal(np.flatnonzero(np.all(acts == 0, axis=0)), units)


def test_silenced_latent_units_have_zero_mean(net):
    _, params, run = net
    spec = parse({"kind": "silence_latent", "units": [0, 1]})
    out = run(PA.apply_to_params(params, spec, LATENT))
    base = run(params)
    np.testing.assert_array_equal(out["latent_mean"][:, :2], 0.0)
    np.testing.assert_array_equal(out["latent_mean"][:, 2:], base["latent_mean"][:, 2:])
    np.testing.assert_array_equal(out["latent_log_var"][:, :2], -10.0)
    assert PA.silenced_latent_units(spec) == (0, 1)


def test_noop_leaves_model_and_params_exactly(forelimb, net):
    _, params, _ = net
    assert PA.is_noop([]) and PA.is_noop(parse({"kind": "mass", "scale": 1.0}))
    assert not PA.is_noop(parse({"kind": "latent_noise", "std": 0.1}))
    out = PA.apply_to_model(forelimb, [])
    assert out is not forelimb
    for k, v in arrays(forelimb).items():
        np.testing.assert_array_equal(getattr(out, k), v, err_msg=k)
    same = PA.apply_to_params(params, [], LATENT)
    jax.tree_util.tree_map(np.testing.assert_array_equal, same, params)


def test_latent_noise_std_adds_in_quadrature():
    assert PA.latent_noise_std([]) == 0.0
    spec = parse({"kind": "latent_noise", "std": 0.3}, {"kind": "latent_noise", "std": 0.4})
    assert PA.latent_noise_std(spec) == pytest.approx(0.5)


@pytest.mark.parametrize("body", ["mouse_forelimb", "rat", "stick_insect", "worm"])
def test_example_files_parse_and_validate(body, tmp_path):
    name = {"mouse_forelimb": "forelimb"}.get(body, body)
    spec = pt.load_perturbations(CONFIGS / f"perturb_{name}.yaml")
    assert {p.kind for p in spec} == set(pt.KINDS) - {"muscle_force"}
    cfg = get_body(body).default_config().agent
    model = get_body(body).compile_trainable()
    pt.validate(spec, model, pt.layer_widths(cfg), cfg.latent_dim)
    perturbed = PA.apply_to_model(model, spec)
    assert perturbed.opt.gravity[2] == pytest.approx(2 * model.opt.gravity[2])


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry, match",
    [
        ({"kind": "mas", "scale": 2}, r"entry 1 .*unknown kind 'mas' \(did you mean 'mass'\?\).*valid kinds: mass"),
        ({"scale": 2}, "has no 'kind'"),
        ({"kind": "mass"}, "needs scale"),
        ({"kind": "mass", "scale": 2, "bodys": ["x"]}, r"unknown field 'bodys' \(did you mean 'bodies'"),
        ({"kind": "mass", "scale": 0.0}, "scale must be > 0"),
        ({"kind": "length", "scale": -1.1, "bodies": ["ulna"]}, "scale must be > 0"),
        ({"kind": "mass", "scale": "two"}, "scale must be a finite number"),
        ({"kind": "mass", "scale": 2, "bodies": "humerus"}, "list of names or 'all'"),
        ({"kind": "muscle_force", "scale": -0.5}, "scale must be >= 0"),
        ({"kind": "gravity"}, "exactly one of 'scale'"),
        ({"kind": "silence_layer", "layer": "decoder_0", "fraction": 1.5}, r"fraction must be in \(0, 1\]"),
        ({"kind": "silence_layer", "layer": "decoder_0", "fraction": 0.0}, r"fraction must be in \(0, 1\]"),
        ({"kind": "silence_latent", "units": [-1]}, "non-negative integer"),
        ({"kind": "latent_noise", "std": -1}, "std must be >= 0"),
        (
            {"kind": "force_pulse", "body": "b", "direction": [0, 0, 1], "newtons": 1, "start_s": -1, "duration_s": 1},
            "start_s must be >= 0",
        ),
        (
            {"kind": "force_pulse", "body": "b", "direction": [0, 0, 1], "newtons": 1, "start_s": 0, "duration_s": -1},
            "duration_s must be >= 0",
        ),
        (
            {"kind": "force_pulse", "body": "b", "direction": [0, 0, 0], "newtons": 1, "start_s": 0, "duration_s": 1},
            "non-zero vector",
        ),
        ("mass", "is a str, not a mapping"),
    ],
)
def test_bad_entries(entry, match):
    with pytest.raises(pt.PerturbationError, match=match):
        pt.parse_perturbations([entry])


def test_errors_are_user_errors_and_name_the_entry():
    assert issubclass(pt.PerturbationError, MimicError)
    with pytest.raises(pt.PerturbationError, match=r"entry 2 \('bad'\): scale must be > 0"):
        parse({"kind": "mass", "scale": 2}, {"name": "bad", "kind": "mass", "scale": -2})
    with pytest.raises(pt.PerturbationError, match="repeats an earlier name"):
        parse({"name": "a", "kind": "mass", "scale": 2}, {"name": "a", "kind": "gravity", "scale": 2})


@pytest.mark.parametrize(
    "entry, match",
    [
        ({"kind": "mass", "scale": 2, "bodies": ["humerous"]}, r"unknown body 'humerous' \(did you mean 'humerus'"),
        ({"kind": "length", "scale": 2, "bodies": ["world"]}, "unknown body 'world'.*valid bodies: ground"),
        ({"kind": "muscle_force", "scale": 2, "actuators": ["triceps"]}, "unknown actuator.*Triceps_Long"),
        ({"kind": "joint_damping", "add": 1, "joints": ["elbow"]}, "did you mean 'elbow_joint'"),
        (
            {"kind": "muscle_force", "scale": 0, "actuators": ["Trizeps*"]},
            "no actuator name matches 'Trizeps\\*'",
        ),
        ({"kind": "joint_damping", "add": -1e-3, "joints": ["elbow_joint"]}, "damping .* < 0; add less"),
        ({"kind": "silence_latent", "units": [4]}, r"latent unit 4 out of range; units are 0\.\.3"),
        ({"kind": "silence_layer", "layer": "decodr_0", "units": [0]}, "did you mean 'decoder_0'"),
        ({"kind": "silence_layer", "layer": "decoder_1", "units": [7]}, r"decoder_1 has units 0\.\.6"),
    ],
)
def test_validate_against_model_and_network(forelimb, net, entry, match):
    cfg, params, _ = net
    spec = parse(entry)
    with pytest.raises(pt.PerturbationError, match=match):
        pt.validate(spec, forelimb, pt.layer_widths(params), LATENT)
    assert pt.layer_widths(params) == pt.layer_widths(cfg)


def test_apply_refuses_unknown_names(forelimb, net):
    with pytest.raises(pt.PerturbationError, match="unknown body"):
        PA.apply_to_model(forelimb, parse({"kind": "mass", "scale": 2, "bodies": ["tail"]}))
    with pytest.raises(pt.PerturbationError, match="unknown layer"):
        PA.apply_to_params(net[1], parse({"kind": "silence_layer", "layer": "value_0", "units": [0]}), LATENT)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"kind: mass\nscale: 2\n", "a mapping at the top must hold only 'perturbations:'"),
        (b"- kind: mass\n  scale: [2\n", "not valid YAML at line"),
        (b"", "expected a list of perturbation mappings"),
        (b"just text\n", "expected a list"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "not a text"),
        (b"- \xff\xfe bad\n", "not a text"),
    ],
)
def test_bad_files(tmp_path, content, match):
    path = tmp_path / "p.yaml"
    path.write_bytes(content)
    with pytest.raises(pt.PerturbationError, match=match):
        pt.load_perturbations(path)


def test_missing_file_and_list_forms(tmp_path):
    with pytest.raises(pt.PerturbationError, match="perturbation file not found"):
        pt.load_perturbations(tmp_path / "nope.yaml")
    path = tmp_path / "p.yaml"
    path.write_text("- kind: gravity\n  scale: 0.5\n")
    (p,) = pt.load_perturbations(path)
    assert p == pt.Gravity(name="gravity_1", scale=0.5)
    path.write_text("perturbations: []\n")
    assert pt.load_perturbations(path) == []


def test_model_is_deep_copied(forelimb):
    clone = copy.deepcopy(forelimb)
    PA.apply_to_model(forelimb, parse({"kind": "length", "scale": 1.5, "bodies": "all"}))
    for k, v in arrays(clone).items():
        np.testing.assert_array_equal(getattr(forelimb, k), v, err_msg=k)


def test_worm_quadrant_patterns_select_its_muscles():
    model = get_body("worm").compile_trainable()
    spec = {p.name: p for p in pt.load_perturbations(CONFIGS / "perturb_worm.yaml")}
    names = lambda p: {model.actuator(int(i)).name for i in pt._ids(model, spec[p])}
    assert names("silent_dorsal_left") == {f"MDL{k:02d}" for k in range(1, 25)}
    assert len(names("silent_dorsal_side")) == 48 and all(n.startswith("MD") for n in names("silent_dorsal_side"))
    assert len(names("silent_ventral_right")) == 24
    assert names("weak_head_muscles") == {f"M{q}{k:02d}" for q in ("DL", "DR", "VL", "VR") for k in range(1, 5)}
    out = PA.apply_to_model(model, [spec["silent_dorsal_left"]])
    silenced = {model.actuator(a).name for a in range(model.nu) if out.actuator_gainprm[a, 2] == 0}
    assert silenced == names("silent_dorsal_left")
