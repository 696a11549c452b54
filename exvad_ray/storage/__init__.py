"""One way to name locations: local paths, ``file://`` and ``s3://`` URIs.

Backed by fsspec/s3fs (listing, streaming, small files) and pyarrow filesystems (Parquet).
S3 endpoint, credentials and anonymous access come from the standard AWS environment variables
(``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, ``AWS_NO_SIGN_REQUEST``) or the AWS
config files; secrets are never logged or printed (see ``S3Settings.__repr__``).
"""

from exvad_ray.storage.inventory import InventoryManifest, iter_inventory, read_manifest as read_inventory_manifest
from exvad_ray.storage.locations import (
    DEFAULT_VIDEO_EXTENSIONS,
    ArchivePage,
    S3Settings,
    VideoEntry,
    arrow_filesystem,
    exists,
    filesystem,
    is_remote,
    is_unreachable,
    iter_archive,
    iter_objects,
    join,
    content_hash,
    list_archive,
    list_videos,
    local_copy,
    normalize,
    open_file,
    put_file,
    read_bytes,
    unavailable,
    video_id,
    video_key,
    write_bytes,
)

__all__ = [
    "DEFAULT_VIDEO_EXTENSIONS",
    "ArchivePage",
    "InventoryManifest",
    "S3Settings",
    "VideoEntry",
    "arrow_filesystem",
    "exists",
    "filesystem",
    "is_remote",
    "is_unreachable",
    "iter_archive",
    "iter_inventory",
    "iter_objects",
    "join",
    "content_hash",
    "list_archive",
    "list_videos",
    "local_copy",
    "normalize",
    "open_file",
    "put_file",
    "read_bytes",
    "read_inventory_manifest",
    "unavailable",
    "video_id",
    "video_key",
    "write_bytes",
]
