"""The compositional world: vocabularies, scene sampling, and relations derived from geometry.

Coordinates are normalised to [0, 1] (x to the right, y downwards) so a scene graph does not
depend on the image size it is rendered at. Every stated relation holds with a margin, so it is
visibly true in pixels; negatives are checked against the lenient (centre-based) reading, so a
false statement is false however generously it is read.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from lift.errors import LiftError

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "cross")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 235),
    "yellow": (240, 220, 40),
    "purple": (155, 60, 205),
    "orange": (250, 140, 30),
    "white": (245, 245, 245),
    "gray": (150, 150, 150),
}
SIZES = ("small", "large")
PATTERNS = ("solid", "striped", "dotted")
# Mid-dark neutral tones: every object colour (white and gray included) and the near-black
# pattern ink stay visible on each of them.
BACKGROUNDS = {"charcoal": (58, 58, 62), "slate": (52, 62, 78), "brown": (78, 62, 50)}
RELATIONS = ("left of", "right of", "above", "below")
ATTRIBUTES = {"size": SIZES, "pattern": PATTERNS, "colour": tuple(COLOURS), "shape": SHAPES}

RADIUS = {"small": 0.13, "large": 0.2}  # half the bounding-box side: 17 and 26 px at 64 px
MARGIN = 0.05  # a stated relation leaves at least this gap (3 px at 64 px)
BORDER = 0.02  # objects keep this far from the image edge

Pair = tuple[str, str]  # (colour, shape)


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: str
    pattern: str
    cx: float
    cy: float
    bbox: tuple[float, float, float, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Derived once: geometry checks run thousands of times per second.
        object.__setattr__(self, "bbox", _box(self.cx, self.cy, self.size))

    @property
    def pair(self) -> Pair:
        return (self.colour, self.shape)

    def to_dict(self, index: int) -> dict:
        return {
            "id": index,
            "shape": self.shape,
            "colour": self.colour,
            "size": self.size,
            "pattern": self.pattern,
            "center": [self.cx, self.cy],
            "bbox": list(self.bbox),
        }


@dataclass
class Scene:
    background: str
    objects: list[Obj] = field(default_factory=list)

    def relations(self) -> list[tuple[int, str, int]]:
        """Every (subject, relation, object) that holds with the margin, in a fixed order."""
        return _relations(tuple(self.objects))

    def pairs(self) -> set[Pair]:
        return {o.pair for o in self.objects}

    def to_dict(self) -> dict:
        return {
            "background": self.background,
            "objects": [o.to_dict(i) for i, o in enumerate(self.objects)],
            "relations": [{"subject": i, "relation": r, "object": j} for i, r, j in self.relations()],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        objs = [Obj(o["shape"], o["colour"], o["size"], o["pattern"], *o["center"]) for o in data["objects"]]
        return cls(data["background"], objs)


def relation_holds(a: Obj, b: Obj, rel: str, lenient: bool = False) -> bool:
    """Whether `a rel b`: strictly (bounding boxes apart by MARGIN) or leniently (by centres)."""
    if lenient:  # ties count as true: a negative must be false beyond doubt
        return {
            "left of": a.cx <= b.cx,
            "right of": a.cx >= b.cx,
            "above": a.cy <= b.cy,
            "below": a.cy >= b.cy,
        }[rel]
    ax0, ay0, ax1, ay1 = a.bbox
    bx0, by0, bx1, by1 = b.bbox
    if rel == "left of":
        return ax1 + MARGIN <= bx0
    if rel == "right of":
        return bx1 + MARGIN <= ax0
    if rel == "above":
        return ay1 + MARGIN <= by0
    if rel == "below":
        return by1 + MARGIN <= ay0
    raise ValueError(f"unknown relation {rel!r}")


@functools.lru_cache(maxsize=64)
def _relations(objs: tuple[Obj, ...]) -> list[tuple[int, str, int]]:
    # Cached: captions, the scene graph and the negative generators all ask for the same scene's.
    return [
        (i, rel, j)
        for i, j in itertools.permutations(range(len(objs)), 2)
        for rel in RELATIONS
        if relation_holds(objs[i], objs[j], rel)
    ]


def _box(cx: float, cy: float, size: str) -> tuple[float, float, float, float]:
    r = RADIUS[size]
    return (round(cx - r, 4), round(cy - r, 4), round(cx + r, 4), round(cy + r, 4))


def _apart(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Boxes apart by the margin along some axis (the same tests as `relation_holds`), so they
    do not overlap and at least one relation holds between them."""
    return a[2] + MARGIN <= b[0] or b[2] + MARGIN <= a[0] or a[3] + MARGIN <= b[1] or b[3] + MARGIN <= a[1]


