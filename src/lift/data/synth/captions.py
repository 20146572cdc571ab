"""Captions in the paper's two regimes: short web-like alt-text and long homogeneous recaptions.

Short captions (DataComp-like) are terse, vary in form and often leave attributes out. Long
captions (Recap-DataComp-like) come from a small, syntactically homogeneous template set and state
every attribute and every relation. Both are true of their scene by construction.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from lift.data.synth.world import Obj, Scene

ATTR_ORDER = ("size", "pattern", "colour")  # adjective order in a noun phrase
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars",
          "hexagon": "hexagons", "cross": "crosses"}  # fmt: skip
REL_PHRASE = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
PATTERN_NOUN = {"solid": "a solid fill", "striped": "stripes", "dotted": "dots"}


def describe(obj: Obj, attrs: tuple[str, ...] = ATTR_ORDER) -> dict[str, str]:
    """The noun-phrase spec of `obj` using `attrs` (shape always)."""
    spec = {a: getattr(obj, a) for a in ATTR_ORDER if a in attrs}
    spec["shape"] = obj.shape
    return spec


def bare(spec: dict[str, str]) -> str:
    """`large red circle` (adjectives in a fixed order, no article)."""
    return " ".join([spec[a] for a in ATTR_ORDER if a in spec] + [spec["shape"]])


def np_text(spec: dict[str, str]) -> str:
    """`a large red circle` / `an orange star`."""
    words = bare(spec)
    return ("an " if words[0] in "aeiou" else "a ") + words


def join_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def rel_text(subject: str, rel: str, obj: str) -> str:
    return f"{subject} {REL_PHRASE[rel]} {obj}"


def _some_attrs(rng: random.Random, p: float) -> tuple[str, ...]:
    return ("colour",) + tuple(a for a in ("size", "pattern") if rng.random() < p)


def _shuffled(rng: random.Random, objs: list[Obj]) -> list[Obj]:
    objs = list(objs)
    rng.shuffle(objs)
    return objs


SHORT_TEMPLATES: list[Callable[[Scene, random.Random], str | None]] = []


def short_template(fn: Callable[[Scene, random.Random], str | None]):
    SHORT_TEMPLATES.append(fn)
    return fn


@short_template
def _bare_list(scene: Scene, rng: random.Random) -> str:  # "red circle and blue square"
    return join_list([bare(describe(o, ("colour",))) for o in _shuffled(rng, scene.objects)])


@short_template
def _article_list(scene: Scene, rng: random.Random) -> str:  # "a small striped red circle and ..."
    return join_list([np_text(describe(o, _some_attrs(rng, 0.5))) for o in _shuffled(rng, scene.objects)])


@short_template
def _photo_of(scene: Scene, rng: random.Random) -> str:  # "photo of a red circle and a blue square"
    lead = rng.choice(("photo of", "picture of", "image of", "illustration of"))
    return f"{lead} " + join_list([np_text(describe(o, _some_attrs(rng, 0.3))) for o in scene.objects])


@short_template
def _count(scene: Scene, rng: random.Random) -> str:  # "2 shapes: red circle, blue square"
    n = len(scene.objects)
    noun = "shape" if n == 1 else "shapes"
    return f"{n} {noun}: " + ", ".join(bare(describe(o, _some_attrs(rng, 0.3))) for o in scene.objects)


@short_template
def _relation(scene: Scene, rng: random.Random) -> str | None:  # "red circle above a blue square"
    rels = scene.relations()
    if not rels:
        return None
    i, rel, j = rng.choice(rels)
    a, b = scene.objects[i], scene.objects[j]
    return rel_text(
        np_text(describe(a, _some_attrs(rng, 0.3))), rel, np_text(describe(b, _some_attrs(rng, 0.3)))
    )


@short_template
def _partial(scene: Scene, rng: random.Random) -> str:  # "striped circle, large blue square"
    parts = []
    for o in _shuffled(rng, scene.objects):
        attrs = tuple(a for a in ATTR_ORDER if rng.random() < 0.5)
        parts.append(bare(describe(o, attrs)))
    return join_list(parts) if rng.random() < 0.5 else ", ".join(parts)


def short_caption(scene: Scene, rng: random.Random) -> str:
    """One web-like caption from a randomly chosen paraphrase template."""
    while True:
        text = rng.choice(SHORT_TEMPLATES)(scene, rng)
        if text:
            return text


def _ref(obj: Obj) -> str:
    return f"the {obj.colour} {obj.shape}"  # unique within a scene (sample_scene guarantees it)


_OBJECT_SENTENCES = (
    lambda o: f"There is {np_text(describe(o))}.",
    lambda o: (
        f"{np_text(describe(o, ('size', 'colour'))).capitalize()} with {PATTERN_NOUN[o.pattern]} is visible."
    ),
    lambda o: f"{_ref(o).capitalize()} is {o.size} and {o.pattern}.",
)


def long_caption(scene: Scene, rng: random.Random) -> str:
    """Several sentences stating the background, every object's attributes and every relation."""
    n = len(scene.objects)
    noun = "shape" if n == 1 else "shapes"
    opener = rng.choice(
        (
            f"The image shows {COUNT_WORDS[n]} {noun} on a {scene.background} background.",
            f"This picture contains {COUNT_WORDS[n]} {noun} on a plain {scene.background} background.",
        )
    )
    sentences = [opener]
    template = rng.choice(_OBJECT_SENTENCES)  # one template per caption keeps it homogeneous
    sentences += [template(o) for o in scene.objects]
    by_pair: dict[tuple[int, int], list[str]] = {}
    for i, rel, j in scene.relations():
        if i < j:
            by_pair.setdefault((i, j), []).append(rel)
    flip = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
    for (i, j), rels in sorted(by_pair.items()):
        a, b = scene.objects[i], scene.objects[j]
        if rng.random() < 0.5:  # state the pair from either side
            a, b, rels = b, a, [flip[r] for r in rels]
        stated = " and ".join(REL_PHRASE[r] for r in rels)
        sentences.append(f"{_ref(a).capitalize()} is {stated} {_ref(b)}.")
    return " ".join(sentences)


def full_sentence(scene: Scene) -> str:
    """Every object with every attribute, left to right: the first caption of a retrieval image."""
    objs = sorted(scene.objects, key=lambda o: (o.cx, o.cy))
    return join_list([np_text(describe(o)) for o in objs])


def retrieval_captions(scene: Scene, rng: random.Random, n: int = 5) -> list[str]:
    """`n` distinct true captions: the full sentence, short paraphrases, and the long caption last."""
    out = [full_sentence(scene)]
    for _ in range(50):
        if len(out) == n - 1:
            break
        text = short_caption(scene, rng)
        if text not in out:
            out.append(text)
    out.append(long_caption(scene, rng))
    return out
