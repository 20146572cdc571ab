"""Pairs of scenes that differ minimally, with a caption true of each and false of the other.

- Winoground-style: one caption structure "A RELATION B"; the second caption has the same words in
  another order, and the second scene is the first with the change that makes it true.
    * tag "Relation" (Winoground counts adjectives among relation words): two noun phrases swap one
      attribute ("a red circle above a blue square" / "a blue circle above a red square"); the
      scene's two objects swap that attribute. secondary_tag: the attribute (colour, size, pattern).
    * tag "Object": the two noun phrases swap places ("a red circle above a blue square" / "a blue
      square above a red circle"); the scene's two objects swap positions.
- MMVP-style: two scenes that differ in one visual pattern, one statement each:
    * Color: one object recoloured ("a red circle" / "a green circle")
    * Position: the scene mirrored along a relation's axis ("a red circle to the left of a blue
      square" / "... to the right of ...")
    * Count: one object removed ("three shapes" / "two shapes")
    * Size: one object made small or large ("a small red circle" / "a large red circle")

Every pair is kept only if the world's checker finds each caption true of its own scene (with
margins) and false of the other even read leniently, and the edited scene obeys the placement rules.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

from lift.data.synth.captions import ATTR_ORDER, COUNT_WORDS, describe, np_text, rel_text
from lift.data.synth.checker import caption_holds
from lift.data.synth.world import COLOURS, SIZES, Scene, fits

ATTEMPTS = 50  # scenes tried per example before giving up on it
FLIP = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
MMVP_PATTERNS = ("Color", "Position", "Count", "Size")  # MMVP-VLM's Type column and image folders

Caption = str
PairResult = tuple[Scene, Caption, Scene, Caption]


def _edited(scene: Scene, changes: dict[int, dict]) -> Scene | None:
    """`scene` with object fields changed ({index: {field: value}}), or None if it breaks the rules."""
    objs = [dataclasses.replace(o, **changes.get(k, {})) for k, o in enumerate(scene.objects)]
    return Scene(scene.background, objs) if fits(objs) else None


def is_minimal_pair(scene0: Scene, caption0: str, scene1: Scene, caption1: str) -> bool:
    """Each caption strictly true of its own scene and false of the other even read leniently."""
    return (
        caption0 != caption1
        and caption_holds(caption0, scene0)
        and caption_holds(caption1, scene1)
        and not caption_holds(caption0, scene1, lenient=True)
        and not caption_holds(caption1, scene0, lenient=True)
    )


def _same_words(a: str, b: str) -> bool:
    return sorted(a.split()) == sorted(b.split())


def _attrs(rng: random.Random) -> tuple[str, ...]:
    return ("colour",) + tuple(a for a in ("size", "pattern") if rng.random() < 0.35)


# ---------------------------------------------------------------- Winoground


def _swap_attribute(scene: Scene, rng: random.Random) -> tuple[PairResult, str] | None:
    i, rel, j = rng.choice(scene.relations())
    a, b = scene.objects[i], scene.objects[j]
    attr = rng.choice(ATTR_ORDER)
    if getattr(a, attr) == getattr(b, attr):
        return None
    attrs = (*_attrs(rng), attr)  # both noun phrases name the same attributes: the same words
    edited = _edited(scene, {i: {attr: getattr(b, attr)}, j: {attr: getattr(a, attr)}})
    if edited is None:
        return None
    first = rel_text(np_text(describe(a, attrs)), rel, np_text(describe(b, attrs)))
    second = rel_text(
        np_text(describe(edited.objects[i], attrs)), rel, np_text(describe(edited.objects[j], attrs))
    )
    return (scene, first, edited, second), attr


def _swap_objects(scene: Scene, rng: random.Random) -> tuple[PairResult, str] | None:
    i, rel, j = rng.choice(scene.relations())
    a, b = scene.objects[i], scene.objects[j]
    edited = _edited(scene, {i: {"cx": b.cx, "cy": b.cy}, j: {"cx": a.cx, "cy": a.cy}})
    if edited is None:
        return None
    na, nb = np_text(describe(a, _attrs(rng))), np_text(describe(b, _attrs(rng)))
    return (scene, rel_text(na, rel, nb), edited, rel_text(nb, rel, na)), ""


WINOGROUND_KINDS: dict[str, Callable[[Scene, random.Random], tuple[PairResult, str] | None]] = {
    "Relation": _swap_attribute,
    "Object": _swap_objects,
}


def winoground_example(
    tag: str, rng: random.Random, sample: Callable[[random.Random], Scene]
) -> tuple[PairResult, str] | None:
    """((scene 0, caption 0, scene 1, caption 1), secondary tag) of kind `tag`, or None if none of
    ATTEMPTS scenes drawn by `sample` gave a checked pair."""
    for _ in range(ATTEMPTS):
        made = WINOGROUND_KINDS[tag](sample(rng), rng)
        if made is None:
            continue
        (s0, c0, s1, c1), secondary = made
        if _same_words(c0, c1) and is_minimal_pair(s0, c0, s1, c1):
            return made
    return None


# ---------------------------------------------------------------- MMVP


def _recolour(scene: Scene, rng: random.Random) -> PairResult | None:
    k = rng.randrange(len(scene.objects))
    obj = scene.objects[k]
    edited = _edited(scene, {k: {"colour": rng.choice([c for c in COLOURS if c != obj.colour])}})
    if edited is None:
        return None
    attrs = _attrs(rng)
    return scene, np_text(describe(obj, attrs)), edited, np_text(describe(edited.objects[k], attrs))


def _mirror(scene: Scene, rng: random.Random) -> PairResult | None:
    i, rel, j = rng.choice(scene.relations())
    axis = "cx" if rel in ("left of", "right of") else "cy"
    edited = _edited(scene, {k: {axis: round(1 - getattr(o, axis), 3)} for k, o in enumerate(scene.objects)})
    if edited is None:
        return None
    a, b = np_text(describe(scene.objects[i], _attrs(rng))), np_text(describe(scene.objects[j], _attrs(rng)))
    return scene, rel_text(a, rel, b), edited, rel_text(a, FLIP[rel], b)


def _count_text(n: int) -> str:
    return f"{COUNT_WORDS[n]} {'shape' if n == 1 else 'shapes'}"


def _remove_one(scene: Scene, rng: random.Random) -> PairResult | None:
    k = rng.randrange(len(scene.objects))
    fewer = Scene(scene.background, [o for i, o in enumerate(scene.objects) if i != k])
    return scene, _count_text(len(scene.objects)), fewer, _count_text(len(fewer.objects))


def _resize(scene: Scene, rng: random.Random) -> PairResult | None:
    k = rng.randrange(len(scene.objects))
    obj = scene.objects[k]
    edited = _edited(scene, {k: {"size": next(s for s in SIZES if s != obj.size)}})
    if edited is None:
        return None
    attrs = ("size", "colour") + (("pattern",) if rng.random() < 0.35 else ())
    return scene, np_text(describe(obj, attrs)), edited, np_text(describe(edited.objects[k], attrs))


MMVP_EDITS: dict[str, Callable[[Scene, random.Random], PairResult | None]] = {
    "Color": _recolour,
    "Position": _mirror,
    "Count": _remove_one,
    "Size": _resize,
}


def mmvp_pair(
    pattern: str, rng: random.Random, sample: Callable[[random.Random], Scene]
) -> PairResult | None:
    """(scene 1, statement 1, scene 2, statement 2) differing in `pattern`, in random order, or None."""
    for _ in range(ATTEMPTS):
        made = MMVP_EDITS[pattern](sample(rng), rng)
        if made is not None and is_minimal_pair(*made):
            s0, c0, s1, c1 = made
            return (s1, c1, s0, c0) if rng.random() < 0.5 else made
    return None
