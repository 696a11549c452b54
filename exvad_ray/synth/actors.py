"""People: articulated stick figures (capsule limbs, head, torso) with walking, standing, chatting,
running and fighting poses.

Motion blur is physical rather than class-specific: any figure whose body moved more than a few
percent of its height since the last frame also leaves a faint copy of its previous pose, so fast
runners and jittering fighters smear while walkers stay sharp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from exvad_ray.synth import draw

SKIN = np.array([[235, 200, 170], [200, 150, 110], [160, 110, 75], [110, 75, 50], [240, 210, 185]], np.float32)


@dataclass
class Pose:
    """Joint angles in radians from the vertical (positive = towards the facing direction)."""

    leg_b: float = 0.0
    leg_f: float = 0.0
    knee_b: float = 0.0
    knee_f: float = 0.0
    arm_b: float = 0.05
    arm_f: float = -0.05
    elbow_b: float = 0.2
    elbow_f: float = 0.2
    lean: float = 0.02
    crouch: float = 0.0


@dataclass
class Person:
    """One figure. ``x, y``: feet position in pixels; ``h``: height is taken from the scene's depth."""

    pid: int
    x: float
    y: float
    direction: int  # +1 walks/faces right, -1 left
    speed: float  # heights per second
    colors: np.ndarray  # (4, 3): shirt, trousers, skin, hair
    scale: float = 1.0
    mode: str = "walk"  # walk, stand, chat, run, approach, fight, gone
    phase: float = 0.0
    until: int = 0  # frame at which a timed mode ends
    target_x: float = 0.0
    target_y: float | None = None
    carry: np.ndarray | None = None  # colour of a carried box
    exit_by: int | None = None  # frame by which a runner must have left the view
    pose: Pose = field(default_factory=Pose)
    prev_sprite: tuple[int, int, np.ndarray, np.ndarray] | None = None
    sprites: dict = field(default_factory=dict, repr=False)  # pose key -> sprite at the origin
    jitter: tuple[float, float] = (0.0, 0.0)
    fight_base: tuple[float, float] = (0.0, 0.0)
    fight_side: int = 1
    lunge: tuple[float, float] = (2.0, 0.0)  # frequency (Hz), phase
    tag: str = ""  # which event owns this figure ("" = ambient)


def random_colors(rng: np.random.Generator) -> np.ndarray:
    """Clothing in any colour (warm ones included, so that orange pixels alone do not mean fire)."""
    shirt = rng.uniform(20, 240, 3)
    if rng.random() < 0.3:  # many people wear dark or grey clothes
        shirt = np.full(3, rng.uniform(25, 200)) + rng.uniform(-10, 10, 3)
    trousers = rng.uniform(20, 120, 3) if rng.random() < 0.7 else rng.uniform(20, 230, 3)
    skin = SKIN[rng.integers(0, len(SKIN))] * rng.uniform(0.9, 1.05)
    hair = np.full(3, rng.uniform(15, 120)) + np.array([rng.uniform(0, 40), rng.uniform(0, 20), 0.0])
    return np.clip(np.stack([shirt, trousers, skin, hair]), 0, 255).astype(np.float32)


def walk_pose(phase: float, amp: float = 0.38) -> Pose:
    s = math.sin(phase)
    return Pose(
        leg_b=-amp * s, leg_f=amp * s,
        knee_b=0.5 * max(0.0, s), knee_f=0.5 * max(0.0, -s),
        arm_b=0.8 * amp * s, arm_f=-0.8 * amp * s,
        elbow_b=0.25, elbow_f=0.25, lean=0.04,
    )


def run_pose(phase: float, amp: float = 0.75) -> Pose:
    s = math.sin(phase)
    return Pose(
        leg_b=-amp * s, leg_f=amp * s,
        knee_b=1.3 * max(0.0, s) + 0.3, knee_f=1.3 * max(0.0, -s) + 0.3,
        arm_b=1.1 * amp * s, arm_f=-1.1 * amp * s,
        elbow_b=1.4, elbow_f=1.4, lean=0.32, crouch=0.08,
    )


def stand_pose(t: float, gesture: float = 0.0) -> Pose:
    return Pose(
        leg_b=-0.06, leg_f=0.06, arm_b=0.06, arm_f=-0.05 + gesture * (0.5 + 0.3 * math.sin(t * 3.0)),
        elbow_f=0.2 + gesture * 1.0, lean=0.0,
    )


def fight_pose(rng: np.random.Generator) -> Pose:
    """Arms thrown forward/up at random, wide stance, leaning in: changes every frame or two."""
    return Pose(
        leg_b=-rng.uniform(0.25, 0.6), leg_f=rng.uniform(0.2, 0.6),
        knee_b=rng.uniform(0.0, 0.6), knee_f=rng.uniform(0.0, 0.9),
        arm_b=rng.uniform(0.6, 2.9), arm_f=rng.uniform(0.9, 2.9),
        elbow_b=rng.uniform(-0.3, 1.6), elbow_f=rng.uniform(-0.3, 1.6),
        lean=rng.uniform(-0.15, 0.45), crouch=rng.uniform(0.0, 0.25),
    )


