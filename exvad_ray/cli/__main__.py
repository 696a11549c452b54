"""`python -m exvad_ray.cli ...` is `exvad ...` (the tests and Ray jobs start it this way)."""

import sys

from exvad_ray.cli import main

sys.exit(main())
