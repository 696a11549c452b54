"""Frame-by-frame simulation of one video: ambient people, injected events, lighting and noise.

All randomness comes from one generator seeded by the video's seed, consumed in a fixed order, so
a video's frames depend only on (its spec, the scene) and never on what was generated before it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from exvad_ray.synth import draw
from exvad_ray.synth.actors import Person, draw_person, random_colors, run_pose, stand_pose, walk_pose
from exvad_ray.synth.events import (
    CrowdRush,
    Event,
    FallingObject,
    Fire,
    GroupWalk,
    Jogger,
    LightChange,
    Meeting,
)
from exvad_ray.synth.scene import Scene

ANOMALY_CLASSES: tuple[str, ...] = ("Fire", "Fighting", "FallingObject", "CrowdRush")
NORMAL = "Normal"


@dataclass(frozen=True)
class Segment:
    """An annotated anomalous interval, frames [start_frame, end_frame)."""

    start_frame: int
    end_frame: int
    label: str


def _quant(phase: float, steps: int = 16) -> float:
    """Gait phase on a fixed grid, so that figure sprites repeat and can be cached."""
    q = 2 * math.pi / steps
    return round(phase / q) * q


class Simulation:
    """Renders the frames of one video."""

    def __init__(self, scene: Scene, fps: float, n_frames: int, segments: list[Segment], seed: int,
                 label: str) -> None:
        self.scene, self.fps, self.n_frames = scene, float(fps), int(n_frames)
        self.rng = np.random.default_rng([seed, 31337])
        rng = self.rng
        self.people: list[Person] = []
        self._next_pid = 0
        self.suppress_spawn_until = -1
        self.flicker = 0.0
        self.warm = 0.0
        W, H = scene.width, scene.height
        # per-video background: the camera's scene plus a few static items on the shelf
        self.background = scene.background.copy()
        for _ in range(int(rng.integers(0, 4))):
            w = rng.uniform(0.04, 0.1) * W
            h = w * rng.uniform(0.6, 1.4)
            x = rng.uniform(0.05, 0.95) * W
            draw.rect(self.background, x - w / 2, scene.shelf_y - h, x + w / 2, scene.shelf_y,
                      rng.uniform(30, 230, 3))
        # lighting: exposure, tint, slow drift; sensor noise bank
        self.exposure = float(rng.uniform(0.8, 1.15))
        self.tint = rng.uniform(0.93, 1.07, 3).astype(np.float32)
        self.drift = (float(rng.uniform(0.02, 0.06)), float(rng.uniform(10, 40)), float(rng.uniform(0, 2 * math.pi)))
        self.noise = rng.normal(0, float(rng.uniform(1.2, 2.5)), (3, H, W, 3)).astype(np.float32)
        self.ambient = int(rng.integers(2, 7))
        self.p_stop = float(rng.uniform(0.05, 0.25))
        self.p_carry = float(rng.uniform(0.0, 0.25))
        # benign events, in every class
        dur = self.n_frames
        self.events: list[Event] = []
        self.lights: list[LightChange] = []
        if rng.random() < 0.5:
            s = int(rng.integers(0, max(dur - 1, 1)))
            factor = float(rng.uniform(0.72, 0.88) if rng.random() < 0.5 else rng.uniform(1.12, 1.3))
            self.lights.append(LightChange(start=s, end=s + int(rng.uniform(0.3, 2.0) * fps), factor=factor))
        if rng.random() < 0.5:
            s = int(rng.integers(0, max(dur // 2, 1)))
            e = min(dur, s + int(rng.uniform(3, 8) * fps))
            self.events.append(Meeting.create(self, s, e, np.random.default_rng([seed, 1]), fight=False))
        if rng.random() < 0.4:
            self.events.append(GroupWalk(start=int(rng.integers(0, dur)), end=dur, rng=np.random.default_rng([seed, 2])))
        if rng.random() < 0.3:
            self.events.append(Jogger(start=int(rng.integers(0, dur)), end=dur, rng=np.random.default_rng([seed, 3])))
        # the anomalies
        for i, seg in enumerate(segments):
            er = np.random.default_rng([seed, 100 + i])
            if seg.label == "Fire":
                self.events.append(Fire.create(self, seg.start_frame, seg.end_frame, er))
            elif seg.label == "Fighting":
                self.events.append(Meeting.create(self, seg.start_frame, seg.end_frame, er, fight=True))
            elif seg.label == "FallingObject":
                self.events.append(FallingObject.create(self, seg.start_frame, seg.end_frame, er))
            elif seg.label == "CrowdRush":
                self.events.append(CrowdRush.create(self, seg.start_frame, seg.end_frame, er))
            else:
                raise ValueError(f"unknown anomaly class {seg.label!r}")
        for _ in range(self.ambient):  # people already in view at the start
            self._spawn(initial=True)

    # ------------------------------------------------------------------ people

    def new_person(self, x: float, y: float, direction: int, speed: float, tag: str = "") -> Person:
        p = Person(pid=self._next_pid, x=x, y=y, direction=direction, speed=speed,
                   colors=random_colors(self.rng), scale=float(self.rng.uniform(0.9, 1.1)), tag=tag,
                   phase=float(self.rng.uniform(0, 2 * math.pi)))
        self._next_pid += 1
        self.people.append(p)
        return p

    def _spawn(self, initial: bool = False) -> None:
        sc, rng = self.scene, self.rng
        y = sc.floor_y(rng.uniform(0, 1))
        h = sc.person_height(y)
        d = int(rng.choice([-1, 1]))
        x = rng.uniform(0.05, 0.95) * sc.width if initial else (-0.4 * h if d > 0 else sc.width + 0.4 * h)
        p = self.new_person(x, y, d, float(rng.uniform(0.55, 0.95)))
        if rng.random() < self.p_carry:
            p.carry = rng.uniform(60, 220, 3).astype(np.float32)

    def _update_person(self, p: Person, t: int) -> None:
        sc, fps, rng = self.scene, self.fps, self.rng
        h = sc.person_height(p.y) * p.scale
        if p.mode in ("walk", "run", "jog"):
            p.x += p.direction * p.speed * h / fps
            stride = {"walk": 0.75, "jog": 1.1, "run": 1.6}[p.mode]
            p.phase += 2 * math.pi * p.speed / stride / fps
            if p.mode == "walk":
                p.pose = walk_pose(_quant(p.phase))
                if p.tag == "" and 0.15 * sc.width < p.x < 0.85 * sc.width and rng.random() < self.p_stop / fps:
                    p.mode, p.until = "stand", t + int(rng.uniform(1, 4) * fps)
            else:
                p.pose = run_pose(_quant(p.phase), amp=0.75 if p.mode == "run" else 0.5)
            if p.x < -0.8 * h or p.x > sc.width + 0.8 * h or (p.exit_by is not None and t >= p.exit_by):
                p.mode = "gone"
        elif p.mode == "approach":
            step = 0.8 * h / fps
            dx = p.target_x - p.x
            if abs(dx) <= step:
                p.x, p.mode, p.until = p.target_x, "stand", 1 << 30
                p.direction = -p.fight_side
            else:
                p.direction = 1 if dx > 0 else -1
                p.x += p.direction * step
                p.phase += 2 * math.pi * 0.8 / 0.75 / fps
                p.pose = walk_pose(_quant(p.phase))
        elif p.mode in ("stand", "chat"):
            p.pose = stand_pose(t / fps, gesture=1.0 if p.mode == "chat" else 0.0)
            if t >= p.until:
                p.mode = "walk"
        # "fight" poses and positions are set by the event

    # ------------------------------------------------------------------ frames

    def _gain(self, t: int) -> np.ndarray:
        amp, period, ph = self.drift
        g = self.exposure * (1.0 + amp * math.sin(2 * math.pi * t / self.fps / period + ph))
        for lc in self.lights:
            g *= lc.gain(t)
        g *= 1.0 + self.flicker + self.rng.normal(0, 0.004)
        w = min(self.warm, 0.25)
        return (g * self.tint * np.array([1 + 0.35 * w, 1 + 0.1 * w, 1 - 0.3 * w], np.float32)).astype(np.float32)

    def frames(self) -> Iterator[np.ndarray]:
        """Yield ``n_frames`` RGB uint8 frames (H, W, 3)."""
        sc = self.scene
        for t in range(self.n_frames):
            self.flicker, self.warm = 0.0, 0.0
            for ev in self.events:
                ev.update(self, t)
            if t >= self.suppress_spawn_until:
                n_amb = sum(1 for p in self.people if p.tag == "" and p.mode != "gone")
                if n_amb < self.ambient and self.rng.random() < 0.8 / self.fps:
                    self._spawn()
            for p in self.people:
                self._update_person(p, t)
            self.people = [p for p in self.people if p.mode != "gone"]
            img = self.background.copy()
            items = [(p.y, p) for p in self.people]
            for ev in self.events:
                items.extend(ev.items(self, t))
            items.sort(key=lambda it: it[0])
            for _, it in items:
                if isinstance(it, Person):
                    draw_person(img, it, sc.person_height(it.y) * it.scale)
                else:
                    it(img)
            for ev in self.events:
                ev.overlay(self, img, t)
            img *= self._gain(t)
            img += self.noise[int(self.rng.integers(0, len(self.noise)))]
            np.clip(img, 0, 255, out=img)
            yield img.astype(np.uint8)
