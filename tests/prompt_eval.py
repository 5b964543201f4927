"""The prompt evaluation set (tests/data/prompts.yaml) and its scoring, shared by the tests and
``benchmarks/prompt.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

DATA = Path(__file__).resolve().parent / "data" / "prompts.yaml"
FIELDS = ("people_count", "appearance", "actions", "motions", "scene")


def load_cases(path: Path = DATA) -> list[dict]:
    with open(path) as f:
        return yaml.safe_load(f)


@dataclass
class Scores:
    """Per-field accuracy over the cases, and the cases each field got wrong (prompt, got, expected)."""

    n: int
    correct: dict[str, int]
    wrong: dict[str, list[tuple[str, object, object]]] = field(default_factory=dict)

    def accuracy(self, name: str) -> float:
        return self.correct[name] / self.n


def evaluate(cases: list[dict], parser=None, text_to_motion=None) -> Scores:
    """Parse every case and compare people count, appearance phrases, actions, motions and scene."""
    from amg.prompt import RuleBasedPromptParser
    from avatars.text_to_motion import LibraryTextToMotion

    parser = parser or RuleBasedPromptParser()
    t2m = text_to_motion or LibraryTextToMotion()
    correct = dict.fromkeys(FIELDS, 0)
    wrong: dict[str, list] = {k: [] for k in FIELDS}
    for case in cases:
        p = parser.parse(case["prompt"])
        motions = [c.motion for c in t2m.plan(p.actions, len(p.people)).choices] if p.people else []
        got = {"people_count": len(p.people), "appearance": p.people, "actions": p.actions, "motions": motions,
               "scene": p.scene}
        want = {"people_count": len(case["people"]), "appearance": case["people"], "actions": case["actions"],
                "motions": case["motions"], "scene": case["scene"] or ""}
        for k in FIELDS:
            if got[k] == want[k]:
                correct[k] += 1
            else:
                wrong[k].append((case["prompt"], got[k], want[k]))
    return Scores(len(cases), correct, wrong)
