"""Settings of the STAC registration solver (``registration.stac``); its module docstring explains the priors."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class StacConfig:
    rounds: int = 3  # pose/offset alternations after the first pose fit
    lm_iterations: int = 25  # Levenberg-Marquardt steps per pose round
    smooth_m_per_rad: float = 0.002  # smoothness: 1 rad off the neighbours' mean costs like 2 mm
    prior_m_per_rad: float = 0.0  # pull towards the neutral pose (0: none)
    # Joint-speed prior ("Temporal priors" in registration/stac.py; needs the frame rate): 1 rad/s costs like this
    # keypoint error, so 100 rad/s like 1 mm; 0 turns it off. Chosen on the 37 mouse-arm reaches
    # (docs/registration.md): their 100+ rad/s swings go, the median residual moves < 0.01 mm.
    velocity_m_per_rad_s: float = 1e-5
    # Where a joint moves the keypoints less than this per radian (with the other joints free to
    # compensate), it is poorly seen from them and its speed prior grows by observable_lever_m /
    # its lever, up to 50x. 5 mm: below the forearm of the mouse (6.9 mm) or any rat limb segment.
    observable_lever_m: float = 0.005
    # Hinges stay this far inside their range limits (at most a tenth of the range): a reference
    # that rides a limit asks the simulated joint to press on its limit constraint, where the
    # controller overshoots (docs/registration.md); 0.05 rad ~ 3 deg.
    limit_margin_rad: float = 0.05
    offset_reg: float = 0.05  # offset regularisation, as a fraction of the frames' total weight
    min_confidence: float = 0.0  # keypoints at or below this confidence are ignored
    weight_by_confidence: bool = False  # else every kept keypoint weighs 1
    batch_frames: int = 2000  # frames solved together (memory bound)
    # The priors' lengths shrink with bodies smaller than PRIOR_REFERENCE_EXTENT_M (False: as given).
    scale_priors_with_size: bool = True

    def for_body_extent(self, extent_m: float) -> tuple[StacConfig, float]:
        """This config for a body whose rest keypoints span ``extent_m``, and the factor applied (<= 1)."""
        if not self.scale_priors_with_size or not extent_m > 0:
            return self, 1.0
        f = min(1.0, extent_m / PRIOR_REFERENCE_EXTENT_M)
        scaled = dataclasses.replace(
            self,
            smooth_m_per_rad=self.smooth_m_per_rad * f,
            prior_m_per_rad=self.prior_m_per_rad * f,
            velocity_m_per_rad_s=self.velocity_m_per_rad_s * f,
            observable_lever_m=self.observable_lever_m * f,
        )
        return scaled, f


#: The priors' lengths weigh a joint's motion like a keypoint error; they were chosen on the mouse
#: forelimb (rest keypoints 11 mm apart) and hold for the rat (150 mm), where keypoint noise is set by
#: the cameras (~1 mm). A 1-mm worm imaged at its own scale has micrometre noise: the same lengths
#: would outweigh every keypoint, so below this extent they shrink with the body.
PRIOR_REFERENCE_EXTENT_M = 0.011


DEFAULT_STAC = StacConfig()  # a shared default argument (the config is frozen)
