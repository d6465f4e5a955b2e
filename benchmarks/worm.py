"""Worm benchmark: train C. elegans on generated crawling, evaluate on wave frequencies and wavelengths
not in the training draws, over several seeds (benchmarks/generated_body.py says what is measured).

The clips are the demo's (mimic_mjx.demo.demo_clips): 12 training clips crawling on agar with
frequency, wavelength and curvature drawn from mimic_mjx.data.undulation.TRAINING["crawl"];
held-out clips from undulation.HELDOUT["crawl"] (a slower, shorter-wave crawl and a faster,
longer-wave one), two headings each. Errors are also given in micrometres.

    .venv/bin/python benchmarks/worm.py [--seeds 3] [--minutes 5] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import sys

from generated_body import parse_args, run


def _micrometres(f: dict) -> dict:
    return {
        "heldout_body_error_um_max": round(1e3 * f["heldout_body_error_mm_max"], 2),
        "heldout_body_error_um_mean": round(1e3 * f["heldout_body_error_mm_mean"], 2),
    }


def main() -> int:
    args = parse_args("worm", __doc__, minutes=5.0)
    from mimic_mjx.demo import demo_clips

    return run("worm", *demo_clips("worm"), args, extra=_micrometres)


if __name__ == "__main__":
    sys.exit(main())
