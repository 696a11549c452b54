"""Typed errors. `ExvadError` and its subclasses are user-facing: the CLI prints their message
(one line, no traceback) and exits with status 2; pipeline stages turn them into error rows."""

from __future__ import annotations

# Every `reason` an error row can carry, with what it means in the project's words. The decode
# reasons are exactly what `exvad_ray.video.sampling` raises (a test checks both directions); the
# rest come from the pipeline (model stages, the crash guard, user errors).
DECODE_REASONS: dict[str, str] = {
    "empty": "the file has zero bytes",
    "not_video": "not a video container this system can read",
    "truncated": "the file ends early or is corrupt",
    "no_video_stream": "the container holds no video stream (audio only, subtitles, ...)",
    "unknown_codec": "no decoder here can decode the video stream",
    "too_few_frames": "fewer frames than one snippet needs",
    "bad_dimensions": "frame size outside the supported range",
    "bad_timing": "the stream's frame rate or timestamps are unusable",
    "too_large": "longer or bigger than the configured limit",
    "unreadable": "the object could not be read (permission, loop, not a regular file)",
}
PIPELINE_REASONS: dict[str, str] = {
    "resource_exhausted": "the task was killed for memory on every attempt",
    "decoder_crash": "the decoding process crashed on every attempt",
    "stage_failed": "a model stage failed on the video's windows (the stage is named in the row)",
    "user_error": "a problem with the input or settings",
    "internal": "an unexpected error (a bug: please report it with the message)",
}
REASONS: dict[str, str] = {**DECODE_REASONS, **PIPELINE_REASONS}


class ExvadError(Exception):
    """A problem the user can fix (bad argument, missing file, bad input data)."""


class StorageError(ExvadError):
    """A location cannot be read or written (missing bucket, bad URI, no permission)."""


class StorageUnavailable(StorageError):
    """The storage service cannot be reached (network, endpoint down). Never an error row: the
    job stops with one line, and a rerun completes the rest."""


class ConfigError(ExvadError):
    """A configuration file, profile or option is invalid."""


class VideoDecodeError(ExvadError):
    """A video cannot be sampled. `reason` is a short stable code from `DECODE_REASONS`;
    `detail` keeps the underlying library's own message (the errors table's `detail` column)."""

    def __init__(self, reason: str, message: str, uri: str | None = None, detail: str | None = None):
        if reason not in DECODE_REASONS:
            raise ValueError(f"unknown decode reason {reason!r}")
        self.reason = reason
        self.uri = uri
        self.detail = detail
        super().__init__(f"{reason}: {message}" + (f" ({uri})" if uri else ""))
