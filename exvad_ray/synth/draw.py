"""Anti-aliased drawing primitives on float32 RGB images (H, W, 3), values 0..255.

Everything works on the bounding box of the shape only, vectorised with numpy, because the
generator draws a few hundred shapes per frame and must stay well under 5 ms per frame.
"""

from __future__ import annotations

import numpy as np

Color = tuple[float, float, float] | np.ndarray


def _clip_box(img: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int] | None:
    h, w = img.shape[:2]
    ix0, iy0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    ix1, iy1 = min(int(np.ceil(x1)) + 1, w), min(int(np.ceil(y1)) + 1, h)
    if ix0 >= ix1 or iy0 >= iy1:
        return None
    return ix0, iy0, ix1, iy1


def capsules(
    img: np.ndarray,
    segs: np.ndarray,
    radii: np.ndarray,
    colors: np.ndarray,
    alphas: np.ndarray | None = None,
    alpha: float = 1.0,
) -> None:
    """Draw thick line segments with round caps ("capsules"), in order (later on top).

    segs: (S, 4) x0, y0, x1, y1; radii: (S,); colors: (S, 3); alphas: (S,) per-segment opacity.
    A zero-length segment is a disc. Edges are anti-aliased over one pixel. Each segment is
    computed on its own small bounding box (a union box costs ten times more on a figure).
    """
    h, w = img.shape[:2]
    for s in range(len(segs)):
        x0, y0, x1, y1 = (float(v) for v in segs[s])
        r = float(radii[s])
        pad = r + 1.0
        bx0, by0 = max(int(min(x0, x1) - pad), 0), max(int(min(y0, y1) - pad), 0)
        bx1, by1 = min(int(max(x0, x1) + pad) + 2, w), min(int(max(y0, y1) + pad) + 2, h)
        if bx0 >= bx1 or by0 >= by1:
            continue
        ys = np.arange(by0, by1, dtype=np.float32)[:, None] + (0.5 - y0)
        xs = np.arange(bx0, bx1, dtype=np.float32)[None, :] + (0.5 - x0)
        dx, dy = x1 - x0, y1 - y0
        ll = dx * dx + dy * dy
        if ll > 1e-6:
            t = np.clip((xs * dx + ys * dy) * (1.0 / ll), 0.0, 1.0)
            px, py = xs - t * dx, ys - t * dy
        else:
            px, py = xs, ys
        cover = np.clip((r + 0.5) - np.sqrt(px * px + py * py), 0.0, 1.0)
        a = alpha * (float(alphas[s]) if alphas is not None else 1.0)
        if a != 1.0:
            cover *= a
        region = img[by0:by1, bx0:bx1]
        region += cover[:, :, None] * (np.asarray(colors[s], dtype=np.float32) - region)


def ellipse(
    img: np.ndarray, cx: float, cy: float, rx: float, ry: float, color: Color, alpha: float = 1.0,
    soft: float = 0.0, additive: bool = False,
) -> None:
    """A filled ellipse; ``soft`` in 0..1 fades the edge from the centre (1 = fully radial falloff)."""
    if rx < 0.3 or ry < 0.3 or alpha <= 0.0:
        return
    box = _clip_box(img, cx - rx - 1, cy - ry - 1, cx + rx + 1, cy + ry + 1)
    if box is None:
        return
    bx0, by0, bx1, by1 = box
    ys = (np.arange(by0, by1, dtype=np.float32)[:, None] + 0.5 - cy) / ry
    xs = (np.arange(bx0, bx1, dtype=np.float32)[None, :] + 0.5 - cx) / rx
    d2 = xs * xs + ys * ys  # squared distances: no sqrt, the falloff shape is what matters
    if soft > 0.0:
        a = np.clip((1.0 - d2) * (1.0 / soft), 0.0, 1.0)
    else:
        edge = max(min(rx, ry), 1.0)
        a = np.clip((1.0 - d2) * (0.5 * edge) + 0.5, 0.0, 1.0)
    a = (a * alpha)[:, :, None]
    region = img[by0:by1, bx0:bx1]
    col = np.asarray(color, dtype=np.float32)
    if additive:
        region += a * col
    else:
        region += a * (col - region)


