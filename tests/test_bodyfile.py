"""Body files: any animal from its MJCF and a page of YAML, and stac-mjx model files read as they are.

Every model here is written by the test (never registered as a built-in): a
fixed-base three-link arm with motors, the same arm without actuators, a
free-floating segmented swimmer and a two-legged walker given a free root
(dm_control's rodent through a stac-mjx model file: test_bodyfile_stac.py).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import mujoco
import numpy as np
import pytest

from mimic_mjx.bodies import check_config, get_body
from mimic_mjx.bodies.bodyfile import load_body_file
from mimic_mjx.bodies.checkup import actuator_kind, check_body, passive_native
from mimic_mjx.bodies.mjcf import GRAVITY_MULTIPLE
from mimic_mjx.errors import BodyError

ARM = """<mujoco model="arm">
  <compiler angle="radian"/>
  <option timestep="0.002"/>
  <worldbody>
    <body name="upper" pos="0 0 0.5">
      <joint name="shoulder" axis="0 1 0" range="-1.5 1.5"/>
      <geom name="upper_geom" type="capsule" fromto="0 0 0 0.1 0 0" size="0.01"/>
      <body name="fore" pos="0.1 0 0">
        <joint name="elbow" axis="0 1 0" range="-0.5 2.5"/>
        <geom name="fore_geom" type="capsule" fromto="0 0 0 0.1 0 0" size="0.008"/>
        <body name="hand" pos="0.1 0 0">
          <joint name="wrist" axis="0 1 0" range="-1 1"/>
          <geom name="hand_geom" type="sphere" size="0.012" pos="0.02 0 0"/>
          <site name="fingertip" pos="0.03 0 0" quat="0.70710678 0 0 0.70710678"/>
        </body>
      </body>
    </body>
  </worldbody>
  ACTUATORS
</mujoco>
"""
MOTORS = """<actuator>
    <motor name="m_shoulder" joint="shoulder" ctrlrange="-1 1" gear="2"/>
    <motor name="m_elbow" joint="elbow" ctrlrange="-1 1" gear="1"/>
    <motor name="m_wrist" joint="wrist" ctrlrange="-1 1" gear="0.3"/>
  </actuator>"""
ARM_KEYPOINTS = """keypoints:
  Shoulder: upper
  Elbow: {body: fore}
  Wrist: {body: hand, offset: [0.01, 0, 0]}
  Tip: {site: fingertip, offset: [0.01, 0, 0]}
"""


def swimmer_xml(segments: int = 5, length: float = 0.05) -> str:
    """A free-floating chain of capsules in a viscous fluid without gravity, motors on its hinges."""
    inner = ""
    for k in reversed(range(1, segments)):
        inner = (
            f'<body name="seg{k}" pos="{length} 0 0"><joint name="j{k}" axis="0 0 1" range="-1 1"/>'
            f'<geom name="seg{k}_geom" type="capsule" fromto="0 0 0 {length} 0 0" size="0.01"/>{inner}</body>'
        )
    motors = "".join(f'<motor name="m{k}" joint="j{k}" ctrlrange="-1 1" gear="0.002"/>' for k in range(1, segments))
    return f"""<mujoco model="swimmer">
  <compiler angle="radian"/>
  <option timestep="0.002" gravity="0 0 0" density="1000" viscosity="0.001"/>
  <worldbody>
    <body name="seg0" pos="0 0 0.1"><freejoint name="root"/>
      <geom name="seg0_geom" type="capsule" fromto="0 0 0 {length} 0 0" size="0.01"/>{inner}</body>
  </worldbody>
  <actuator>{motors}</actuator>
</mujoco>
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture()
def arm_dir(tmp_path):
    write(tmp_path, "arm.xml", ARM.replace("ACTUATORS", MOTORS))
    write(tmp_path, "bare_arm.xml", ARM.replace("ACTUATORS", ""))
    write(tmp_path, "swimmer.xml", swimmer_xml())
    return tmp_path


