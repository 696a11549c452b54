"""Ray job entry point for `exvad evaluate` (same arguments, see --help)."""

import sys

from exvad_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
