"""Typed config: defaults, validation, unknown keys, overrides, shipped files."""

from __future__ import annotations

import dataclasses

import pytest

from mimic_mjx import config as config_lib
from mimic_mjx.bodies import get_body
from mimic_mjx.bodies.registry import CONFIGS
from mimic_mjx.errors import ConfigError


def test_defaults_validate():
    cfg = config_lib.ExperimentConfig().validate()
    assert cfg.env.body == "mouse_forelimb"


@pytest.mark.parametrize("name", ["forelimb.yaml", "rat.yaml"])
def test_shipped_configs_load(name):
    cfg = config_lib.load(CONFIGS / name)
    assert cfg.ppo.num_envs > 0


@pytest.mark.parametrize(
    "body, file_name", [("mouse_forelimb", "forelimb.yaml"), ("rat", "rat.yaml"), ("fruitfly", None)]
)
def test_registry_gives_each_body_its_default_config(body, file_name):
    model = get_body(body)
    cfg = model.default_config()  # the forelimb names its file; the rat's body file names it
    assert cfg.env.body == body
    if file_name is None:  # no shipped config: the defaults, for this body
        default = config_lib.ExperimentConfig()
        assert cfg == default.replace(env=dataclasses.replace(default.env, body=body))
    else:
        assert cfg == config_lib.load(CONFIGS / file_name)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"ppo": {"num_env": 3}}, "unknown config key 'ppo.num_env'; did you mean 'ppo.num_envs'"),
        ({"learning_rate": 1.0}, "unknown config key 'learning_rate'"),
        ({"ppo": {"num_envs": "many"}}, "ppo.num_envs must be an integer"),
        ({"ppo": {"num_envs": 0}}, "ppo.num_envs must be positive"),
        ({"ppo": {"discount": 1.5}}, "ppo.discount must be in"),
        ({"reward": {"end_effector": {"scale_m": -1}}}, "reward.end_effector.scale_m must be positive"),
        ({"agent": {"decoder_layers": []}}, "agent.decoder_layers must be a non-empty list"),
        ({"ppo": {"num_envs": 10, "unroll_length": 1, "num_minibatches": 4}}, "must be divisible"),
        ({"train": {"seed": True}}, "train.seed must be an integer"),
        ({"env": {"first_frame_start_prob": 2}}, "env.first_frame_start_prob must be in"),
    ],
)
def test_bad_configs_raise_clear_errors(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config_lib.from_dict(values)


def test_unknown_body_named_by_the_body_check():
    from mimic_mjx.bodies import check_config

    cfg = config_lib.from_dict({"env": {"body": "cat"}})  # the schema alone does not know the bodies
    with pytest.raises(ConfigError, match="env.body: unknown body 'cat'; available bodies: .*mouse_forelimb"):
        check_config(cfg)
    assert check_config(config_lib.ExperimentConfig()) == config_lib.ExperimentConfig()


def test_overrides_and_yaml(tmp_path):
    cfg = config_lib.apply_overrides(config_lib.ExperimentConfig(), ["ppo.num_envs=64", "agent.latent_dim=8"])
    assert cfg.ppo.num_envs == 64 and cfg.agent.latent_dim == 8
    with pytest.raises(ConfigError, match="section.key=value"):
        config_lib.apply_overrides(cfg, ["ppo.num_envs"])
    with pytest.raises(ConfigError, match="unknown config section 'nope'"):
        config_lib.apply_overrides(cfg, ["nope.x=1"])
    path = tmp_path / "c.yaml"
    path.write_text("ppo:\n  num_envs: 32\n")
    assert config_lib.load(path).ppo.num_envs == 32
    path.write_text("ppo: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config_lib.load(path)
    with pytest.raises(ConfigError, match="config file not found"):
        config_lib.load(tmp_path / "missing.yaml")
    # A config survives a JSON round trip unchanged.
    assert config_lib.from_dict(cfg.to_dict()) == cfg


def test_reward_and_termination_groups():
    cfg = config_lib.from_dict({"reward": {"joint_vel": {"weight": 0.5}}, "termination": {"max_ee_error_m": 0.01}})
    # A term given only a weight keeps its own default scale.
    assert cfg.reward.joint_vel.weight == 0.5 and cfg.reward.joint_vel.scale_rad_s == 5.0
    assert cfg.reward.end_effector.scale_m == 0.0005 and cfg.termination.max_ee_error_m == 0.01
    assert config_lib.apply_overrides(cfg, ["reward.joint.weight=2"]).reward.joint.weight == 2.0


@pytest.mark.parametrize(
    "values, message",
    [
        ({"env": {"joint_scale_rad": 0.2}}, "'env.joint_scale_rad' was renamed: use 'reward.joint.scale_rad'"),
        ({"env": {"ctrl_cost": 0.1}}, "use 'reward.ctrl.weight'"),
        ({"env": {"max_ee_error_m": 0.1}}, "use 'termination.max_ee_error_m'"),
        # A term that does not exist: the error lists the existing ones.
        (
            {"reward": {"posture": {"weight": 1.0}}},
            "unknown reward term 'reward.posture'; known: body, ctrl, ctrl_change, end_effector, energy, joint, "
            "joint_vel, keypoint, root_angle, root_pos",
        ),
        (
            {"reward": {"joint": {"scale_m": 1.0}}},
            "unknown config key 'reward.joint.scale_m'; did you mean 'reward.joint.scale_rad'",
        ),
        ({"reward": {"joint": {"weight": -1.0}}}, "reward.joint.weight must be zero or positive"),
        ({"termination": {"max_root_drop_m": 0}}, "termination.max_root_drop_m must be positive"),
    ],
)
def test_old_and_unknown_reward_keys(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config_lib.from_dict(values)


def test_cli_set_repeats_keep_every_override():
    """`--set a=1 --set b=2` keeps both (argparse's default would keep only the last)."""
    from mimic_mjx.cli.main import build_parser

    for cmd in (["train", "--clips", "c.h5", "--run-dir", "r"], ["bench"]):
        args = build_parser().parse_args(
            [*cmd, "--set", "ppo.num_envs=8", "--set", "train.seed=3", "ppo.unroll_length=4"]
        )
        assert args.set == ["ppo.num_envs=8", "train.seed=3", "ppo.unroll_length=4"]