def rect(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, color: Color, alpha: float = 1.0) -> None:
    """An axis-aligned rectangle (pixel-aligned; used for backgrounds and falling objects)."""
    box = _clip_box(img, x0, y0, x1 - 1, y1 - 1)
    if box is None:
        return
    bx0, by0, bx1, by1 = box
    region = img[by0:by1, bx0:bx1]
    region += alpha * (np.asarray(color, dtype=np.float32) - region)


def rotated_rect(
    img: np.ndarray, cx: float, cy: float, w: float, h: float, angle: float, color: Color, alpha: float = 1.0
) -> None:
    """A filled rectangle rotated by ``angle`` radians around its centre (debris, tumbling objects)."""
    r = 0.5 * float(np.hypot(w, h)) + 1.0
    box = _clip_box(img, cx - r, cy - r, cx + r, cy + r)
    if box is None:
        return
    bx0, by0, bx1, by1 = box
    ys = np.arange(by0, by1, dtype=np.float32)[:, None] + 0.5 - cy
    xs = np.arange(bx0, bx1, dtype=np.float32)[None, :] + 0.5 - cx
    c, s = np.cos(angle), np.sin(angle)
    u = xs * c + ys * s
    v = -xs * s + ys * c
    a = np.clip(0.5 * w - np.abs(u) + 0.5, 0, 1) * np.clip(0.5 * h - np.abs(v) + 0.5, 0, 1)
    a = (a * alpha)[:, :, None]
    region = img[by0:by1, bx0:bx1]
    region += a * (np.asarray(color, dtype=np.float32) - region)


def capsule_sprite(segs: np.ndarray, radii: np.ndarray, colors: np.ndarray,
                   alphas: np.ndarray | None = None) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Render capsules into a small premultiplied RGBA sprite: (x0, y0, colour (h, w, 3), alpha
    (h, w, 1)). Sprites are cached by pose, so a walker costs one blend per frame."""
    segs = np.asarray(segs, np.float32)
    pad = float(np.max(radii)) + 2.0
    x0 = int(np.floor(min(segs[:, 0].min(), segs[:, 2].min()) - pad))
    y0 = int(np.floor(min(segs[:, 1].min(), segs[:, 3].min()) - pad))
    x1 = int(np.ceil(max(segs[:, 0].max(), segs[:, 2].max()) + pad))
    y1 = int(np.ceil(max(segs[:, 1].max(), segs[:, 3].max()) + pad))
    rgba = np.zeros((y1 - y0, x1 - x0, 4), np.float32)
    local = segs - np.array([x0, y0, x0, y0], np.float32)
    cols = np.concatenate([np.asarray(colors, np.float32), np.ones((len(segs), 1), np.float32)], axis=1)
    capsules(rgba, local, radii, cols, alphas)
    return x0, y0, rgba[:, :, :3].copy(), rgba[:, :, 3:4].copy()


def blit(img: np.ndarray, x0: int, y0: int, color: np.ndarray, alpha_map: np.ndarray, alpha: float = 1.0) -> None:
    """Composite a sprite from ``capsule_sprite`` (its colour is already multiplied by its alpha
    because it was drawn over transparent black) at integer position (x0, y0)."""
    h, w = img.shape[:2]
    sh, sw = alpha_map.shape[:2]
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + sw, w), min(y0 + sh, h)
    if ix0 >= ix1 or iy0 >= iy1:
        return
    c = color[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
    a = alpha_map[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
    region = img[iy0:iy1, ix0:ix1]
    if alpha == 1.0:
        region -= region * a
        region += c
    else:
        region *= 1.0 - alpha * a
        region += alpha * c
