from exvad_ray.index.store import *  # noqa: F401,F403  # shim: removed at integration
from exvad_ray.index.store import list_files as _list_files  # noqa: F401  # shim: removed at integration
from exvad_ray.index.compaction import compact  # noqa: F401,E402  # shim: removed at integration
