"""Walking clips of the stick insect: tripod, tetrapod and wave gaits from the literature's rules.

No recordings of the built-in ``stick_insect`` exist, so its reference clips
are generated. Each leg's tarsus tip follows a step cycle in the body frame:
in stance it is on the floor and moves backwards at the body's speed (so it
stays put in the world); in swing it is lifted on an arc and brought forwards
to where stance starts. Joint angles come from the leg's closed-form inverse
kinematics (bodies/stick_insect_anatomy.py); the thorax moves forwards at the
requested speed at the standing height, level. ``clip_from_qpos`` turns the
trajectory into a clip (forward kinematics, keypoints of the body's map).

Step timing (*Carausius morosus*)
---------------------------------
* Swing duration is nearly constant while stance duration falls with speed
  (Wendler 1964, Z vergl Physiol 48:198-250; Graham 1972, J Comp Physiol
  81:23-52; Graham 1985, Adv Insect Physiol 18:31-140). Here the swing lasts
  :data:`SWING_DURATION_S` = 0.16 s and a stance covers
  :data:`STANCE_AMPLITUDE_M` = 16 mm of tarsus travel (stick insects change
  speed mainly by the stance duration, the step amplitude changing little):
  stance duration = amplitude / speed; step frequency = 1 / (stance + swing);
  duty factor = stance / period, from 0.91 at 1 cm/s to 0.5 at 10 cm/s
  (about 0.8 and above in the slow wave gait, 0.5 in the tripod: Graham 1972,
  Grabowska et al. 2012).
* A requested ``step_frequency_hz`` keeps the swing duration: duty factor =
  1 - f x swing, stance amplitude = speed x stance duration (which must stay
  within :data:`AMPLITUDE_RANGE_M`, the legs' reach).
* Gait by speed when none is asked (Graham 1972, 1985; Wendler 1964;
  Grabowska et al. 2012, J Exp Biol 215:4255-4266, "Quadrupedal gaits in
  hexapod animals - inter-leg coordination in free-walking adult stick
  insects", who found tetrapod-like coordination over most speeds and
  tripod-like at the fastest): wave below 2 cm/s, tetrapod from 2 to
  5 cm/s, tripod above (:data:`GAIT_SPEEDS_M_S`). With the default timing these
  are the speeds where the duty factor passes 5/6 and 2/3, the least that keeps
  five and four legs on the floor.
* Phases (:data:`SWING_ONSETS`, swing onset as a fraction of the cycle):
  tripod: (L1, R2, L3) at 0 and (R1, L2, R3) at 1/2; tetrapod: back-to-front
  metachronal waves on each side with 1/3 between neighbours, diagonal pairs
  swinging together (L3+R2, L2+R1, L1+R3); wave: one leg at a time, hind to
  front on one side then the other (1/6 apart; contralateral partners in
  antiphase, Wilson 1966 Annu Rev Entomol 11:103-122).

Parameters outside the ranges raise ClipError naming the range
(data/generated.py's ``check_parameter``). :data:`HELDOUT` lists parameter sets
outside the training draws (:data:`TRAINING_SPEEDS_M_S`) but inside the
animal's range, for demos and benchmarks.
"""

from __future__ import annotations

import numpy as np

from mimic_mjx.bodies import stick_insect_anatomy as anat
from mimic_mjx.data.clips import Clip
from mimic_mjx.data.generated import check_parameter, clip_from_qpos
from mimic_mjx.errors import ClipError