def one_line_error(path: Path, match: str) -> str:
    """The BodyError that reading ``path`` raises: one line, naming the file, matching ``match``."""
    with pytest.raises(BodyError) as info:
        load_body_file(path)
    message = str(info.value)
    assert "\n" not in message, message
    assert re.search(match, message), message
    return message


# -- the arm: a fixed base, motors -------------------------------------------------------------


def test_arm_with_motors(arm_dir, monkeypatch):
    path = write(arm_dir, "arm.yaml", f"mjcf: arm.xml\nkeypoint_unit: mm\nsubsteps: 4\n{ARM_KEYPOINTS}")
    body = get_body(str(path))
    assert body.name == str(path.resolve()) and body.label == "arm" and body.keypoint_unit == "mm"
    model = body.compile()
    assert model.njnt == 3 and model.nu == 3 and model.nq == 3
    assert {actuator_kind(model, a) for a in range(model.nu)} == {"torque"}
    kp = body.keypoint_map.keypoints
    assert list(kp) == ["Shoulder", "Elbow", "Wrist", "Tip"]
    assert kp["Wrist"] == ("hand", (0.01, 0.0, 0.0))
    # The site is turned 90 deg about z: its x offset is the hand's y.
    assert kp["Tip"][0] == "hand" and np.allclose(kp["Tip"][1], (0.03, 0.01, 0.0))
    assert body.end_effectors == ("hand",) and body.tracked() == ("upper", "fore", "hand")
    assert body.keypoint_map.root_keypoint == "Shoulder" and body.keypoint_map.trunk_keypoints == ("Shoulder",)
    notes = "\n".join(body.notes)
    for said in (
        "root: fixed",
        "end_effectors not given: the leaf bodies",
        "tracked_bodies not given",
        "root_keypoint",
    ):
        assert said in notes
    cfg = body.default_config()
    assert cfg.env.body == body.name and cfg.env.substeps == 4
    assert check_config(cfg) is cfg
    # Any spelling of the path is the same body (cached by resolved path and content).
    (arm_dir / "sub").mkdir()
    assert get_body(arm_dir / "sub" / ".." / "arm.yaml") is body
    monkeypatch.chdir(arm_dir)
    assert get_body("arm.yaml") is body
    path.write_text(path.read_text().replace("substeps: 4", "substeps: 2"))
    assert get_body(str(path)) is not body and get_body(str(path)).default_config().env.substeps == 2


def test_built_in_bodies_keep_working():
    rat = get_body("rat")
    assert rat.compile() is rat.compile() and rat.keypoint_map.root_keypoint == "SpineL"
    assert get_body("mouse_forelimb").keypoint_map.names == ("Shoulder", "Elbow", "Wrist")
    assert rat.default_config().env.body == "rat"


# -- actuators added to a model without any, with defaults that scale with the body -------------


def test_position_servos_added_with_scale_free_defaults(arm_dir):
    peaks = {}
    # From a 1.5-m arm to a 15-mm one (smaller, in metres and kilograms, falls below MuJoCo's
    # smallest inertia, 1e-15: a model that small is written in smaller units, as the fly's cm and g).
    for scale in (5.0, 1.0, 0.05):
        path = write(arm_dir, f"bare_{scale}.yaml", f"mjcf: bare_arm.xml\nactuation: position\nscale: {scale}\n")
        body = load_body_file(path)
        model = body.compile_trainable()
        assert [model.actuator(a).name for a in range(model.nu)] == ["shoulder", "elbow", "wrist"]
        assert {actuator_kind(model, a) for a in range(model.nu)} == {"position"}
        np.testing.assert_allclose(model.actuator_ctrlrange, model.jnt_range)
        # The shoulder's peak torque: 3 x its subtree's weight at the subtree's radius of gyration.
        mass, inertia = model.body_subtreemass[1], model.dof_M0[0]
        expected = GRAVITY_MULTIPLE * mass * 9.81 * math.sqrt(inertia / mass)
        assert model.actuator_forcerange[0, 1] == pytest.approx(expected, rel=1e-6)
        peaks[scale] = model.actuator_forcerange[:, 1]
        run, steps_per_s = passive_native(model)
        assert run.stable, run.detail  # every size holds still
        assert steps_per_s > 0
    # mass x length: the default strength follows the body's size (s^3 * s).
    np.testing.assert_allclose(peaks[0.05] / peaks[1.0], 0.05**4, rtol=1e-6)
    np.testing.assert_allclose(peaks[5.0] / peaks[1.0], 5.0**4, rtol=1e-6)
    assert any("lowered so that" in n for n in body.notes)  # the tiny arm's servos were capped


