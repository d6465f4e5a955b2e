"""Body models, looked up by name in a registry."""

from mimic_mjx.bodies.registry import BodyModel, available_bodies, check_config, get_body, register_body

__all__ = ["BodyModel", "available_bodies", "check_config", "get_body", "register_body"]