def fits(objs: list[Obj]) -> bool:
    """The placement rules of `sample_scene`: inside the border, every pair apart by the margin, pairs
    distinct. For scenes made by editing another (swapped sizes or positions, a new colour)."""
    lo, hi = BORDER - 1e-9, 1 - BORDER + 1e-9  # boxes are rounded to 4 decimals
    inside = all(lo <= v <= hi for o in objs for v in o.bbox)
    apart = all(_apart(a.bbox, b.bbox) for a, b in itertools.combinations(objs, 2))
    return inside and apart and len({o.pair for o in objs}) == len(objs)


def parse_holdout(spec: str | list[str] | None) -> list[Pair]:
    """`"purple star,orange triangle"` -> [("purple", "star"), ("orange", "triangle")], validated."""
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    pairs: list[Pair] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        words = item.split()
        if len(words) != 2 or words[0] not in COLOURS or words[1] not in SHAPES:
            raise LiftError(
                f"--holdout: {item!r} is not 'COLOUR SHAPE' with colour in {list(COLOURS)} "
                f"and shape in {list(SHAPES)}"
            )
        if (words[0], words[1]) not in pairs:
            pairs.append((words[0], words[1]))
    return sorted(pairs)


def sample_scene(
    rng: random.Random,
    n_objects: int,
    *,
    allowed: Callable[[Pair], bool] = lambda pair: True,
    force_pair: Pair | None = None,
) -> Scene:
    """A scene of `n_objects` with distinct (colour, shape) pairs, pairwise separated by MARGIN.

    Distinct pairs make "the red circle" a unique reference in captions. `allowed` filters pairs
    (train excludes held-out ones); `force_pair` puts one given pair into the scene.
    """
    background = rng.choice(tuple(BACKGROUNDS))
    pairs: list[Pair] = [force_pair] if force_pair else []
    while len(pairs) < n_objects:
        pair = (rng.choice(tuple(COLOURS)), rng.choice(SHAPES))
        if pair not in pairs and allowed(pair):
            pairs.append(pair)
    rng.shuffle(pairs)
    sizes = [rng.choice(SIZES) for _ in pairs]
    patterns = [rng.choice(PATTERNS) for _ in pairs]
    while True:
        for _ in range(20):
            objs = _place(rng, pairs, sizes, patterns)
            if objs:
                return Scene(background, objs)
        # Crowded (three large objects): shrink one and try again; all-small always fits.
        large = [i for i, s in enumerate(sizes) if s == "large"]
        sizes[rng.choice(large)] = "small"


def _place(rng: random.Random, pairs: list[Pair], sizes: list[str], patterns: list[str]) -> list[Obj] | None:
    """Place objects one at a time (large first), each with a few tries to clear those placed."""
    placed: dict[int, Obj] = {}
    for k in sorted(range(len(pairs)), key=lambda k: sizes[k] != "large"):
        (colour, shape), size = pairs[k], sizes[k]
        lo, hi = BORDER + RADIUS[size], 1 - BORDER - RADIUS[size]
        for _ in range(25):
            cx, cy = round(rng.uniform(lo, hi), 3), round(rng.uniform(lo, hi), 3)
            box = _box(cx, cy, size)
            if all(_apart(box, o.bbox) for o in placed.values()):
                placed[k] = Obj(shape, colour, size, patterns[k], cx, cy)
                break
        else:
            return None
    return [placed[k] for k in range(len(pairs))]
