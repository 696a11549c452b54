"""Video probing and snippet sampling (decord), with typed errors for bad input."""

from exvad_ray.video.sampling import (
    SamplingConfig,
    VideoInfo,
    iter_windows,
    probe_video,
    sample_uri,
    snippet_layout,
)

__all__ = ["SamplingConfig", "VideoInfo", "iter_windows", "probe_video", "sample_uri", "snippet_layout"]
