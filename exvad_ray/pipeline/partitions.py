from exvad_ray.index.partitions import *  # noqa: F401,F403  # shim: removed at integration
