"""The micro world's language: captions, referring expressions and reasoning question/answers.

Every expression is checked against the scene: a referring expression must single out exactly
one object, and a question is only asked when the scene determines a unique answer. Answers
come from the scene, not the question (positions, colours and shapes are all random), so a
question-only guess scores far below reading the scene (tests/test_microworld.py measures it).
"""
from __future__ import annotations

import numpy as np

from ntbench.data.render import SIZES, SceneObject

NUMBERS = ["zero", "one", "two", "three", "four", "five", "six"]
MARGIN = 4.0  # pixels: "left of" and "leftmost" need a clear gap


def plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _unique(objs: list[SceneObject], target: SceneObject, key) -> bool:
    return sum(key(o) == key(target) for o in objs) == 1


def referring_expressions(objs: list[SceneObject], i: int) -> list[str]:
    """All expressions (attributes, extremes, relations) that single out ``objs[i]``."""
    o = objs[i]
    out = []
    if _unique(objs, o, lambda x: x.shape):
        out.append(f"the {o.shape}")
    if _unique(objs, o, lambda x: (x.colour, x.shape)):
        out.append(f"the {o.colour} {o.shape}")
    if _unique(objs, o, lambda x: x.colour):
        out.append(f"the {o.colour} object")
    if _unique(objs, o, lambda x: (x.size, x.shape)):
        out.append(f"the {o.size} {o.shape}")
    if _unique(objs, o, lambda x: (x.size, x.colour, x.shape)):
        out.append(f"the {o.size} {o.colour} {o.shape}")
    same = [x for x in objs if x.shape == o.shape and x is not o]
    if same:
        for word, coord, sign in (("leftmost", "cx", -1), ("rightmost", "cx", 1), ("top", "cy", -1), ("bottom", "cy", 1)):
            if all(sign * (getattr(o, coord) - getattr(x, coord)) > MARGIN for x in same):
                out.append(f"the {word} {o.shape}")
    for b in objs:  # relations to an object that its shape alone identifies
        if b is o or b.shape == o.shape or not _unique(objs, b, lambda x: x.shape):
            continue
        for word, test in (("left of", lambda x: x.cx < b.cx - MARGIN), ("right of", lambda x: x.cx > b.cx + MARGIN),
                           ("above", lambda x: x.cy < b.cy - MARGIN), ("below", lambda x: x.cy > b.cy + MARGIN)):
            matches = [x for x in objs if x.shape == o.shape and test(x)]
            if matches == [o]:
                out.append(f"the {o.shape} {word} the {b.shape}")
    return out


def group_requests(objs: list[SceneObject]) -> list[dict]:
    """Multi-object requests: "segment the two triangles", "segment all red objects"."""
    groups = []
    for shape in sorted({o.shape for o in objs}):
        idx = [i for i, o in enumerate(objs) if o.shape == shape]
        if len(idx) >= 2:
            groups.append({"text": f"segment the {NUMBERS[len(idx)]} {plural(shape)}", "objects": idx})
    for colour in sorted({o.colour for o in objs}):
        idx = [i for i, o in enumerate(objs) if o.colour == colour]
        if len(idx) >= 2:
            groups.append({"text": f"segment all {colour} objects", "objects": idx})
    return groups


def _listing(objs: list[SceneObject], rng: np.random.Generator, with_size: bool) -> str:
    parts = [article(f"{o.size + ' ' if with_size else ''}{o.colour} {o.shape}") for o in objs]
    order = rng.permutation(len(parts))
    parts = [parts[k] for k in order]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def caption(objs: list[SceneObject], background: str, rng: np.random.Generator) -> str:
    n = len(objs)
    noun = "shape" if n == 1 else "shapes"
    templates = [
        lambda: f"{_listing(objs, rng, True)} on a {background} background.",
        lambda: f"{article(background)} picture with {_listing(objs, rng, False)}.",
        lambda: f"there {'is' if n == 1 else 'are'} {NUMBERS[n]} {noun}: {_listing(objs, rng, True)}.",
        lambda: f"{NUMBERS[n]} {noun} on {background}: {_listing(objs, rng, False)}.",
    ]
    text = templates[int(rng.integers(len(templates)))]()
    return text[0].upper() + text[1:]


def t2i_prompt(objs: list[SceneObject], background: str, rng: np.random.Generator) -> str:
    return f"Draw {_listing(objs, rng, True)} on a {background} background."


def _extreme(objs, key, largest: bool, margin: float):
    vals = [key(o) for o in objs]
    best = max(vals) if largest else min(vals)
    others = [v for v in vals if v != best]
    if vals.count(best) != 1 or (others and min(abs(best - v) for v in others) < margin):
        return None
    return vals.index(best)


def questions(objs: list[SceneObject], rng: np.random.Generator) -> list[tuple[str, str, str, list[int]]]:
    """All answerable (template, question, answer, answer_objects) for the scene."""
    out = []
    desc = lambda i: f"{objs[i].colour} {objs[i].shape}"  # noqa: E731
    if len(objs) >= 2:
        area = lambda o: SIZES[o.size]  # noqa: E731  (size class, which a viewer can judge)
        for tpl, key, largest, margin, q, a in (
            ("largest", area, True, 0.01, "Which object in the picture is the largest?",
             "The {d} <OBJ-1> is the largest object in the picture."),
            ("smallest", area, False, 0.01, "Which object is the smallest one?",
             "The smallest one is the {d} <OBJ-1>."),
            ("leftmost", lambda o: o.cx, False, MARGIN, "Which object is furthest to the left?",
             "The {d} <OBJ-1> is furthest to the left."),
            ("rightmost", lambda o: o.cx, True, MARGIN, "Which object is furthest to the right?",
             "Furthest to the right is the {d} <OBJ-1>."),
            ("topmost", lambda o: o.cy, False, MARGIN, "Which object is closest to the top of the image?",
             "The {d} <OBJ-1> is closest to the top."),
        ):
            i = _extreme(objs, key, largest, margin)
            if i is not None:
                out.append((tpl, q, a.format(d=desc(i)), [i]))
    colours = [o.colour for o in objs]
    if len(objs) >= 3:
        for c in set(colours):
            if colours.count(c) == len(objs) - 1:
                i = next(k for k, x in enumerate(colours) if x != c)
                out.append(("odd_colour", "Which object has a different colour from all the others?",
                            f"All the other objects are {c}, but the {desc(i)} <OBJ-1> is {objs[i].colour}.", [i]))
    for a_idx, a in enumerate(objs):
        refs = referring_expressions(objs, a_idx)
        partners = [k for k, o in enumerate(objs) if k != a_idx and o.colour == a.colour]
        if refs and len(partners) == 1:
            ref = refs[int(rng.integers(len(refs)))]
            b = partners[0]
            out.append(("same_colour", f"Which object has the same colour as {ref}?",
                        f"The {objs[b].shape} <OBJ-1> is {a.colour}, just like {ref} <OBJ-2>.", [b, a_idx]))
    for shape in sorted({o.shape for o in objs}):
        idx = [i for i, o in enumerate(objs) if o.shape == shape]
        tags = [f"<OBJ-{k + 1}>" for k in range(len(idx))]
        listed = tags[0] if len(tags) == 1 else ", ".join(tags[:-1]) + " and " + tags[-1]
        word = shape if len(idx) == 1 else plural(shape)
        verb = "is" if len(idx) == 1 else "are"
        out.append(("count", f"How many {plural(shape)} are there? Point them out.",
                    f"There {verb} {NUMBERS[len(idx)]} {word}: {listed}.", idx))
    return out
