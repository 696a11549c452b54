from exvad_ray.index.schemas import *  # noqa: F401,F403  # shim: removed at integration
