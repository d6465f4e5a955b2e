"""Stick insect benchmark: train on generated walking, evaluate on speeds, step frequencies and gaits
not in the training draws, over several seeds (benchmarks/generated_body.py says what is measured).

The clips are the demo's (mimic_mjx.demo.demo_clips): 12 training clips walking at speeds drawn
from mimic_mjx.data.walking.TRAINING_SPEEDS_M_S with the default step timing and the gait the
speed selects; held-out clips from mimic_mjx.data.walking.HELDOUT (a slower wave gait, a faster
tripod, and two step frequencies off the default timing).

    .venv/bin/python benchmarks/stick_insect.py [--seeds 3] [--minutes 5] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import sys

from generated_body import parse_args, run


def main() -> int:
    args = parse_args("stick_insect", __doc__, minutes=5.0)
    from mimic_mjx.demo import demo_clips

    return run("stick_insect", *demo_clips("stick_insect"), args)


if __name__ == "__main__":
    sys.exit(main())
