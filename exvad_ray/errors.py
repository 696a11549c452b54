"""Typed errors. `ExvadError` and its subclasses are user-facing: the CLI prints their message
(no traceback) and exits with status 2; pipeline stages turn them into error rows."""

from __future__ import annotations


class ExvadError(Exception):
    """A problem the user can fix (bad argument, missing file, bad input data)."""


class StorageError(ExvadError):
    """A location cannot be read or written (missing bucket, bad URI, no permission)."""


class ConfigError(ExvadError):
    """A configuration file or profile is invalid."""


class VideoDecodeError(ExvadError):
    """A video cannot be sampled. `reason` is a short stable code for error rows and counts:
    empty, truncated, not_video, no_video_stream, unknown_codec, too_few_frames, bad_dimensions,
    too_large, read_failed."""

    def __init__(self, reason: str, message: str, uri: str | None = None):
        self.reason = reason
        self.uri = uri
        super().__init__(f"{reason}: {message}" + (f" ({uri})" if uri else ""))