def person_segments(p: Person, h: float, x: float = 0.0, y: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Capsule segments (S, 4), radii (S,), colours (S, 3) for a figure of height ``h`` with its
    feet at (x, y), drawn back limbs first."""
    q, d = p.pose, float(p.direction)
    shirt, trousers, skin, hair = p.colors
    hip_y = y - 0.5 * h * (1.0 - q.crouch)
    hip = (x, hip_y)
    thigh, shin = 0.26 * h * (1.0 - 0.3 * q.crouch), 0.25 * h
    torso = 0.29 * h
    sh = (hip[0] + d * torso * math.sin(q.lean), hip[1] - torso * math.cos(q.lean))
    head = (sh[0] + d * 0.13 * h * math.sin(q.lean), sh[1] - 0.13 * h * math.cos(q.lean))
    up, fore = 0.17 * h, 0.16 * h

    def limb(origin: tuple[float, float], a1: float, a2: float, l1: float, l2: float) -> list[tuple[float, ...]]:
        j = (origin[0] + d * l1 * math.sin(a1), origin[1] + l1 * math.cos(a1))
        e = (j[0] + d * l2 * math.sin(a2), j[1] + l2 * math.cos(a2))
        return [(origin[0], origin[1], j[0], j[1]), (j[0], j[1], e[0], e[1])]

    leg_b = limb(hip, q.leg_b, q.leg_b - q.knee_b, thigh, shin)
    leg_f = limb(hip, q.leg_f, q.leg_f - q.knee_f, thigh, shin)
    arm_b = limb(sh, q.arm_b, q.arm_b + q.elbow_b, up, fore)
    arm_f = limb(sh, q.arm_f, q.arm_f + q.elbow_f, up, fore)
    dark = trousers * 0.75
    segs = [*arm_b, *leg_b, *leg_f, (hip[0], hip[1], sh[0], sh[1]), (head[0], head[1], head[0], head[1]),
            (head[0] - d * 0.02 * h, head[1] - 0.035 * h, head[0] - d * 0.02 * h, head[1] - 0.035 * h), *arm_f]
    radii = [0.034 * h, 0.03 * h, 0.045 * h, 0.038 * h, 0.05 * h, 0.042 * h, 0.1 * h, 0.072 * h, 0.062 * h,
             0.036 * h, 0.031 * h]
    colors = [shirt * 0.8, skin * 0.85, dark, dark, trousers, trousers, shirt, skin, hair, shirt, skin]
    return (np.asarray(segs, np.float32), np.maximum(np.asarray(radii, np.float32), 0.8),
            np.asarray(colors, np.float32))


def _pose_key(p: Person, h: float) -> tuple:
    q = p.pose
    return (p.direction, int(round(h)), p.carry is not None,
            *(int(round(v * 20)) for v in (q.leg_b, q.leg_f, q.knee_b, q.knee_f, q.arm_b, q.arm_f,
                                           q.elbow_b, q.elbow_f, q.lean, q.crouch)))


def _sprite(p: Person, h: float) -> tuple[int, int, np.ndarray, np.ndarray]:
    """The figure's sprite for its current pose, relative to its feet (cached per person)."""
    key = _pose_key(p, h)
    sp = p.sprites.get(key)
    if sp is None:
        segs, radii, colors = person_segments(p, h)
        if p.carry is not None:  # a box held in front, at hand height
            hx, hy = float(segs[-1, 2]), float(segs[-1, 3])
            bw = 0.2 * h
            box = np.array([[hx - 0.3 * bw, hy - 0.55 * bw, hx + 0.3 * bw, hy - 0.35 * bw]], np.float32)
            segs = np.concatenate([segs, box])
            radii = np.concatenate([radii, np.array([0.3 * bw], np.float32)])
            colors = np.concatenate([colors, p.carry[None]])
        # the shadow on the floor is part of the sprite: one blend per figure and frame
        shadow = np.array([[-0.11 * h, 0.0, 0.11 * h, 0.0]], np.float32)
        segs = np.concatenate([shadow, segs])
        radii = np.concatenate([np.array([0.04 * h], np.float32), radii])
        colors = np.concatenate([np.zeros((1, 3), np.float32), colors])
        alphas = np.ones(len(segs), np.float32)
        alphas[0] = 0.3
        sp = draw.capsule_sprite(segs, radii, colors, alphas)
        if len(p.sprites) > 96:
            p.sprites.clear()
        p.sprites[key] = sp
    return sp


def draw_person(img: np.ndarray, p: Person, h: float) -> None:
    """Shadow, motion-blur ghost (if it moved fast), then the figure."""
    ox, oy, col, alpha = _sprite(p, h)
    x0, y0 = int(round(p.x)) + ox, int(round(p.y)) + oy
    if p.prev_sprite is not None:
        px0, py0, pcol, palpha = p.prev_sprite
        moved = abs(px0 - x0) + abs(py0 - y0)
        if moved > 0.05 * h or (p.mode == "fight" and pcol is not col):
            draw.blit(img, px0, py0, pcol, palpha, alpha=min(0.45, 0.25 + moved / h))
    draw.blit(img, x0, y0, col, alpha)
    p.prev_sprite = (x0, y0, col, alpha)
