"""Small helpers shared by the model wrappers and stages (numpy in/out, ragged Ray columns)."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from exvad_ray.errors import ExvadError


def as_images(images: Any, what: str = "images") -> np.ndarray:
    """Validate a uint8 NHWC RGB batch (a 4-d array, or a list of HWC arrays of one size).

    Why strict: a wrong layout (NCHW, grey, float) silently gives garbage features downstream.
    """
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ExvadError(f"empty batch: no {what} given")
        try:
            images = np.stack([np.asarray(im) for im in images])
        except ValueError as exc:
            raise ExvadError(f"{what} must all have the same shape: {exc}") from exc
    images = np.asarray(images)
    if images.dtype == object:
        raise ExvadError(f"{what} must be a uint8 array (N, H, W, 3), got a ragged object array")
    if images.ndim == 3 and images.shape[-1] == 3:
        raise ExvadError(f"{what} must be a batch (N, H, W, 3); got one image of shape {images.shape} "
                         "(wrap it as images[None])")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ExvadError(f"{what} must have shape (N, H, W, 3) (RGB, channels last), got {images.shape}")
    if images.shape[0] == 0:
        raise ExvadError(f"empty batch: no {what} given (shape {images.shape})")
    if images.shape[1] < 2 or images.shape[2] < 2:
        raise ExvadError(f"{what} are too small: {images.shape[1]}x{images.shape[2]}")
    if images.dtype != np.uint8:
        raise ExvadError(f"{what} must be uint8 (0..255), got {images.dtype}")
    return images


def as_texts(texts: Any) -> list[str]:
    """A text encoder's input as a non-empty list of str (a bare string is a caller's mistake)."""
    if isinstance(texts, str):
        raise ExvadError("embed_texts takes a list of strings, got one string")
    texts = [str(t) for t in texts]
    if not texts:
        raise ExvadError("empty batch: no texts given")
    return texts


def chunks(n: int, size: int) -> Iterable[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def column(batch: dict[str, Any], name: str) -> list[Any]:
    """A batch column as a list of per-row values (Ray's numpy format gives ndarray or object arrays)."""
    if name not in batch:
        raise ExvadError(f"batch has no column {name!r} (columns: {sorted(batch)})")
    value = batch[name]
    if isinstance(value, np.ndarray) and value.dtype != object:
        return [value[i] for i in range(len(value))]
    return list(value)


def num_rows(batch: dict[str, Any]) -> int:
    for v in batch.values():
        return len(v)
    return 0


def prior_errors(batch: dict[str, Any]) -> list[str | None]:
    """The incoming ``error`` column (rows that already failed are passed through untouched)."""
    n = num_rows(batch)
    if "error" not in batch:
        return [None] * n
    return [None if _missing(e) else str(e) for e in batch["error"]]


def _missing(value: Any) -> bool:
    """An all-null Arrow column comes back from Ray as NaN (or its text); treat those as 'no error'."""
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    return str(value) in ("", "nan", "None")


def to_str_list(value: Any) -> list[str]:
    """A list-of-strings cell (list, ndarray of str/object) as ``list[str]``."""
    if value is None:
        return []
    return [str(v) for v in list(value)]


def object_column(values: list[Any]) -> np.ndarray:
    """An object ndarray holding one value per row (lists / arrays of different lengths)."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def error_text(stage: str, exc: BaseException) -> str:
    return f"{stage}: {type(exc).__name__}: {exc}"


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def resize_center_crop(images: np.ndarray, size: int, device: str = "cpu", interpolation: str = "bicubic"):
    """uint8 NHWC -> float32 NCHW (0..255) of ``size`` x ``size``: resize the shorter side, centre crop.

    On the CPU the resize runs on uint8 in channels-last layout (torch's vectorised antialias kernels:
    ~15x faster than on float, within one grey level of it), and only the model-sized result is
    converted to float. Images already at ``size`` are not resampled.
    """
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # a channels-last view
    if str(device) != "cpu":
        x = x.to(device).float()
    h, w = x.shape[-2:]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        mode = interpolation if interpolation in ("bilinear", "bicubic") else "bilinear"
        x = F.interpolate(x, size=(nh, nw), mode=mode, align_corners=False, antialias=True)
        top, left = (nh - size) // 2, (nw - size) // 2
        x = x[:, :, top:top + size, left:left + size]
    return x.float().contiguous().clamp(0, 255)
