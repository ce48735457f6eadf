"""Scenes of the micro world: objects with shape, colour, size and position, rendered to RGB.

Objects are painted in order (later ones on top); each object's mask is its *visible* pixels,
and scenes where an object is mostly hidden are rejected, so every mask shows its object.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross")
COLOURS = {  # saturated object colours
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 230), "yellow": (240, 220, 40),
    "purple": (150, 60, 200), "orange": (250, 140, 20), "white": (245, 245, 245),
}
BACKGROUNDS = {  # muted backgrounds, distinct from every object colour
    "grey": (110, 110, 110), "black": (20, 20, 20), "dark blue": (20, 30, 70),
    "dark green": (25, 60, 35), "brown": (90, 60, 40), "dark red": (70, 20, 25),
}
SIZES = {"small": 0.09, "medium": 0.14, "large": 0.2}  # radius as a fraction of the image side
MIN_VISIBLE = 0.6  # fraction of an object's own area that must stay visible


@dataclass
class SceneObject:
    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    radius: float
    mask: np.ndarray | None = None  # visible pixels, HxW bool

    @property
    def description(self) -> str:
        return f"{self.colour} {self.shape}"


_GRIDS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def shape_mask(shape: str, cx: float, cy: float, r: float, side: int) -> np.ndarray:
    if side not in _GRIDS:
        _GRIDS[side] = tuple(np.mgrid[0:side, 0:side].astype(np.float32) + 0.5)  # type: ignore[assignment]
    y, x = _GRIDS[side]
    dx, dy = x - cx, y - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.1 * r
    if shape == "triangle":
        return (dy >= -r) & (dy <= 0.8 * r) & (np.abs(dx) <= (dy + r) / 1.8)
    if shape == "cross":
        arm = r / 2.8
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    if shape == "star":
        theta = np.arctan2(dy, dx) + np.pi / 2
        bound = r * (0.62 + 0.38 * np.cos(5 * theta))
        return dx * dx + dy * dy <= bound * bound
    raise ValueError(f"unknown shape {shape!r}")


def place_objects(rng: np.random.Generator, side: int, count: int, tries: int = 60) -> list[SceneObject] | None:
    """Random objects, painted in order; None if no placement keeps every object visible."""
    objects: list[SceneObject] = []
    occupancy = np.full((side, side), -1, dtype=np.int16)  # index of the top object per pixel
    areas: list[int] = []
    for _ in range(count):
        for _attempt in range(tries):
            shape, size = str(rng.choice(SHAPES)), str(rng.choice(list(SIZES)))
            radius = SIZES[size] * side * float(rng.uniform(0.9, 1.1))
            cx, cy = (float(v) for v in rng.uniform(radius, side - radius, size=2))
            full = shape_mask(shape, cx, cy, radius, side)
            new_occ = occupancy.copy()
            new_occ[full] = len(objects)
            if all((new_occ == j).sum() >= MIN_VISIBLE * areas[j] for j in range(len(objects))):
                break
        else:
            return None
        occupancy = new_occ
        areas.append(int(full.sum()))
        objects.append(SceneObject(shape, str(rng.choice(list(COLOURS))), size, cx, cy, radius))
    for j, obj in enumerate(objects):
        obj.mask = occupancy == j
    return objects


def render(objects: list[SceneObject], background: str, rng: np.random.Generator, side: int) -> np.ndarray:
    """HxWx3 uint8 image: a background with a gradient and mild noise, objects painted by mask."""
    base = np.array(BACKGROUNDS[background], dtype=np.float32)
    ramp = np.linspace(-18, 18, side, dtype=np.float32)
    grad = ramp[:, None] if rng.random() < 0.5 else ramp[None, :]
    img = base[None, None, :] + grad[..., None] + rng.normal(0, 4, size=(side, side, 3)).astype(np.float32)
    for obj in objects:
        colour = np.array(COLOURS[obj.colour], dtype=np.float32) * float(rng.uniform(0.9, 1.0))
        img[obj.mask] = colour
    return np.clip(img, 0, 255).astype(np.uint8)
