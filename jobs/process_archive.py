"""Ray job entry point for the archive job.

    ray job submit --working-dir . -- python jobs/process_archive.py --archive s3://b/p --index s3://i/run1

Same arguments as `exvad process` (see --help). Inside a Ray job, RAY_ADDRESS is set, so the job
connects to the cluster that runs it.
"""

import sys

from exvad_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["process", *sys.argv[1:]]))
