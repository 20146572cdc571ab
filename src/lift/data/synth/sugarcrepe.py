"""SugarCrepe's seven hard-negative kinds, generated from a scene graph and checked against it.

Each generator builds a true caption (a structure of noun-phrase specs and an optional relation)
and edits it the way SugarCrepe does: add an object or attribute, replace an object, attribute or
relation, or swap two objects or two attributes. Only pairs the checker accepts are kept: the
positive true with margins, the negative false even under the lenient reading.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from lift.data.synth.captions import ATTR_ORDER, describe, join_list, np_text, rel_text
from lift.data.synth.checker import is_valid_pair
from lift.data.synth.world import ATTRIBUTES, COLOURS, RELATIONS, SHAPES, Pair, Scene

KINDS = ("add_obj", "add_att", "replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att")
ATTEMPTS = 20  # random tries per (scene, kind) before giving up on that kind for the scene


@dataclass(frozen=True)
class Caption:
    specs: tuple[dict[str, str], ...]
    relation: str | None = None  # between specs[0] and specs[1]

    def text(self) -> str:
        if self.relation:
            return rel_text(np_text(self.specs[0]), self.relation, np_text(self.specs[1]))
        return join_list([np_text(s) for s in self.specs])

    def with_spec(self, i: int, **changes: str) -> Caption:
        specs = list(self.specs)
        specs[i] = {**specs[i], **changes}
        return replace(self, specs=tuple(specs))


def _attrs(rng: random.Random, p: float = 0.35) -> tuple[str, ...]:
    return ("colour",) + tuple(a for a in ("size", "pattern") if rng.random() < p)


def _list_caption(scene: Scene, rng: random.Random, k: int, attrs: Callable = _attrs) -> Caption:
    objs = rng.sample(scene.objects, k)
    return Caption(tuple(describe(o, attrs(rng)) for o in objs))


def _rel_caption(scene: Scene, rng: random.Random, attrs: Callable = _attrs) -> Caption | None:
    rels = scene.relations()
    if not rels:
        return None
    i, rel, j = rng.choice(rels)
    a, b = scene.objects[i], scene.objects[j]
    return Caption((describe(a, attrs(rng)), describe(b, attrs(rng))), rel)


def _any_caption(scene: Scene, rng: random.Random, attrs: Callable = _attrs) -> Caption | None:
    if len(scene.objects) >= 2 and rng.random() < 0.5:
        return _rel_caption(scene, rng, attrs)
    return _list_caption(scene, rng, rng.randint(1, min(2, len(scene.objects))), attrs)


def _other(rng: random.Random, values, current: str) -> str:
    return rng.choice([v for v in values if v != current])


Generator = Callable[[Scene, random.Random], "tuple[Caption, Caption] | None"]
GENERATORS: dict[str, Generator] = {}


def generator(kind: str) -> Callable[[Generator], Generator]:
    def register(fn: Generator) -> Generator:
        GENERATORS[kind] = fn
        return fn

    return register


@generator("add_obj")
def _add_obj(scene: Scene, rng: random.Random):
    pos = _list_caption(scene, rng, rng.randint(1, min(2, len(scene.objects))))
    extra = {a: rng.choice(ATTRIBUTES[a]) for a in _attrs(rng)}
    extra["shape"] = rng.choice(SHAPES)
    specs = list(pos.specs)
    specs.insert(rng.randint(0, len(specs)), extra)
    return pos, Caption(tuple(specs))


@generator("add_att")
def _add_att(scene: Scene, rng: random.Random):
    # Positives name fewer attributes here, so there is one to add.
    pos = _any_caption(scene, rng, lambda r: tuple(a for a in ATTR_ORDER if r.random() < 0.4))
    if pos is None:
        return None
    i = rng.randrange(len(pos.specs))
    missing = [a for a in ATTR_ORDER if a not in pos.specs[i]]
    if not missing:
        return None
    attr = rng.choice(missing)
    return pos, pos.with_spec(i, **{attr: rng.choice(ATTRIBUTES[attr])})


def _replace_one(scene: Scene, rng: random.Random, pick: Callable[[dict[str, str]], list[str]]):
    """Change one attribute (chosen among `pick(spec)`) of one noun phrase to another value."""
    pos = _any_caption(scene, rng)
    if pos is None:
        return None
    i = rng.randrange(len(pos.specs))
    attr = rng.choice(pick(pos.specs[i]))
    return pos, pos.with_spec(i, **{attr: _other(rng, ATTRIBUTES[attr], pos.specs[i][attr])})


@generator("replace_obj")
def _replace_obj(scene: Scene, rng: random.Random):
    return _replace_one(scene, rng, lambda spec: ["shape"])


@generator("replace_att")
def _replace_att(scene: Scene, rng: random.Random):
    return _replace_one(scene, rng, lambda spec: [a for a in ATTR_ORDER if a in spec])


@generator("replace_rel")
def _replace_rel(scene: Scene, rng: random.Random):
    pos = _rel_caption(scene, rng)
    if pos is None:
        return None
    return pos, replace(pos, relation=_other(rng, RELATIONS, pos.relation))


@generator("swap_obj")
def _swap_obj(scene: Scene, rng: random.Random):
    pos = _rel_caption(scene, rng)
    if pos is None:
        return None
    return pos, replace(pos, specs=pos.specs[::-1])


@generator("swap_att")
def _swap_att(scene: Scene, rng: random.Random):
    if len(scene.objects) < 2:
        return None
    pos = _rel_caption(scene, rng) if rng.random() < 0.5 else _list_caption(scene, rng, 2)
    if pos is None:
        return None
    a, b = pos.specs
    shared = [x for x in ATTR_ORDER if x in a and x in b and a[x] != b[x]]
    if not shared:
        return None
    attr = rng.choice(shared)
    return pos, pos.with_spec(0, **{attr: b[attr]}).with_spec(1, **{attr: a[attr]})


def make_item(kind: str, scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    """A checked (positive, negative) caption pair of `kind` for `scene`, or None if none was found."""
    for _ in range(ATTEMPTS):
        made = GENERATORS[kind](scene, rng)
        if made is None:
            continue
        pos, neg = made[0].text(), made[1].text()
        if is_valid_pair(pos, neg, scene):
            return pos, neg
    return None


def mentioned_pairs(caption: str) -> set[Pair]:
    """(colour, shape) pairs a test caption names explicitly (for held-out bookkeeping)."""
    words = caption.replace(",", " ").split()
    return {(w, s) for w, s in zip(words, words[1:]) if w in COLOURS and s in SHAPES}
