"""Prompt decomposition: people (an appearance each), action and scene.

AMG's inference "decomposes a single text prompt into human appearance and scene descriptions". The default
here is rule-based; a language model can implement :class:`PromptParser` and be selected in the config.

>>> RuleBasedPromptParser().parse("a woman in a yellow dress and a man in a white shirt dance in a park at sunset")
ParsedPrompt(people=['a woman in a yellow dress', 'a man in a white shirt'], action='dance',
             scene='in a park at sunset', ...)
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field

__all__ = ["ParsedPrompt", "PromptParser", "RuleBasedPromptParser"]

_PERSON_NOUNS = ("woman", "women", "man", "men", "girl", "girls", "boy", "boys", "person", "people", "child",
                 "kid", "lady", "guy", "dancer", "dancers", "athlete", "boxer", "boxers", "couple", "player",
                 "players", "friends", "fencer", "fencers")
_COUNTS = {"two": 2, "three": 3, "four": 4, "a couple of": 2, "couple": 2, "pair": 2, "both": 2}
# verbs (and their -s/-ing forms) that end the people part of a prompt
_VERBS = ("dance", "walk", "run", "jog", "jump", "hop", "wave", "box", "spar", "punch", "fight", "fence",
          "turn", "spin", "sit", "stand", "idle", "shake", "greet", "hug", "stroll", "wander", "march", "sprint",
          "leap", "kick", "bow", "clap", "stretch", "move", "perform", "play", "practice", "practise", "pose")
_SCENE_START = re.compile(r"\b(in|at|on|inside|outside|by|near|under|through|across|along|beside|during|"
                          r"against|onto|into|amid|among)\b")


@dataclass
class ParsedPrompt:
    """A decomposed prompt.

    Attributes:
        prompt: the original text.
        people: one appearance description per person, in the order the prompt names them.
        action: the motion phrase (verb with its adverbs, e.g. "dance slowly"); "" when none is found.
        scene: the place/lighting phrase (e.g. "in a park at sunset"); "" when none.
        scene_prompt: the text the video model is conditioned on.
    """

    prompt: str
    people: list[str]
    action: str
    scene: str
    scene_prompt: str = ""
    notes: list[str] = field(default_factory=list)


class PromptParser(abc.ABC):
    """Decomposes a prompt into people, action and scene (implemented by rules or by a language model)."""

    @abc.abstractmethod
    def parse(self, prompt: str) -> ParsedPrompt:
        """Return the decomposition of ``prompt``."""


def _verb_forms(v: str) -> set[str]:
    forms = {v, v + "s"}
    if v.endswith(("x", "sh", "ch")):
        forms.add(v + "es")
    forms.add((v[:-1] if v.endswith("e") else v) + "ing")
    if re.fullmatch(r".*[^aeiou][aeiou][bdgmnprt]", v):  # run -> running, sit -> sitting
        forms.add(v + v[-1] + "ing")
    return forms


_VERB_FORMS = set().union(*(_verb_forms(v) for v in _VERBS))


def _is_verb(word: str) -> bool:
    return word.lower() in _VERB_FORMS


class RuleBasedPromptParser(PromptParser):
    """The embedded default: splits on the first action verb, then people on "and"/commas.

    - people part: everything before the first verb of a known action; split on ", " and " and " where the
      next piece starts a new person ("a man", "the girl", "an old woman"); "two people" gives two people.
    - action: the verb and any adverbs up to the scene preposition ("dance slowly").
    - scene: from the first place preposition after the verb ("in a park at sunset").
    """

    def parse(self, prompt: str) -> ParsedPrompt:
        text = " ".join(prompt.strip().split())
        words = text.split(" ")
        vi = next((i for i, w in enumerate(words) if _is_verb(re.sub(r"[^a-zA-Z]", "", w))
                   and i > 0), None)
        notes: list[str] = []
        if vi is None:
            people_part, rest = text, ""
            notes.append("no action verb found: the people stand idle")
        else:
            people_part, rest = " ".join(words[:vi]), " ".join(words[vi:])
        people_part = re.sub(r"\s+(are|is|who|that|both|together)$", "", people_part.strip(" ,"), flags=re.I)
        people = self._split_people(people_part)
        m = _SCENE_START.search(rest)
        if m and m.start() > 0:
            action, scene = rest[: m.start()].strip(" ,."), rest[m.start():].strip(" ,.")
        else:
            action, scene = rest.strip(" ,."), ""
        # "with each other", "together" belong to the action
        action = re.sub(r"^(are|is)\s+", "", action)
        return ParsedPrompt(prompt=prompt, people=people, action=action, scene=scene, scene_prompt=text,
                            notes=notes)

    @staticmethod
    def _split_people(part: str) -> list[str]:
        low = part.lower()
        for word, n in _COUNTS.items():
            m = re.match(rf"^(?:the\s+)?{word}\s+(?:of\s+)?(\w+)", low)
            if m and m.group(1).rstrip("s") in {p.rstrip("s") for p in _PERSON_NOUNS}:
                rest = part[m.end():].strip()
                noun = m.group(1)
                singular = {"people": "person", "men": "man", "women": "woman", "friends": "friend",
                            "dancers": "dancer", "boxers": "boxer", "fencers": "fencer", "kids": "kid",
                            "girls": "girl", "boys": "boy", "players": "player"}.get(noun, noun.rstrip("s"))
                return [f"a {singular} {rest}".strip()] * n
        pieces = re.split(r",\s*(?:and\s+)?|\s+and\s+", part)
        people: list[str] = []
        for p in pieces:
            p = p.strip()
            if not p:
                continue
            starts_person = re.match(r"^(a|an|the|one|another|his|her|their)\b", p, re.I) and any(
                re.search(rf"\b{n}\b", p, re.I) for n in _PERSON_NOUNS)
            if people and not starts_person:
                people[-1] = f"{people[-1]} and {p}"  # "a man in a white shirt and dark pants"
            else:
                people.append(p)
        return people or ["a person"]
