"""Ray job entry point: `ray job submit -- python jobs/train_detector.py --labels ... --out s3://...`.
Same arguments as `exvad train` (see --help); on a cluster it connects to the running Ray."""

import os
import sys

os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")

from exvad_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
