"""A camera's fixed scene: background (walls, perspective-tiled floor, static objects) and geometry.

Each camera gets its own scene from (seed, camera index), so that the archive looks like several
fixed surveillance cameras; every video of a camera shares the same background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exvad_ray.synth import draw


@dataclass
class Scene:
    """Background image plus the geometry the actors need (horizon, floor, person size by depth)."""

    background: np.ndarray  # float32 (H, W, 3), 0..255
    horizon: float  # y of the floor's far edge (pixels)
    h_far: float  # person height (pixels) at the horizon
    h_near: float  # person height (pixels) at the bottom edge
    shelf_y: float  # y from which objects can fall (ceiling / shelf line)

    @property
    def height(self) -> int:
        return int(self.background.shape[0])

    @property
    def width(self) -> int:
        return int(self.background.shape[1])

    def person_height(self, y: float) -> float:
        """Apparent height of a person whose feet are at ``y`` (linear perspective)."""
        f = (y - self.horizon) / max(self.height - self.horizon, 1.0)
        return self.h_far + f * (self.h_near - self.h_far)

    def floor_y(self, f: float) -> float:
        """A floor line: ``f`` = 0 far (just below the horizon) .. 1 near (bottom edge)."""
        top = self.horizon + 0.12 * (self.height - self.horizon)
        return top + f * (self.height - 4 - top)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Low-frequency value noise in -1..1 (bilinear upsampling of a coarse random grid)."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    ys = np.arange(h, dtype=np.float32) / cell
    xs = np.arange(w, dtype=np.float32) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def make_scene(width: int, height: int, seed: int, camera: int) -> Scene:
    """Build camera ``camera``'s background deterministically."""
    rng = np.random.default_rng([seed, 7919, camera])
    H, W = height, width
    img = np.zeros((H, W, 3), np.float32)
    horizon = float(rng.uniform(0.33, 0.45) * H)
    hz = int(horizon)

    # Walls: a base colour, vertical panels and a skirting board.
    wall = rng.uniform(90, 190, 3).astype(np.float32)
    wall = wall * 0.6 + wall.mean() * 0.4  # keep walls unsaturated
    img[:hz] = wall
    panel_w = int(rng.integers(max(W // 10, 8), max(W // 4, 12)))
    for i, x in enumerate(range(0, W, panel_w)):
        shade = 1.0 + (0.06 if i % 2 else -0.04) + rng.uniform(-0.03, 0.03)
        img[:hz, x:x + panel_w] *= shade
        img[:hz, x:x + 1] *= 0.8
    img[:hz] *= 1.0 + 0.05 * _smooth_noise(rng, hz, W, max(W // 12, 4))[:, :, None]
    img[max(hz - max(H // 60, 2), 0):hz] = wall * 0.55

    # Floor: perspective tiles (lines converge to a vanishing point on the horizon).
    floor_a = rng.uniform(70, 170, 3).astype(np.float32)
    floor_a = floor_a * 0.5 + floor_a.mean() * 0.5
    floor_b = floor_a * rng.uniform(0.8, 0.92)
    ys = np.arange(hz, H, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(W, dtype=np.float32)[None, :] + 0.5
    depth = (H - horizon) / np.maximum(ys - horizon, 1.0)  # 1 at bottom, grows to the horizon
    vx = rng.uniform(0.3, 0.7) * W
    world_x = (xs - vx) * depth / W
    tiles = rng.uniform(5, 9)
    parity = (np.floor(world_x * tiles) + np.floor(depth * tiles * 0.6)) % 2
    floor = np.where(parity[:, :, None] > 0, floor_a, floor_b).astype(np.float32)
    # grout lines
    gx = np.abs(world_x * tiles - np.round(world_x * tiles)) / np.maximum(depth, 1.0)
    gz = np.abs(depth * tiles * 0.6 - np.round(depth * tiles * 0.6)) / np.maximum(depth, 1.0) ** 1.2
    grout = ((gx < 0.03) | (gz < 0.03))[:, :, None]
    floor = np.where(grout, floor * 0.82, floor)
    floor *= (1.0 + 0.08 * _smooth_noise(rng, H - hz, W, max(W // 16, 4)))[:, :, None]
    floor *= (0.85 + 0.15 * (ys - horizon) / (H - horizon))[:, :, None]  # darker far away
    img[hz:] = floor

    # Static objects: pillars, benches, planters, a door, a window, signs.
    n_obj = int(rng.integers(3, 6))
    kinds = rng.choice(["pillar", "bench", "planter", "door", "window", "sign", "bin"], size=n_obj, replace=True)
    for kind in kinds:
        x = float(rng.uniform(0.05, 0.95) * W)
        col = rng.uniform(30, 220, 3).astype(np.float32)
        if kind == "pillar":
            pw = rng.uniform(0.04, 0.08) * W
            draw.rect(img, x - pw / 2, 0, x + pw / 2, horizon + 0.1 * (H - horizon), col * 0.5 + 60)
            draw.rect(img, x - pw / 2, 0, x - pw / 2 + 2, horizon + 0.1 * (H - horizon), col * 0.35 + 40)
        elif kind == "bench":
            y = horizon + rng.uniform(0.05, 0.2) * (H - horizon)
            bw = rng.uniform(0.12, 0.25) * W
            bh = 0.04 * H
            draw.rect(img, x - bw / 2, y - 2.5 * bh, x + bw / 2, y - 1.5 * bh, col * 0.7)
            draw.rect(img, x - bw / 2, y - 1.5 * bh, x + bw / 2, y - bh, col * 0.6)
            draw.rect(img, x - bw / 2 + 2, y - bh, x - bw / 2 + 5, y, col * 0.3)
            draw.rect(img, x + bw / 2 - 5, y - bh, x + bw / 2 - 2, y, col * 0.3)
        elif kind == "planter":
            y = horizon + rng.uniform(0.02, 0.15) * (H - horizon)
            r = rng.uniform(0.03, 0.06) * W
            draw.rect(img, x - r * 0.6, y - r, x + r * 0.6, y, (110, 80, 60))
            green = np.array([rng.uniform(20, 70), rng.uniform(90, 160), rng.uniform(20, 70)], np.float32)
            for _ in range(6):
                draw.ellipse(img, x + rng.uniform(-r, r) * 0.7, y - r - rng.uniform(0, r * 1.4),
                             r * rng.uniform(0.4, 0.7), r * rng.uniform(0.4, 0.7), green * rng.uniform(0.7, 1.2))
        elif kind == "door":
            dw = rng.uniform(0.07, 0.12) * W
            dh = rng.uniform(0.55, 0.8) * horizon
            draw.rect(img, x - dw / 2, horizon - dh, x + dw / 2, horizon, col * 0.4 + 20)
            draw.rect(img, x + dw / 4, horizon - dh / 2, x + dw / 4 + 2, horizon - dh / 2 + 3, (200, 190, 120))
        elif kind == "window":
            ww = rng.uniform(0.1, 0.2) * W
            wh = rng.uniform(0.25, 0.45) * horizon
            top = rng.uniform(0.1, 0.3) * horizon
            draw.rect(img, x - ww / 2, top, x + ww / 2, top + wh, (60, 60, 60))
            draw.rect(img, x - ww / 2 + 2, top + 2, x + ww / 2 - 2, top + wh - 2,
                      np.array([170, 195, 215], np.float32) * rng.uniform(0.8, 1.15))
            draw.rect(img, x - 1, top, x + 1, top + wh, (60, 60, 60))
        elif kind == "sign":
            sw = rng.uniform(0.06, 0.12) * W
            top = rng.uniform(0.1, 0.4) * horizon
            # signs may be orange/red/yellow: warm colours are not reserved for fire
            warm = np.array([rng.uniform(180, 250), rng.uniform(70, 200), rng.uniform(0, 60)], np.float32)
            draw.rect(img, x - sw / 2, top, x + sw / 2, top + sw * 0.5, warm if rng.random() < 0.5 else col)
        else:  # bin
            y = horizon + rng.uniform(0.02, 0.12) * (H - horizon)
            bw = rng.uniform(0.025, 0.045) * W
            draw.rect(img, x - bw / 2, y - bw * 1.6, x + bw / 2, y, col * 0.6)
    # A shelf/ceiling line from which objects may fall.
    shelf_y = float(rng.uniform(0.08, 0.22) * H)
    draw.rect(img, 0, shelf_y, W, shelf_y + max(H // 80, 2), wall * 0.5)
    h_near = float(rng.uniform(0.36, 0.46) * H)
    h_far = h_near * float(rng.uniform(0.35, 0.5))
    np.clip(img, 0, 255, out=img)
    return Scene(background=img, horizon=horizon, h_far=h_far, h_near=h_near, shelf_y=shelf_y)
