"""The four tasks as (prompt, answer, targets) built from one sample of the shared schema.

Answers carry the new task tokens: ``<OBJ-i>`` for each object to segment (in tag order) and
``<GEN>`` for text-to-image. Only answer tokens carry the text loss.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ntbench.data.schema import Sample
from ntbench.registry import Registry

GEN_TOKEN = "<GEN>"


def obj_token(i: int) -> str:
    return f"<OBJ-{i}>"


@dataclass
class TaskExample:
    task: str
    prompt: str
    answer: str
    uses_image: bool                       # text-to-image samples carry no image tokens
    target_objects: list[int] = field(default_factory=list)  # objects for <OBJ-1>, <OBJ-2>, ...
    generate_image: bool = False           # the <GEN> token regresses the image's embedding


class Task:
    """Base class: ``build`` turns a sample into an example, or None if the sample lacks the data."""

    name = "task"
    segmentation = False

    def build(self, sample: Sample, rng: np.random.Generator) -> TaskExample | None:
        raise NotImplementedError


TASKS: Registry[type[Task]] = Registry("task", Task)


@TASKS.register("referring", description="referring segmentation: 'segment the small red square' -> <OBJ-1>")
class ReferringSegmentation(Task):
    name, segmentation = "referring", True

    def build(self, sample, rng):
        choices = [(r, [j]) for j, o in enumerate(sample.objects) for r in o.refs]
        choices += [(g["text"], list(g["objects"])) for g in sample.groups]
        if not choices:
            return None
        text, objs = choices[int(rng.integers(len(choices)))]
        prompt = text if text.lower().startswith("segment") else f"segment {text}"
        prompt = prompt[:1].upper() + prompt[1:]
        answer = ", ".join(obj_token(i + 1) for i in range(len(objs))) + "."
        return TaskExample(self.name, prompt.rstrip(".") + ".", answer, True, objs)


@TASKS.register("reasoning", description="reasoning segmentation: a question answered with tagged objects")
class ReasoningSegmentation(Task):
    name, segmentation = "reasoning", True

    def build(self, sample, rng):
        if not sample.question or not sample.tags():
            return None
        # tags are renumbered in order of appearance so the k-th <OBJ-k> is the k-th target
        targets, seen = [], {}
        answer = sample.answer
        for i in sample.tags():
            if i not in seen:
                seen[i] = len(seen) + 1
                targets.append(sample.answer_objects[i - 1])
        for old, new in sorted(seen.items(), reverse=True):
            answer = answer.replace(f"<OBJ-{old}>", f"<OBJ-#{new}>")
        answer = answer.replace("<OBJ-#", "<OBJ-")
        return TaskExample(self.name, sample.question, answer, True, targets)


@TASKS.register("captioning", description="image captioning: 'Describe the image.' -> caption")
class Captioning(Task):
    name = "captioning"

    def build(self, sample, rng):
        if not sample.caption:
            return None
        return TaskExample(self.name, "Describe the image.", sample.caption, True)


@TASKS.register("t2i", aliases=("text2image", "generation"),
                description="text-to-image: prompt -> <GEN>, regressing the image's vision embedding")
class TextToImage(Task):
    name = "t2i"

    def build(self, sample, rng):
        prompt = sample.t2i_prompt or sample.caption
        if not prompt:
            return None
        return TaskExample(self.name, prompt, GEN_TOKEN, False, generate_image=True)