def test_torque_motors_on_chosen_joints(arm_dir):
    path = write(
        arm_dir,
        "torque.yaml",
        "mjcf: arm.xml\nactuation: {kind: torque, joints: [shoulder, 'elb*'], max_torque: 0.5}\n",
    )
    body = load_body_file(path)
    model = body.compile()
    assert [model.actuator(a).name for a in range(model.nu)] == ["shoulder", "elbow"]
    np.testing.assert_allclose(model.actuator_gainprm[:, 0], 0.5)
    np.testing.assert_allclose(model.actuator_ctrlrange, [[-1, 1], [-1, 1]])
    assert any("replaced" in n for n in body.notes)


def test_contacts_kept_in_the_trainable_variant_only(arm_dir):
    path = write(arm_dir, "contacts.yaml", "mjcf: arm.xml\ncontacts: ['hand_*']\ntimestep: 0.001\n")
    body = load_body_file(path)
    plain, train = body.compile(), body.compile_trainable()
    colliding = [train.geom(g).name for g in range(train.ngeom) if train.geom_contype[g] or train.geom_conaffinity[g]]
    assert colliding == ["hand_geom"] and all(plain.geom_contype)
    assert train.opt.timestep == 0.001


# -- the swimmer: a free root, no gravity -----------------------------------------------------


def test_free_floating_swimmer(arm_dir):
    kps = "".join(f"  K{k}: {{body: seg{k}, offset: [0.025, 0, 0]}}\n" for k in range(5))
    body = load_body_file(write(arm_dir, "swimmer.yaml", f"mjcf: swimmer.xml\nkeypoints:\n{kps}"))
    model = body.compile()
    assert model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE and model.nq == 7 + 4 and model.nu == 4
    assert not any(model.geom(g).name == "floor" for g in range(model.ngeom))  # no gravity, no floor
    assert body.end_effectors == ("seg4",)
    assert body.keypoint_map.trunk_keypoints == ("K0", "K1", "K2") and body.keypoint_map.root_keypoint == "K0"
    assert any("root: free" in n for n in body.notes)
    run, _ = passive_native(body.compile_trainable())
    assert run.stable, run.detail


WALKER = """<mujoco model="walker"><compiler angle="radian"/>
  <worldbody><body name="torso" pos="0 0 0.12"><geom name="torso_geom" type="box" size="0.05 0.02 0.01"/>
    <body name="leg_L" pos="0 0.03 0"><joint name="hip_L" axis="0 1 0" range="-1 1"/>
      <geom name="foot_L" type="capsule" fromto="0 0 0 0 0 -0.1" size="0.01"/></body>
    <body name="leg_R" pos="0 -0.03 0"><joint name="hip_R" axis="0 1 0" range="-1 1"/>
      <geom name="foot_R" type="capsule" fromto="0 0 0 0 0 -0.1" size="0.01"/></body>
  </body></worldbody></mujoco>"""


def test_free_root_added_and_floor(arm_dir):
    write(arm_dir, "walker.xml", WALKER)
    body = load_body_file(
        write(arm_dir, "walker.yaml", "mjcf: walker.xml\nroot: free\nactuation: position\ncontacts: ['foot_*']\n")
    )
    model = body.compile()
    assert model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE and model.joint(0).name == "root" and model.nq == 9
    assert model.geom("floor").type == mujoco.mjtGeom.mjGEOM_PLANE and any("floor" in n for n in body.notes)
    train = body.compile_trainable()
    kept = [train.geom(g).name for g in range(train.ngeom) if train.geom_contype[g] or train.geom_conaffinity[g]]
    assert sorted(kept) == ["floor", "foot_L", "foot_R"]
    run, _ = passive_native(train)
    assert run.stable, run.detail
    with pytest.raises(BodyError, match="which has joints of its own"):
        load_body_file(write(arm_dir, "free_arm.yaml", "mjcf: arm.xml\nroot: free\n"))