BODY = "stick_insect"
SWING_DURATION_S = 0.16
STANCE_AMPLITUDE_M = 0.016
SWING_HEIGHT_M = 0.004
SPEED_RANGE_M_S = (0.01, 0.10)
FREQUENCY_RANGE_HZ = (0.4, 1.0 / (2.0 * SWING_DURATION_S))  # duty factor 0.94 .. 0.5
AMPLITUDE_RANGE_M = (0.006, 0.024)
#: Upper speed of the wave and tetrapod gaits (m/s); faster is tripod.
GAIT_SPEEDS_M_S = {"wave": 0.02, "tetrapod": 0.05}
GAITS = ("tripod", "tetrapod", "wave")
TIMING_SOURCE = "Wendler 1964; Graham 1972, 1985: constant swing, stance shortening with speed"
SPEED_SOURCE = "adult Carausius morosus walking speeds, Graham 1972; Grabowska et al. 2012"
#: Speeds the training clips are drawn from when none is given (m/s).
TRAINING_SPEEDS_M_S = (0.015, 0.08)
#: Swing onset of each leg as a fraction of the step cycle.
SWING_ONSETS = {
    "tripod": {"L1": 0.0, "R2": 0.0, "L3": 0.0, "R1": 0.5, "L2": 0.5, "R3": 0.5},
    "tetrapod": {"L3": 0.0, "L2": 1 / 3, "L1": 2 / 3, "R2": 0.0, "R1": 1 / 3, "R3": 2 / 3},
    "wave": {"L3": 0.0, "L2": 1 / 6, "L1": 2 / 6, "R3": 3 / 6, "R2": 4 / 6, "R1": 5 / 6},
}
#: Held-out parameter sets: physiological, outside TRAINING_SPEEDS_M_S or off the default timing.
HELDOUT = [
    {"speed": 0.011, "gait": "wave"},
    {"speed": 0.095, "gait": "tripod"},
    {"speed": 0.03, "step_frequency_hz": 1.6, "gait": "tetrapod"},
    {"speed": 0.06, "step_frequency_hz": 2.0, "gait": "tripod"},
]


def default_step_frequency(speed: float) -> float:
    """Step frequency (Hz) at ``speed`` (m/s): constant swing, stance of STANCE_AMPLITUDE_M."""
    return 1.0 / (STANCE_AMPLITUDE_M / speed + SWING_DURATION_S)


def duty_factor(step_frequency_hz: float) -> float:
    """Fraction of the cycle in stance at a step frequency (the swing lasts SWING_DURATION_S)."""
    return 1.0 - step_frequency_hz * SWING_DURATION_S


def gait_for_speed(speed: float) -> str:
    if speed < GAIT_SPEEDS_M_S["wave"]:
        return "wave"
    return "tetrapod" if speed < GAIT_SPEEDS_M_S["tetrapod"] else "tripod"


def check_gait(speed, step_frequency_hz=None, gait=None) -> tuple[float, float, str]:
    """(speed, step frequency, gait), each checked; ClipError naming the range otherwise."""
    v = check_parameter("walking speed", speed, *SPEED_RANGE_M_S, "m/s", SPEED_SOURCE)
    if step_frequency_hz is None:
        f = default_step_frequency(v)
    else:
        f = check_parameter("step frequency", step_frequency_hz, *FREQUENCY_RANGE_HZ, "Hz", TIMING_SOURCE)
    amplitude = v * duty_factor(f) / f
    check_parameter(
        "stance amplitude (speed x stance duration)", amplitude, *AMPLITUDE_RANGE_M, "m",
        "the model's leg reach about the standing posture; change speed or step frequency",
    )  # fmt: skip
    if gait is None:
        gait = gait_for_speed(v)
    if gait not in SWING_ONSETS:
        raise ClipError(f"unknown gait {gait!r}; the stick insect's gaits are {', '.join(GAITS)}")
    return v, f, gait


def _hermite(tau, p0, p1, m0, m1):
    t2, t3 = tau * tau, tau * tau * tau
    return (2 * t3 - 3 * t2 + 1) * p0 + (t3 - 2 * t2 + tau) * m0 + (-2 * t3 + 3 * t2) * p1 + (t3 - t2) * m1


def foot_offsets(t: np.ndarray, speed: float, step_frequency_hz: float, onset: float, phase0: float = 0.0):
    """(T, 2) tarsus tip offset (forward, up) in m from the standing position, and (T,) bool stance.

    Stance: backwards at ``speed`` on the floor; swing: a Hermite curve forwards with the stance's
    velocity at both ends, lifted by SWING_HEIGHT_M (sin^2 profile).
    """
    beta = duty_factor(step_frequency_hz)
    swing = 1.0 - beta
    amplitude = speed * beta / step_frequency_hz
    u = np.mod(step_frequency_hz * t + phase0 - onset, 1.0)
    in_swing = u < swing
    tau = np.where(in_swing, u / swing, 0.0)
    edge = -speed * SWING_DURATION_S  # d(forward)/d(tau) at both ends: the stance's velocity
    x_swing = _hermite(tau, -amplitude / 2, amplitude / 2, edge, edge)
    x_stance = amplitude / 2 - amplitude * (u - swing) / beta
    x = np.where(in_swing, x_swing, x_stance)
    z = np.where(in_swing, SWING_HEIGHT_M * np.sin(np.pi * tau) ** 2, 0.0)
    return np.stack([x, z], axis=-1), ~in_swing


