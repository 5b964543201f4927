"""Prompt decomposition: people (an appearance each), actions and scene.

AMG's inference "decomposes a single text prompt into human appearance and scene descriptions". The
embedded default, :class:`RuleBasedPromptParser`, reads the prompt with the grammar of
:mod:`avatars.prompt_grammar` (people are noun phrases with their modifiers, counts and group nouns give
the number of people, conjoined verbs are a sequence of actions, phrases after the action split into the
action's objects and directions and the scene). Another parser (a language model) implements
:class:`PromptParser` and is chosen with the ``parser`` config group of ``amg.generate``, e.g. a
``conf/parser/<name>.yaml`` holding ``_target_: my_package.LlmPromptParser`` and its arguments.

>>> p = RuleBasedPromptParser().parse("a woman in a yellow dress and a man in a white shirt dance in a park at sunset")
>>> p.people, p.action, p.scene
(['a woman in a yellow dress', 'a man in a white shirt'], 'dance', 'in a park at sunset')
>>> p = RuleBasedPromptParser().parse("a basketball player dribbles and jumps to dunk")
>>> p.people, p.actions
(['a basketball player'], ['dribbles', 'jumps to dunk'])
>>> RuleBasedPromptParser().parse("a couple dances tango under street lights in Buenos Aires").people
['a person', 'a person']
>>> p = RuleBasedPromptParser().parse("a sunset over the sea")
>>> p.people, p.actions, p.notes[-1]
([], [], 'the prompt names nobody: no people, no action')
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field

from avatars.prompt_grammar import decompose

__all__ = ["ParsedPrompt", "PromptParser", "RuleBasedPromptParser"]


@dataclass
class ParsedPrompt:
    """A decomposed prompt.

    Attributes:
        prompt: the original text.
        people: one appearance description per person, in the order the prompt names them; empty when the
            prompt names nobody (then there is nothing to animate, and ``notes`` says so).
        action: all actions as one phrase (``"dribbles and jumps to dunk"``); "" when none is found.
        scene: the place/lighting phrase (``"in a park at sunset"``); "" when none.
        scene_prompt: the text the video model is conditioned on.
        notes: what the parser assumed or could not read.
        actions: the actions in the order they happen (``["dribbles", "jumps to dunk"]``), each with its
            objects, directions and speed words.
    """

    prompt: str
    people: list[str]
    action: str
    scene: str
    scene_prompt: str = ""
    notes: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)

    @property
    def names_people(self) -> bool:
        """False when the prompt names nobody (``"a sunset over the sea"``)."""
        return bool(self.people)

    def to_dict(self) -> dict:
        return asdict(self)


class PromptParser(abc.ABC):
    """Decomposes a prompt into people, actions and scene (implemented by rules or by a language model)."""

    @abc.abstractmethod
    def parse(self, prompt: str) -> ParsedPrompt:
        """Return the decomposition of ``prompt``."""


class RuleBasedPromptParser(PromptParser):
    """The embedded default: the grammar of :func:`avatars.prompt_grammar.decompose`."""

    def parse(self, prompt: str) -> ParsedPrompt:
        text = " ".join(str(prompt).strip().split())
        d = decompose(text)
        return ParsedPrompt(prompt=str(prompt), people=[p.text for p in d.people], action=d.action_text,
                            scene=d.scene, scene_prompt=text, notes=list(d.notes),
                            actions=[a.text for a in d.actions])