def test_check_reports_an_unstable_body(arm_dir, capsys):
    from mimic_mjx.cli.main import main

    # Stiff servos without damping at a 50 ms step: the explicit servo diverges at once.
    path = write(
        arm_dir, "stiff.yaml", "mjcf: bare_arm.xml\ntimestep: 0.05\nactuation: {kind: position, kp: 1000, kv: 0}\n"
    )
    report = check_body(get_body(path), mjx=False)
    assert report.problems and report.problems[0].startswith("native: the passive 1-s test")
    assert main(["bodies", "check", str(path), "--no-mjx", "--no-png"]) == 1
    assert "PROBLEM: native" in capsys.readouterr().out


@pytest.mark.slow
def test_check_on_mjx(arm_dir):
    report = check_body(load_body_file(write(arm_dir, "arm.yaml", f"mjcf: arm.xml\n{ARM_KEYPOINTS}")))
    assert [r.backend for r in report.runs] == ["native", "mjx"] and all(r.stable for r in report.runs)
    assert report.root == "fixed" and report.actuators == {"torque": 3} and len(report.keypoints) == 4


@pytest.mark.slow
def test_register_through_a_body_file(arm_dir):
    """Keypoints made from a known motion of the arm fit back through the body file's keypoint map."""
    from mimic_mjx.data.keypoints.common import Keypoints
    from mimic_mjx.registration.register import register
    from mimic_mjx.registration.stac import StacConfig

    path = write(arm_dir, "arm.yaml", f"mjcf: arm.xml\n{ARM_KEYPOINTS}")
    body = get_body(path)
    model, kmap = body.compile(), body.keypoint_map
    data = mujoco.MjData(model)
    t = np.arange(40) / 50.0
    qpos = np.stack([0.6 * np.sin(2 * t), 1.0 + 0.5 * np.sin(3 * t), 0.3 * np.cos(2 * t)], axis=1)
    frames = []
    for q in qpos:
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        frames.append(
            [
                data.xpos[model.body(b).id] + data.xmat[model.body(b).id].reshape(3, 3) @ off
                for b, off in kmap.keypoints.values()
            ]
        )
    kp = Keypoints(np.asarray(frames), kmap.names, 50.0, np.ones((40, 4)), "synthetic").validate()
    reg = register(kp, str(path), StacConfig(rounds=1, lm_iterations=15), log=lambda m: None)
    assert reg.clip.body == body.name and reg.summary["median_residual_mm"] < 0.5
    assert np.abs(reg.clip.qpos - qpos).max() < 0.05


# -- bad input: one line each, naming the file --------------------------------------------------

BAD_XML = {
    "mesh.xml": '<mujoco><compiler meshdir="meshes"/><asset><mesh name="m" file="paw.stl"/></asset>'
    '<worldbody><body name="b"><joint name="j"/><geom type="mesh" mesh="m"/></body></worldbody></mujoco>',
    "broken.xml": '<mujoco><worldbody><body name="b"><joint name="j" range="1"/></body></worldbody></mujoco>',
    "massless.xml": '<mujoco><worldbody><body name="b"><joint name="j"/></body></worldbody></mujoco>',
    # A hinged arm and, beside it, a free ball: the free joint is not the model's root.
    "inner_free.xml": '<mujoco><worldbody><body name="a"><joint name="h"/><geom size=".1"/></body>'
    '<body name="b" pos="0 0 1"><freejoint name="loose"/><geom size=".1"/></body></worldbody></mujoco>',
    "ball.xml": '<mujoco><worldbody><body name="a"><joint name="s" type="ball"/><geom size=".1"/></body>'
    '</worldbody><actuator><motor joint="s" gear="1 0 0 0 0 0"/></actuator></mujoco>',
}


