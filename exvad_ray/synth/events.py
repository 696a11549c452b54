"""Injected events: the four anomaly classes and the benign variations every video may contain.

Each anomaly has its own spatio-temporal signature, with position, size, colour and timing drawn
per video, so that no single pixel statistic separates the classes:
- Fire: a growing, flickering flame region (red/orange/yellow, palette varies) with rising smoke
  (light or dark), a warm glow on the floor and a global brightness flicker.
- Fighting: two or three figures that walk up to each other and then jitter erratically, lunging,
  with arms thrown up and poses changing every frame or two (their motion blurs).
- FallingObject: one to three objects drop from the shelf line, accelerate, tumble, smear, then
  break into bouncing fragments (or bounce whole) with a dust puff.
- CrowdRush: ten to two dozen figures run fast in one direction in a crowd, passers-by join them.
Benign variation (normal and anomalous videos alike): people stop, chat in pairs with gestures,
walk in groups, carry boxes, jog alone; lights are switched up or down; exposure and tint vary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from exvad_ray.synth import draw
from exvad_ray.synth.actors import Person, fight_pose
from exvad_ray.synth.scene import Scene

DrawItem = tuple[float, Callable[[np.ndarray], None]]


class Simulation(Protocol):
    """What an event sees of the simulation that runs it (`sim.Simulation`): the events are defined
    before the simulation that schedules them, so they name only this much of it."""

    scene: Scene
    fps: float
    people: list[Person]
    suppress_spawn_until: int
    flicker: float
    warm: float

    def new_person(self, x: float, y: float, direction: int, speed: float, tag: str = "") -> Person: ...


@dataclass
class Event:
    """An event active in frames [start, end) (benign events may act outside their window)."""

    start: int
    end: int

    def update(self, sim: Simulation, t: int) -> None:  # noqa: B027 - optional hook
        """Advance state; may spawn or steer people."""

    def items(self, sim: Simulation, t: int) -> list[DrawItem]:
        """Depth-sorted drawables (depth = y of the ground contact)."""
        return []

    def overlay(self, sim: Simulation, img: np.ndarray, t: int) -> None:  # noqa: B027
        """Drawn over everything (smoke, dust)."""


def _fade(t: int, start: int, end: int, fade_in: int, fade_out: int) -> float:
    if t < start or t >= end:
        return 0.0
    a = min(1.0, (t - start + 1) / max(fade_in, 1))
    b = min(1.0, (end - t) / max(fade_out, 1))
    return a * b


# ---------------------------------------------------------------------------------------------- Fire

PALETTES = [  # outer, middle, core
    ((200, 50, 10), (250, 140, 20), (255, 235, 150)),
    ((170, 25, 15), (235, 85, 20), (255, 200, 90)),
    ((220, 100, 10), (255, 190, 40), (255, 250, 210)),
    ((190, 60, 30), (245, 120, 50), (250, 220, 180)),
]


@dataclass
class Fire(Event):
    rng: np.random.Generator = field(default=None, repr=False)  # type: ignore[assignment]
    x: float = 0.0
    y: float = 0.0
    radius: float = 10.0
    tongues: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    palette: tuple = PALETTES[0]
    smoke_grey: float = 80.0
    wind: float = 0.0
    smoke: list[list[float]] = field(default_factory=list)
    level: float = 0.0

    @classmethod
    def create(cls, sim: Simulation, start: int, end: int, rng: np.random.Generator) -> Fire:
        sc = sim.scene
        y = sc.floor_y(rng.uniform(0.05, 0.75))
        n = int(rng.integers(6, 12))
        tongues = np.stack([rng.uniform(-0.85, 0.85, n), rng.uniform(0.9, 2.2, n), rng.uniform(0.22, 0.45, n),
                            rng.uniform(0, 2 * math.pi, n)], axis=1)
        return cls(start=start, end=end, rng=rng, x=rng.uniform(0.25, 0.75) * sc.width, y=y,
                   radius=sc.person_height(y) * rng.uniform(0.3, 0.8), tongues=tongues,
                   palette=PALETTES[int(rng.integers(0, len(PALETTES)))],
                   smoke_grey=float(rng.choice([rng.uniform(35, 80), rng.uniform(120, 190)])),
                   wind=float(rng.uniform(-0.6, 0.6)))

    def update(self, sim: Simulation, t: int) -> None:
        fps = sim.fps
        grow = max(int((self.end - self.start) * self.rng.uniform(0.25, 0.5)), int(0.8 * fps)) if t == self.start else 0
        if t == self.start:
            self._grow = grow
        if not (self.start <= t < self.end):
            self.level = 0.0
            if t >= self.end:
                self.smoke.clear()
            return
        self.level = _fade(t, self.start, self.end, self._grow, int(0.4 * fps))
        r = self.radius * (0.15 + 0.85 * self.level)
        sim.flicker += 0.06 * self.level * self.rng.uniform(-1, 1)
        sim.warm += 0.5 * self.level * self.radius / sim.scene.height
        # smoke puffs rise from the flame tips, grow and thin out
        if self.rng.random() < 8.0 * self.level / fps:
            self.smoke.append([self.x + self.rng.uniform(-0.5, 0.5) * r, self.y - 1.6 * r, 0.5 * r, 0.0,
                               self.rng.uniform(1.5, 3.0) * fps])
        fade_out = min(1.0, (self.end - t) / max(0.4 * fps, 1))
        for puff in self.smoke:
            puff[0] += (self.wind * self.radius + self.rng.normal(0, 0.2 * self.radius)) / fps
            puff[1] -= 1.4 * self.radius / fps
            puff[2] += 0.9 * self.radius / fps
            puff[3] += 1
        self.smoke = [p for p in self.smoke if p[3] < p[4] and p[1] + p[2] > 0]
        self._smoke_alpha = fade_out

    def items(self, sim: Simulation, t: int) -> list[DrawItem]:
        if self.level <= 0.0:
            return []
        return [(self.y, self._draw_flames)]

    def _draw_flames(self, img: np.ndarray) -> None:
        rng, lv = self.rng, self.level
        r = self.radius * (0.15 + 0.85 * lv)
        outer, mid, core = (np.array(c, np.float32) for c in self.palette)
        glow = np.array([70, 35, 5], np.float32) * lv * rng.uniform(0.7, 1.2)
        draw.ellipse(img, self.x, self.y - 0.5 * r, 2.4 * r, 1.4 * r, glow, soft=1.0, additive=True)
        draw.ellipse(img, self.x, self.y, 1.1 * r, 0.25 * r, (25, 20, 15), alpha=0.7 * lv, soft=0.6)  # scorch
        for ox, hh, ww, ph in self.tongues:
            flick = rng.uniform(0.65, 1.3)
            hgt = r * hh * flick
            cx = self.x + ox * r + 0.15 * r * math.sin(ph + rng.uniform(-1, 1))
            w = r * ww * rng.uniform(0.85, 1.15)
            draw.ellipse(img, cx, self.y - 0.45 * hgt, w, 0.5 * hgt, outer, alpha=0.9, soft=0.35)
        for ox, hh, ww, _ in self.tongues:
            hgt = r * hh * rng.uniform(0.6, 1.1)
            cx = self.x + ox * r * 0.8
            draw.ellipse(img, cx, self.y - 0.3 * hgt, 0.6 * r * ww, 0.32 * hgt, mid, alpha=0.9, soft=0.4)
        for ox, hh, ww, _ in self.tongues[::2]:
            hgt = r * hh * rng.uniform(0.5, 0.9)
            draw.ellipse(img, self.x + ox * r * 0.6, self.y - 0.18 * hgt, 0.35 * r * ww, 0.17 * hgt, core,
                         alpha=0.95, soft=0.5)
        for _ in range(int(3 * lv)):  # embers
            ex, ey = self.x + rng.uniform(-1, 1) * r, self.y - rng.uniform(1.0, 3.0) * r
            draw.ellipse(img, ex, ey, 1.2, 1.2, core, alpha=0.9)

    def overlay(self, sim: Simulation, img: np.ndarray, t: int) -> None:
        if not self.smoke:
            return
        g = self.smoke_grey
        for x, y, rad, age, life in self.smoke:
            a = 0.55 * (1.0 - age / life) * getattr(self, "_smoke_alpha", 1.0)
            draw.ellipse(img, x, y, rad, rad * 0.8, (g, g, g * 1.02), alpha=a, soft=0.9)


# ---------------------------------------------------------------------------------- Fighting, Chat


@dataclass
class Meeting(Event):
    """Two or three people walk to a spot and then either fight (anomaly) or chat (benign)."""

    rng: np.random.Generator = field(default=None, repr=False)  # type: ignore[assignment]
    fight: bool = True
    x: float = 0.0
    y: float = 0.0
    n: int = 2
    approach: int = 0
    people: list[Person] = field(default_factory=list)
    sway: tuple[float, float, float] = (0.7, 0.0, 0.2)

    @classmethod
    def create(cls, sim: Simulation, start: int, end: int, rng: np.random.Generator, fight: bool) -> Meeting:
        sc = sim.scene
        n = 3 if fight and rng.random() < 0.3 else 2
        return cls(start=start, end=end, rng=rng, fight=fight, x=rng.uniform(0.3, 0.7) * sc.width,
                   y=sc.floor_y(rng.uniform(0.3, 0.95)), n=n, approach=int(rng.uniform(1.5, 3.0) * sim.fps),
                   sway=(rng.uniform(0.4, 1.2), rng.uniform(0, 2 * math.pi), rng.uniform(0.12, 0.3)))

    def update(self, sim: Simulation, t: int) -> None:
        rng, fps = self.rng, sim.fps
        h = sim.scene.person_height(self.y)
        if t == max(0, self.start - self.approach):
            for i in range(self.n):
                side = -1 if i % 2 == 0 else 1
                dy = 0.0 if i < 2 else rng.uniform(0.04, 0.08) * sim.scene.height
                tx = self.x + side * (0.22 if self.fight else 0.3) * h
                walk = 0.75 * h * (self.start - t) / fps
                p = sim.new_person(x=tx + side * walk, y=self.y + dy, direction=-side, speed=0.75, tag="meeting")
                p.mode, p.target_x = "approach", tx
                p.fight_side = side
                p.fight_base = (tx, self.y + dy)
                p.lunge = (rng.uniform(1.2, 3.5), rng.uniform(0, 2 * math.pi))
                self.people.append(p)
        if self.start <= t < self.end:
            for p in self.people:
                p.direction = -p.fight_side
                if self.fight:
                    p.mode = "fight"
                    if rng.random() < 0.6:
                        p.pose = fight_pose(rng)
                    ts = t / fps
                    f, ph = p.lunge
                    sf, sph, samp = self.sway
                    common = samp * h * math.sin(2 * math.pi * sf * ts + sph)
                    lunge = 0.14 * h * math.sin(2 * math.pi * f * ts + ph)
                    p.x = p.fight_base[0] + common + p.fight_side * lunge + rng.normal(0, 0.06 * h)
                    p.y = p.fight_base[1] + rng.normal(0, 0.015 * h)
                else:
                    p.mode, p.until = "chat", self.end
        elif t == self.end:
            for p in self.people:
                if p.mode != "gone":
                    p.mode, p.direction, p.speed = "walk", p.fight_side, rng.uniform(0.6, 0.9)
                    p.x, p.y = p.fight_base
        if self.fight and t == self.start:  # bystanders stop and watch
            for q in sim.people:
                if q.tag == "" and q.mode == "walk" and abs(q.x - self.x) < 0.35 * sim.scene.width and rng.random() < 0.5:
                    q.mode, q.until = "stand", self.end + int(fps)
                    q.direction = 1 if self.x > q.x else -1


# ------------------------------------------------------------------------------------- Crowd rush


@dataclass
class CrowdRush(Event):
    rng: np.random.Generator = field(default=None, repr=False)  # type: ignore[assignment]
    direction: int = 1
    lane: tuple[float, float] = (0.0, 1.0)
    spawns: list[int] = field(default_factory=list)

    @classmethod
    def create(cls, sim: Simulation, start: int, end: int, rng: np.random.Generator) -> CrowdRush:
        n = int(rng.integers(10, 25))
        last = max(start + 1, end - int(1.0 * sim.fps))
        burst = int(rng.integers(3, 7))
        spawns = sorted([start] * burst + list(rng.integers(start, last, size=n - burst)))
        c = float(rng.uniform(0.2, 0.8))
        w = float(rng.uniform(0.25, 0.45))
        return cls(start=start, end=end, rng=rng, direction=int(rng.choice([-1, 1])),
                   lane=(max(0.0, c - w), min(1.0, c + w)), spawns=[int(s) for s in spawns])

    def _speed_to_exit(self, sim: Simulation, x: float, h: float, t: int) -> float:
        """Speed (heights/s) so that a runner at ``x`` leaves the view before the event ends."""
        W = sim.scene.width
        dist = (W + 0.6 * h - x) if self.direction > 0 else (x + 0.6 * h)
        return dist / h / max((self.end - t - 2) / sim.fps, 1e-3)

    def update(self, sim: Simulation, t: int) -> None:
        if t == self.start:
            sim.suppress_spawn_until = self.end
            for q in sim.people:  # passers-by join the rush
                if q.mode in ("walk", "stand", "chat") and q.tag == "":
                    h = sim.scene.person_height(q.y) * q.scale
                    q.mode, q.direction, q.exit_by = "run", self.direction, self.end - 1
                    q.speed = max(self.rng.uniform(2.2, 3.5), self._speed_to_exit(sim, q.x, h, t) * 1.05)
        if self.start <= t < self.end:
            k = 0
            for s in self.spawns:
                if s == t:
                    f = self.rng.uniform(*self.lane)
                    y = sim.scene.floor_y(f)
                    h = sim.scene.person_height(y)
                    x = -0.4 * h - k * 0.35 * h if self.direction > 0 else sim.scene.width + 0.4 * h + k * 0.35 * h
                    k += 1
                    speed = max(self.rng.uniform(2.4, 4.0), self._speed_to_exit(sim, x, h, t) * 1.05)
                    if speed > 9.0:
                        continue
                    p = sim.new_person(x=x, y=y, direction=self.direction, speed=speed, tag="rush")
                    p.mode, p.exit_by = "run", self.end - 1
                    p.phase = self.rng.uniform(0, 2 * math.pi)


# ---------------------------------------------------------------------------------- Falling object


@dataclass
class Falling:
    """One object on the shelf that drops at ``t0``."""

    x: float
    y0: float
    w: float
    h: float
    color: np.ndarray
    t0: int
    fall: float  # seconds
    land: float  # y of the floor contact
    omega: float
    breaks: bool
    fragments: np.ndarray | None = None  # (n, 7): x, y, vx, vy, size, angle, omega
    body: list[float] | None = None  # x, y, vy, angle, resting
    history: list[tuple[float, float, float]] = field(default_factory=list)
    impact: int | None = None


@dataclass
class FallingObject(Event):
    rng: np.random.Generator = field(default=None, repr=False)  # type: ignore[assignment]
    objects: list[Falling] = field(default_factory=list)

    @classmethod
    def create(cls, sim: Simulation, start: int, end: int, rng: np.random.Generator) -> FallingObject:
        sc, fps = sim.scene, sim.fps
        length = end - start
        k = int(np.clip(round(length / fps / 2.2), 1, 3))
        objs = []
        for i in range(k):
            w = rng.uniform(0.09, 0.17) * sc.width
            hh = w * rng.uniform(0.6, 1.4)
            t0 = start + int(i * length / k + (rng.uniform(0, 0.3) * fps if i else 0))
            objs.append(Falling(
                x=rng.uniform(0.25, 0.75) * sc.width, y0=sc.shelf_y - hh / 2, w=w, h=hh,
                color=rng.uniform(30, 230, 3).astype(np.float32), t0=t0, fall=rng.uniform(0.45, 0.85),
                land=sc.floor_y(rng.uniform(0.2, 0.95)), omega=rng.uniform(2, 8) * rng.choice([-1, 1]),
                breaks=bool(rng.random() < 0.65)))
        return cls(start=start, end=end, rng=rng, objects=objs)

    def update(self, sim: Simulation, t: int) -> None:
        fps, rng = sim.fps, self.rng
        for o in self.objects:
            if t < o.t0 or t >= self.end:
                continue
            dt = (t - o.t0) / fps
            if o.impact is None:
                g = 2.0 * (o.land - o.h / 2 - o.y0) / o.fall**2
                y = o.y0 + 0.5 * g * dt * dt
                ang = o.omega * dt
                if y + o.h / 2 >= o.land:
                    o.impact = t
                    v = g * o.fall
                    if o.breaks:
                        n = int(rng.integers(5, 11))
                        o.fragments = np.stack([
                            o.x + rng.uniform(-0.3, 0.3, n) * o.w, np.full(n, o.land - 2.0),
                            rng.uniform(-1, 1, n) * o.w * 4.0, -rng.uniform(0.1, 0.35, n) * v,
                            rng.uniform(0.15, 0.4, n) * o.w, rng.uniform(0, math.pi, n), rng.uniform(-12, 12, n),
                        ], axis=1).astype(np.float64)
                    else:
                        o.body = [o.x, o.land - o.h / 2, -0.4 * v, ang, 0.0]
                    o._g = g  # type: ignore[attr-defined]
                else:
                    o.history.append((o.x, y, ang))
            else:
                g = o._g  # type: ignore[attr-defined]
                if o.fragments is not None:
                    f = o.fragments
                    f[:, 0] += f[:, 2] / fps
                    f[:, 1] += f[:, 3] / fps
                    f[:, 3] += g / fps
                    f[:, 5] += f[:, 6] / fps
                    hit = f[:, 1] > o.land
                    f[hit, 1] = o.land
                    f[hit, 3] *= -0.35
                    f[hit, 2] *= 0.7
                    f[hit, 6] *= 0.6
                if o.body is not None:
                    b = o.body
                    b[1] += b[2] / fps
                    b[2] += g / fps
                    if b[1] + o.h / 2 >= o.land:
                        b[1] = o.land - o.h / 2
                        b[2] *= -0.4
                        b[3] = round(b[3] / (math.pi / 2)) * (math.pi / 2) if abs(b[2]) < 0.05 * g else b[3]
                    if abs(b[2]) > 0.02 * g:
                        b[3] += o.omega * 0.3 / fps

    def items(self, sim: Simulation, t: int) -> list[DrawItem]:
        out: list[DrawItem] = []
        for o in self.objects:
            if t >= self.end:
                continue
            out.append((o.land if o.impact is not None else 0.0, lambda img, o=o: self._draw(sim, img, o, t)))
        return out

    def _draw(self, sim: Simulation, img: np.ndarray, o: Falling, t: int) -> None:
        fps = sim.fps
        if t < o.t0:
            draw.rect(img, o.x - o.w / 2, o.y0 - o.h / 2, o.x + o.w / 2, o.y0 + o.h / 2, o.color * 0.6)
            draw.rect(img, o.x - o.w / 2 + 2, o.y0 - o.h / 2 + 2, o.x + o.w / 2 - 2, o.y0 + o.h / 2 - 2, o.color)
            return
        fade = min(1.0, (self.end - t) / max(0.3 * fps, 1))
        if o.impact is None:
            for age, (x, y, a) in enumerate(reversed(o.history[-4:])):
                alpha = 1.0 if age == 0 else 0.5 / age
                draw.rotated_rect(img, x, y, o.w, o.h * (1.0 + 0.15 * (age == 0) * len(o.history) / fps), a,
                                  o.color, alpha=alpha)
            return
        since = (t - o.impact) / fps
        if since < 2.0:  # dust puff
            dust = o.dust if hasattr(o, "dust") else np.array([190, 180, 165], np.float32)
            rad = o.w * (0.7 + 1.5 * since)
            draw.ellipse(img, o.x, o.land - 0.3 * rad, rad, 0.55 * rad, dust, alpha=0.7 * (1 - since / 2.0) * fade,
                         soft=0.7)
        if o.fragments is not None:
            for x, y, _, _, size, ang, _ in o.fragments:
                draw.rotated_rect(img, x, y - size / 2, size, size * 0.7, ang, o.color * 0.9, alpha=fade)
        if o.body is not None:
            x, y, _, ang, _ = o.body
            draw.rotated_rect(img, x, y, o.w, o.h, ang, o.color * 0.6, alpha=fade)
            draw.rotated_rect(img, x, y, o.w - 3, o.h - 3, ang, o.color, alpha=fade)


# --------------------------------------------------------------------------------------- benign


@dataclass
class LightChange(Event):
    """Lights switched or dimmed: the exposure ramps to a new level in [start, end)."""

    factor: float = 1.0

    def gain(self, t: int) -> float:
        if t < self.start:
            return 1.0
        a = min(1.0, (t - self.start) / max(self.end - self.start, 1))
        return 1.0 + a * (self.factor - 1.0)


@dataclass
class GroupWalk(Event):
    """Three or four people walking together at normal speed."""

    rng: np.random.Generator = field(default=None, repr=False)  # type: ignore[assignment]

    def update(self, sim: Simulation, t: int) -> None:
        if t != self.start:
            return
        rng = self.rng
        d = int(rng.choice([-1, 1]))
        f = rng.uniform(0.1, 0.8)
        speed = rng.uniform(0.55, 0.85)
        for i in range(int(rng.integers(3, 5))):
            y = sim.scene.floor_y(min(1.0, f + 0.06 * i))
            h = sim.scene.person_height(y)
            x = (-0.4 * h - rng.uniform(0, 0.8) * h) if d > 0 else sim.scene.width + 0.4 * h + rng.uniform(0, 0.8) * h
            sim.new_person(x=x, y=y, direction=d, speed=speed * rng.uniform(0.95, 1.05), tag="group")


@dataclass
class Jogger(Event):
    """A single person jogging through (running pose, moderate speed)."""

    rng: np.random.Generator = field(default=None, repr=False)  # type: ignore[assignment]

    def update(self, sim: Simulation, t: int) -> None:
        if t != self.start:
            return
        d = int(self.rng.choice([-1, 1]))
        y = sim.scene.floor_y(self.rng.uniform(0.1, 0.9))
        h = sim.scene.person_height(y)
        p = sim.new_person(x=-0.5 * h if d > 0 else sim.scene.width + 0.5 * h, y=y, direction=d,
                           speed=self.rng.uniform(1.5, 2.2), tag="jogger")
        p.mode = "jog"
