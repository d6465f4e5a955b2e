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


@pytest.mark.parametrize("body, file_name", [("mouse_forelimb", "forelimb.yaml"), ("rat", "rat.yaml"),
                                              ("fruitfly", None)])
def test_registry_gives_each_body_its_default_config(body, file_name):
    model = get_body(body)
    assert model.default_config_file == file_name
    cfg = model.default_config()
    assert cfg.env.body == body
    if file_name is None:  # no shipped config: the defaults, for this body
        default = config_lib.ExperimentConfig()
        assert cfg == default.replace(env=dataclasses.replace(default.env, body=body))
    else:
        assert cfg == config_lib.load(CONFIGS / file_name)


@pytest.mark.parametrize("values, message", [
    ({"ppo": {"num_env": 3}}, "unknown config key 'ppo.num_env'; did you mean 'ppo.num_envs'"),
    ({"learning_rate": 1.0}, "unknown config key 'learning_rate'"),
    ({"env": {"body": "cat"}}, "env.body: unknown body 'cat'"),
    ({"ppo": {"num_envs": "many"}}, "ppo.num_envs must be an integer"),
    ({"ppo": {"num_envs": 0}}, "ppo.num_envs must be positive"),
    ({"ppo": {"discount": 1.5}}, "ppo.discount must be in"),
    ({"reward": {"end_effector": {"scale_m": -1}}}, "reward.end_effector.scale_m must be positive"),
    ({"agent": {"decoder_layers": []}}, "agent.decoder_layers must be a non-empty list"),
    ({"ppo": {"num_envs": 10, "unroll_length": 1, "num_minibatches": 4}}, "must be divisible"),
    ({"train": {"seed": True}}, "train.seed must be an integer"),
    ({"env": {"first_frame_start_prob": 2}}, "env.first_frame_start_prob must be in"),
])
def test_bad_configs_raise_clear_errors(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config_lib.from_dict(values)


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
