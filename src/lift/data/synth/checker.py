"""Read a test caption back into its meaning and decide whether it is true of a scene graph.

The test-caption grammar is small and closed:

    caption  := np_list | np RELATION np | count
    np_list  := np | np ("," np)* "and" np
    np       := ("a" | "an") [size] [pattern] [colour] shape
    count    := NUMBER [size] [pattern] [colour] ("shape" | "shapes" | plural shape)
    RELATION := "to the left of" | "to the right of" | "above" | "below"
    NUMBER   := "one" | "two" | "three"

A caption is true when its noun phrases can be matched to *distinct* objects of the scene that
have every stated attribute, and the stated relation holds between the matched objects. A count
("two shapes", "one red circle") is true when exactly that many objects have every stated attribute.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from lift.data.synth.captions import COUNT_WORDS, PLURAL, REL_PHRASE
from lift.data.synth.world import ATTRIBUTES, Scene, relation_holds

_WORD_ATTR = {value: attr for attr, values in ATTRIBUTES.items() for value in values}
_RELATION_WORDS = {tuple(phrase.split()): rel for rel, phrase in REL_PHRASE.items()}
_ATTR_RANK = {"size": 0, "pattern": 1, "colour": 2, "shape": 3}


_NUMBERS = {word: n for n, word in COUNT_WORDS.items()}
_SINGULAR = {plural: shape for shape, plural in PLURAL.items()}


@dataclass
class Meaning:
    nps: list[dict[str, str]]
    relations: list[tuple[int, str, int]] = field(default_factory=list)
    count: int | None = None  # a count caption: exactly this many objects match nps[0]


def _parse_np(words: list[str], caption: str) -> dict[str, str]:
    if len(words) < 2 or words[0] not in ("a", "an"):
        raise ValueError(f"{caption!r}: noun phrase {' '.join(words)!r} must start with 'a'/'an'")
    if (words[0] == "an") != (words[1][0] in "aeiou"):
        raise ValueError(f"{caption!r}: wrong article in {' '.join(words)!r}")
    spec: dict[str, str] = {}
    last = -1
    for word in words[1:]:
        attr = _WORD_ATTR.get(word)
        if attr is None or attr in spec or _ATTR_RANK[attr] <= last:
            raise ValueError(f"{caption!r}: unexpected word {word!r} in {' '.join(words)!r}")
        spec[attr], last = word, _ATTR_RANK[attr]
    if "shape" not in spec:
        raise ValueError(f"{caption!r}: noun phrase {' '.join(words)!r} has no shape")
    return spec


def _parse_count(words: list[str], caption: str) -> Meaning:
    n = _NUMBERS[words[0]]
    nouns = {"shape": None} if n == 1 else {"shapes": None, **_SINGULAR}  # noun -> the shape it names
    if n == 1:
        nouns.update({shape: shape for shape in ATTRIBUTES["shape"]})
    if len(words) < 2 or words[-1] not in nouns:
        raise ValueError(f"{caption!r}: a count must end in a shape noun agreeing with {words[0]!r}")
    spec: dict[str, str] = {}
    last = -1
    for word in words[1:-1]:
        attr = _WORD_ATTR.get(word)
        if attr is None or attr == "shape" or attr in spec or _ATTR_RANK[attr] <= last:
            raise ValueError(f"{caption!r}: unexpected word {word!r}")
        spec[attr], last = word, _ATTR_RANK[attr]
    if nouns[words[-1]]:
        spec["shape"] = nouns[words[-1]]
    return Meaning([spec], count=n)


def parse_caption(caption: str) -> Meaning:
    """The meaning of a test caption; ValueError if it is outside the grammar."""
    words = caption.replace(",", " , ").split()
    if words and words[0] in _NUMBERS:
        return _parse_count(words, caption)
    for length in (4, 1):  # "to the left of" before "above"
        for k in range(len(words) - length + 1):
            rel = _RELATION_WORDS.get(tuple(words[k : k + length]))
            if rel:
                left, right = _parse_np(words[:k], caption), _parse_np(words[k + length :], caption)
                return Meaning([left, right], [(0, rel, 1)])
    groups: list[list[str]] = [[]]
    separators: list[str] = []
    for word in words:
        if word in (",", "and"):
            separators.append(word)
            groups.append([])
        else:
            groups[-1].append(word)
    if separators and separators != [","] * (len(separators) - 1) + ["and"]:
        raise ValueError(f"{caption!r}: a list must read 'A, B and C'")
    return Meaning([_parse_np(g, caption) for g in groups])


def meaning_holds(meaning: Meaning, scene: Scene, lenient: bool = False) -> bool:
    """Whether some injective match of noun phrases to objects satisfies every attribute and relation."""
    objs = scene.objects
    if meaning.count is not None:  # no geometry involved: the lenient reading is the same
        (spec,) = meaning.nps
        return sum(all(getattr(o, a) == v for a, v in spec.items()) for o in objs) == meaning.count
    for match in itertools.permutations(range(len(objs)), len(meaning.nps)):
        if all(
            getattr(objs[m], attr) == value
            for np_, m in zip(meaning.nps, match)
            for attr, value in np_.items()
        ) and all(
            relation_holds(objs[match[i]], objs[match[j]], rel, lenient) for i, rel, j in meaning.relations
        ):
            return True
    return False


def caption_holds(caption: str, scene: Scene, lenient: bool = False) -> bool:
    """Parse `caption` and evaluate it on `scene` (strict margins unless `lenient`)."""
    return meaning_holds(parse_caption(caption), scene, lenient)


def is_valid_pair(positive: str, negative: str, scene: Scene) -> bool:
    """A usable test item: the positive is strictly true and the negative false even read leniently."""
    return (
        positive != negative and caption_holds(positive, scene) and not caption_holds(negative, scene, True)
    )