def walking_qpos(
    speed: float, step_frequency_hz: float, gait: str, duration_s: float, fps: float, phase0: float = 0.0
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(T, 25) qpos of the stick insect walking, and each leg's (T,) stance mask (unchecked parameters)."""
    from mimic_mjx.bodies import get_body

    model = get_body(BODY).compile()
    frames = int(round(duration_s * fps)) + 1
    t = np.arange(frames) / fps
    qpos = np.tile(model.qpos0, (frames, 1))
    qpos[:, 0] = speed * t
    stance = {}
    for leg in anat.LEGS:
        offsets, stance[leg] = foot_offsets(t, speed, step_frequency_hz, SWING_ONSETS[gait][leg], phase0)
        tip = np.tile(anat.standing_foot(leg), (frames, 1))
        tip[:, 0] += offsets[:, 0]
        tip[:, 2] += offsets[:, 1]
        try:
            angles = anat.joint_angles(leg, tip)
        except ValueError as exc:  # pragma: no cover - the amplitude check keeps targets in reach
            raise ClipError(f"stick insect walking: {exc}") from None
        for k, j in enumerate(anat.JOINTS):
            joint = model.joint(f"{j}_{leg}")
            lo, hi = joint.range
            if angles[:, k].min() < lo or angles[:, k].max() > hi:  # pragma: no cover - ranges enclose walking
                raise ClipError(f"stick insect walking: joint {joint.name} leaves its range [{lo:.3f}, {hi:.3f}] rad")
            qpos[:, model.jnt_qposadr[joint.id]] = angles[:, k]
    return qpos, stance


def make_walking_clips(
    num_clips: int,
    seed: int = 0,
    *,
    speed: float | None = None,
    step_frequency_hz: float | None = None,
    gait: str | None = None,
    duration_s: float = 2.0,
    fps: float = 50.0,
    keypoint_noise_m: float = 0.0,
) -> list[Clip]:
    """``num_clips`` walking clips of the built-in stick insect.

    ``speed`` (m/s) None: each clip draws one uniformly from TRAINING_SPEEDS_M_S;
    ``step_frequency_hz`` None: the default timing at that speed; ``gait`` None: chosen by
    speed. Each clip starts at a random phase of the step cycle.
    """
    if int(num_clips) < 1:
        raise ClipError(f"num_clips must be >= 1, got {num_clips}")
    check_parameter("clip duration", duration_s, 0.1, 60.0, "s", "a clip of at least a few frames")
    check_parameter("frame rate", fps, 10.0, 1000.0, "Hz", "enough frames to resolve a 0.16-s swing")
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(int(num_clips)):
        v_asked = rng.uniform(*TRAINING_SPEEDS_M_S) if speed is None else speed
        v, f, g = check_gait(v_asked, step_frequency_hz, gait)
        qpos, _ = walking_qpos(v, f, g, duration_s, fps, phase0=float(rng.uniform()))
        name = f"walk_{g}_{i:03d}_{100 * v:.1f}cm_s_{f:.2f}Hz"
        clips.append(clip_from_qpos(BODY, name, qpos, fps, keypoint_noise_m=keypoint_noise_m, rng=rng))
    return clips


def max_joint_speeds(fps: float = 200.0) -> tuple[float, float]:
    """Peak |joint velocity| (rad/s) and |acceleration| (rad/s^2) over the extremes of the ranges."""
    peak_v = peak_a = 0.0
    lo_f = max(FREQUENCY_RANGE_HZ[0], 1.0 / (AMPLITUDE_RANGE_M[1] / SPEED_RANGE_M_S[1] + SWING_DURATION_S))
    for v, f in ((SPEED_RANGE_M_S[1], FREQUENCY_RANGE_HZ[1]), (SPEED_RANGE_M_S[1], lo_f)):
        qpos, _ = walking_qpos(v, f, "tripod", 1.0 / f + 0.1, fps)
        vel = np.diff(qpos[:, 7:], axis=0) * fps
        peak_v = max(peak_v, float(np.abs(vel).max()))
        peak_a = max(peak_a, float(np.abs(np.diff(vel, axis=0)).max() * fps))
    return peak_v, peak_a


if __name__ == "__main__":  # pragma: no cover - prints the bounds the body file's limits come from
    speed, accel = max_joint_speeds()
    print(f"peak joint speed {speed:.1f} rad/s, acceleration {accel:.0f} rad/s^2")
