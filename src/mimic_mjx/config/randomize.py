"""Domain randomisation keys (``randomize.*``): ranges of the body's physics drawn per episode.

Every range is a ``[low, high]`` pair; each value is drawn uniformly in it,
independently per element (per geom, body, degree of freedom, actuator and
axis), at the start of every training episode. Scales are dimensionless
factors on the body's own values, so one config holds for a 1-mm worm and a
1-m animal; the default ``[1, 1]`` (and ``[0, 0]`` for the shift, ``0`` for
the pose noise) leaves that part of the body as it is. All defaults: off.
``environments.randomize`` draws and applies the values; docs/tracking-task.md
("Domain randomisation") says what is drawn when and where it is recorded.
"""

from __future__ import annotations

import dataclasses
import math

from mimic_mjx.errors import ConfigError

#: Largest centre-of-mass shift, in units of the body's rms extent along each principal axis: within
#: it the shifted centre stays inside any uniform box, ellipsoid, cylinder or capsule (its extent along
#: an axis is at least sqrt(3) times the rms extent).
MAX_COM_SHIFT = 1.0


#: Range keys: the lowest value each allows, whether that bound is included, and the highest.
RANGES = {
    "friction_scale": (0.0, True, math.inf),
    "mass_scale": (0.0, False, math.inf),
    "com_shift": (-MAX_COM_SHIFT, True, MAX_COM_SHIFT),
    "damping_scale": (0.0, True, math.inf),
    "armature_scale": (0.0, True, math.inf),
    "strength_scale": (0.0, False, math.inf),
}


@dataclasses.dataclass(frozen=True)
class RandomizeConfig:
    # Factor on each geom's friction coefficients (sliding, torsional, rolling); >= 0.
    friction_scale: tuple[float, ...] = (1.0, 1.0)
    # Factor on each body's mass and rotational inertia (a denser or lighter segment); > 0.
    mass_scale: tuple[float, ...] = (1.0, 1.0)
    # Shift of each body's centre of mass along each of its principal axes, as a fraction of the
    # body's rms mass extent along that axis (dimensionless, within [-1, 1]); its inertia moves with it.
    com_shift: tuple[float, ...] = (0.0, 0.0)
    # Factor on each degree of freedom's damping (N m s/rad) and armature (kg m^2); >= 0.
    damping_scale: tuple[float, ...] = (1.0, 1.0)
    armature_scale: tuple[float, ...] = (1.0, 1.0)
    # Factor on each actuator's force at every state: a muscle's peak isometric force, a position
    # servo's kp and kv, a motor's gain; its force limits follow; > 0.
    strength_scale: tuple[float, ...] = (1.0, 1.0)
    # Uniform noise on each hinge angle at an episode's start, in [-x, x] rad; the same noise as
    # env.reset_noise_rad (the older key), recorded per episode when given here.
    init_pose_noise_rad: float = 0.0

    @property
    def physics_keys(self) -> tuple[str, ...]:
        """The range keys that change anything (a range other than the identity)."""
        off = lambda k: (0.0, 0.0) if k == "com_shift" else (1.0, 1.0)
        return tuple(k for k in RANGES if tuple(getattr(self, k)) != off(k))

    @property
    def enabled(self) -> bool:
        return bool(self.physics_keys) or self.init_pose_noise_rad > 0

    def validate(self, reset_noise_rad: float = 0.0) -> None:
        """ConfigError naming the key, its value and the allowed range; ``reset_noise_rad``: env's older key."""
        for key, (lo, closed, hi) in RANGES.items():
            value = getattr(self, key)
            low = f"{lo:g} <= low" if closed else f"{lo:g} < low"
            allowed = f"a [low, high] pair with {low} <= high" + (f" <= {hi:g}" if math.isfinite(hi) else "")
            if len(value) != 2:
                raise ConfigError(f"randomize.{key} must be {allowed}, got {list(value)}")
            a, b = value
            inside = (a >= lo if closed else a > lo) and a <= b <= hi and math.isfinite(b)
            if not inside:  # NaN fails every comparison, so it lands here too
                raise ConfigError(f"randomize.{key} must be {allowed}, got [{a:g}, {b:g}]")
        x = self.init_pose_noise_rad
        if not 0.0 <= x <= math.pi:
            raise ConfigError(f"randomize.init_pose_noise_rad must be in [0, pi] rad, got {x:g}")
        if x > 0 and reset_noise_rad > 0 and x != reset_noise_rad:
            raise ConfigError(
                f"randomize.init_pose_noise_rad ({x:g}) and env.reset_noise_rad ({reset_noise_rad:g}) set the same "
                "noise differently; give one of them (randomize.init_pose_noise_rad also records it per episode)"
            )

    def reset_noise(self, reset_noise_rad: float) -> float:
        """The initial-pose noise in effect: this key's, else env.reset_noise_rad's."""
        return self.init_pose_noise_rad if self.init_pose_noise_rad > 0 else reset_noise_rad