@pytest.mark.parametrize(
    ("yaml_text", "match"),
    [
        ("mjcf: nowhere.xml\n", r"mjcf 'nowhere.xml' not found \(searched .*\)"),
        ("mjcf: mesh.xml\nactuation: position\n", r"asset file 'paw.stl' of .*mesh.xml not found: .*meshes/paw.stl"),
        ("mjcf: broken.xml\n", r"MJCF .*broken.xml cannot be read: XML Error: attribute 'range'"),
        ("mjcf: massless.xml\nactuation: position\n", r"MJCF .*massless.xml does not compile: .*mass"),
        ("mjcf: bare_arm.xml\n", r"has no actuators and the body file asks for none; add 'actuation: position'"),
        ("mjcf: inner_free.xml\nactuation: position\n", r"free joint 'loose' on body 'b' is not the root"),
        ("mjcf: ball.xml\n", r"ball joint"),
        (
            f"mjcf: arm.xml\n{ARM_KEYPOINTS}  Knee: forearm\n",
            r"keypoint 'Knee': no body or site named 'forearm'.*did you mean 'fore",
        ),
        (
            "mjcf: arm.xml\nkeypoints: {Tip: {site: fingertips}}\n",
            r"no site named 'fingertips'.*did you mean 'fingertip'",
        ),
        ("mjcf: arm.xml\nkeypoint: {Tip: hand}\n", r"unknown body-file key 'keypoint'; did you mean 'keypoints'"),
        (
            "mjcf: arm.xml\nactuation: {kind: position, joints: [elbw]}\n",
            r"no hinge or slide joint matches 'elbw'; did you mean 'elbow'",
        ),
        ("mjcf: arm.xml\nend_effectors: [hnd]\n", r"end_effectors: no body named 'hnd'.*did you mean 'hand'"),
        ("mjcf: arm.xml\ncontacts: [hand_gem]\n", r"contacts: no geom matches 'hand_gem'; did you mean 'hand_geom'"),
        (
            f"mjcf: arm.xml\n{ARM_KEYPOINTS}root_keypoint: Wirst\n",
            r"'Wirst' is not one of the body file's keypoints; did you mean 'Wrist'",
        ),
        ("mjcf: arm.xml\nkeypoint_unit: inch\n", r"keypoint_unit must be one of m, cm, mm"),
        ("mjcf: arm.xml\nscale: -2\n", r"scale must be a positive number"),
        ("mjcf: swimmer.xml\nactuation: position\n", r"no gravity.*actuation.max_torque"),
        ("mjcf: arm.xml\nconfig: {ppo: {num_env: 8}}\n", r"config: unknown config key 'ppo.num_env'"),
        ("mjcf: arm.xml\nconfig: missing.yaml\n", r"config file not found"),
        ("- just\n- a list\n", r"a body file is a mapping of keys"),
        ("mjcf: arm.xml\nconfig: arm.xml\n", r"arm.xml: a config file is a mapping of keys"),
        (
            "MJCF_PATH: models/none.xml\nKEYPOINT_MODEL_PAIRS: {A: upper}\n",
            r"MJCF_PATH 'models/none.xml' not found; searched ",
        ),
        ("MJCF_PATH: arm.xml\nMOCAP_SCALE_FACTOR: 0.0254\n", r"MOCAP_SCALE_FACTOR 0.0254 is not a unit"),
    ],
)
def test_bad_input_is_one_line_naming_the_file(arm_dir, yaml_text, match):
    for name, xml in BAD_XML.items():
        write(arm_dir, name, xml)
    path = write(arm_dir, "bad.yaml", yaml_text)
    message = one_line_error(path, match)
    assert message.startswith(str(path.resolve())), message


def test_bad_body_names():
    with pytest.raises(BodyError, match=r"not found: .*absent.yaml"):
        get_body("absent.yaml")
    with pytest.raises(BodyError, match=r"'arm.xml' is an MJCF model, not a body: write a body file"):
        get_body("arm.xml")
    with pytest.raises(BodyError, match=r"unknown body 'cat'.*or the path of a body file"):
        get_body("cat")
