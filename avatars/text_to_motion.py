"""Text to motion: the actions a prompt names -> library motions, chosen by meaning, placed in one world.

Each library motion carries a written description (:func:`avatars.motion_library.describe`). A
:class:`MotionMatcher` scores an action (``"throws punches at a bag"``) against those descriptions:

- :class:`LexiconMatcher` (the embedded default): words are reduced to lemmas and mapped through a synonym
  lexicon onto shared concepts (``strolls`` -> walk, ``embraces`` -> hug, ``tango`` -> partner dance); the
  score is the share of the action's meaning (its head verb weighted 3, other words 1, rarer concepts more)
  that the description covers, plus a small cosine term that prefers the more specific description.
- :class:`EmbeddingMatcher`: a local sentence-embedding model folder (BERT-style, loaded with
  ``transformers``, mean pooling over tokens) scores by cosine similarity. No weights ship with the project:
  the folder is the user's.

:class:`LibraryTextToMotion` turns the matches into a :class:`MotionPlan` (choice, score, runner-up and a
note when the best match is weak) and builds the motions: conjoined actions play in sequence, two people
get an interaction when one matches, speed words scale the tempo, direction phrases set the heading and
``in a circle`` bends a travelling motion onto a circle (or stands several people in a ring).

>>> plan = LibraryTextToMotion().plan(["throws punches at a bag"], num_people=1)
>>> plan.choices[0].motion
'box'
>>> [c.motion for c in LibraryTextToMotion().plan(["hug each other"], num_people=2).choices]
['hug']
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from render.errors import AmgError
from render.rotations import axis_angle_to_matrix, matrix_to_axis_angle

from . import motion_library
from .body import default_body as _default_body
from .motion import Motion, _pelvis
from .motion_library import TextToMotion, heading_matrix
from .prompt_grammar import LIGHT_VERBS, Action, decompose, lemma, read_action, tokenize

__all__ = ["MotionMatcher", "LexiconMatcher", "EmbeddingMatcher", "MotionChoice", "MotionPlan",
           "LibraryTextToMotion", "SYNONYMS", "concepts"]

#: Word (lemma) -> the concept it shares with motion descriptions. Words not listed are their own concept.
SYNONYMS: dict[str, str] = {
    **dict.fromkeys("walk stroll wander march pace stride amble saunter strut hike tiptoe trudge limp stagger "
                    "walking".split(), "walk"),
    **dict.fromkeys("run jog sprint dash rush race chase hurry flee".split(), "run"),
    **dict.fromkeys("jump hop leap bounce vault bound dunk skip".split(), "jump"),
    **dict.fromkeys("wave salute beckon hail".split(), "wave"),
    **dict.fromkeys("dance groove boogie disco bop shimmy breakdance".split(), "dance"),
    **dict.fromkeys("tango waltz ballroom foxtrot quickstep partner-dance".split(), "partnerdance"),
    **dict.fromkeys("salsa merengue bachata samba rumba cha-cha mambo latin".split(), "latin"),
    **dict.fromkeys("box punch spar jab uppercut hook".split(), "punch"),
    **dict.fromkeys("fight brawl wrestle grapple scuffle battle tussle".split(), "fight"),
    **dict.fromkeys("fence duel sword foil epee saber sabre".split(), "fence"),
    **dict.fromkeys("spin twirl pirouette whirl".split(), "spin"),
    **dict.fromkeys("turn rotate turnaround".split(), "turn"),
    **dict.fromkeys("sit seat".split(), "sit"),
    **dict.fromkeys("standup rise".split(), "standup"),
    **dict.fromkeys("idle stand wait pause stay watch look talk listen pose rest still".split(), "idle"),
    **dict.fromkeys("kick punt".split(), "kick"),
    **dict.fromkeys("bow curtsy".split(), "bow"),
    **dict.fromkeys("clap applaud cheer".split(), "clap"),
    **dict.fromkeys("point gesture indicate".split(), "point"),
    **dict.fromkeys("crouch squat kneel duck hunker".split(), "crouch"),
    **dict.fromkeys("crawl creep".split(), "crawl"),
    **dict.fromkeys("lie lay recline sleep nap".split(), "lie"),
    **dict.fromkeys("throw toss hurl pitch fling lob".split(), "throw"),
    **dict.fromkeys("catch grab receive".split(), "catch"),
    **dict.fromkeys("push shove press".split(), "push"),
    **dict.fromkeys("pull drag tug haul".split(), "pull"),
    **dict.fromkeys("carry lift hold tote bear".split(), "carry"),
    **dict.fromkeys("stretch exercise warmup yoga".split(), "stretch"),
    **dict.fromkeys("climb ascend descend scale".split(), "climb"),
    **dict.fromkeys("stair step staircase stairway steps".split(), "stair"),
    **dict.fromkeys("dribble basketball".split(), "dribble"),
    **dict.fromkeys("hug embrace cuddle".split(), "hug"),
    **dict.fromkeys("highfive high-five".split(), "highfive"),
    **dict.fromkeys("handshake greet".split(), "handshake"),
    **dict.fromkeys("lead follow".split(), "lead"),
    "piggyback": "piggyback",
}
#: Concepts that are actions: after a light verb (``gives a high five``, ``does yoga``) they are the action.
_ACTION_CONCEPTS = frozenset(SYNONYMS.values())
# two-word expressions read as one concept before the synonym lookup
_MULTIWORD = {("shake", "hand"): "handshake", ("high", "five"): "highfive", ("stand", "up"): "standup",
              ("get", "up"): "standup", ("warm", "up"): "warmup", ("turn", "around"): "turnaround",
              ("turn", "round"): "turnaround", ("lie", "down"): "lie", ("sit", "down"): "sit",
              ("jumping", "jack"): "jump", ("partner", "dance"): "partnerdance", ("swing", "dance"): "partnerdance"}
_STOP = frozenset("""a an the and or of to at in on with from by for into onto his her their its it they them he
she one another each other someone person people camera viewer while then as is are be this that these those
both together up down around over back forth away toward towards left right side way just very""".split())


def concepts(text_or_words) -> list[str]:
    """Concepts of a text (or of a list of lemmas): lemmas, two-word expressions, synonyms, stop words out."""
    words = [lemma(t.text) for t in tokenize(text_or_words)] if isinstance(text_or_words, str) \
        else [lemma(w) for w in text_or_words]
    words = [w for w in words if w.replace("-", "").isalpha()]
    out, i = [], 0
    while i < len(words):
        pair = tuple(words[i:i + 2])
        if pair in _MULTIWORD:
            out.append(SYNONYMS.get(_MULTIWORD[pair], _MULTIWORD[pair]))
            i += 2
            continue
        if words[i] not in _STOP:
            out.append(SYNONYMS.get(words[i], words[i]))
        i += 1
    return out


def _side_words(text: str) -> set[str]:
    """Which of ``left``/``right`` a text names."""
    return {w for w in (lemma(t.text) for t in tokenize(text)) if w in ("left", "right")}


def _action_words(action: Action) -> list[str]:
    """The action's words with its head first (the meaning-carrying verb of ``throws punches`` is punch)."""
    return [action.head] + [w for w in action.words if w != action.head]


# ---- matchers ---------------------------------------------------------------------------------------------

class MotionMatcher(ABC):
    """Scores an action against the descriptions of library motions.

    Attributes:
        weak_below: a best score under this is reported as a weak match.
        min_score: a best score under this means nothing matches: the people stand idle.
    """

    weak_below: float = 0.5
    min_score: float = 0.0

    @abstractmethod
    def scores(self, action: Action, names: Sequence[str]) -> dict[str, float]:
        """Score of every motion in ``names`` for ``action`` (higher is better; 0 means nothing shared)."""


class LexiconMatcher(MotionMatcher):
    """The embedded default: concept overlap between an action and each motion's description.

    ``score = covered + 0.1 * cosine + 0.05 * named``: ``covered`` is the idf-weighted share of the action's
    concepts (head verb weight 3, other words 1) found in the description (1.0 when all are); the cosine of
    the two weighted bags breaks ties towards the more specific description, and ``named`` (1 when the
    motion's name is the head's concept) towards the motion the action names. Scores lie in [0, 1.15].
    """

    def __init__(self, weak_below: float = 0.5, min_score: float = 0.3):
        self.weak_below = float(weak_below)
        self.min_score = float(min_score)
        self._bags: dict[str, dict[str, float]] = {}

    def _description_bags(self, names: Sequence[str]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
        for n in names:
            if n not in self._bags:
                words = concepts(motion_library.describe(n)) + concepts(n.replace("_", " "))
                self._bags[n] = {c: 1.0 for c in words}
        bags = {n: self._bags[n] for n in names}
        df: dict[str, int] = {}
        for b in bags.values():
            for c in b:
                df[c] = df.get(c, 0) + 1
        N = len(bags)
        idf = {c: math.log(1.0 + N / d) for c, d in df.items()}
        return bags, idf

    def scores(self, action: Action, names: Sequence[str]) -> dict[str, float]:
        bags, idf = self._description_bags(names)
        found = concepts(_action_words(action))
        if len(found) > 1 and found[0] in LIGHT_VERBS and found[1] in _ACTION_CONCEPTS:
            found = found[1:]  # "gives a high five", "does yoga": the object is the action
        head = found[0] if found else ""
        sides = _side_words(action.text)
        query: dict[str, float] = {}
        for k, c in enumerate(found):
            query[c] = max(query.get(c, 0.0), 3.0 if k == 0 else 1.0)
        unseen = math.log(1.0 + len(names))  # a concept no description has is as specific as the rarest
        wq = {c: w * idf.get(c, unseen) for c, w in query.items()}
        total = sum(wq.values())
        qn = math.sqrt(sum(v * v for v in wq.values()))
        out = {}
        for n, bag in bags.items():
            if total <= 0:
                out[n] = 0.0
                continue
            covered = sum(v for c, v in wq.items() if c in bag) / total
            dn = math.sqrt(sum(idf[c] ** 2 for c in bag))
            cos = sum(v * idf[c] for c, v in wq.items() if c in bag) / (qn * dn) if dn > 0 else 0.0
            # the motion named by the action's head word wins a tie ("dancing": dance over salsa)
            named = 0.05 if head and head in concepts(n.replace("_", " ")) else 0.0
            # left/right are stop words for meaning, but between two motions that differ only in the side
            # (walk_arc, walk_arc_right) the side the action names breaks the tie (and only a near tie)
            sided = 0.005 if sides and sides & _side_words(motion_library.describe(n)) else 0.0
            out[n] = covered + 0.1 * cos + named + sided
        return out


class EmbeddingMatcher(MotionMatcher):
    """Cosine similarity of sentence embeddings from a local BERT-style model folder.

    Args:
        path: a folder ``transformers`` loads with ``AutoTokenizer``/``AutoModel`` (config, weights,
            tokenizer files), e.g. a sentence-transformers model's folder. Nothing is downloaded.
        weak_below: cosine under which the best match is reported as weak.
        min_score: cosine under which nothing matches (idle).
        max_length: tokens per text.
    Embeddings are the attention-mask-weighted mean of the last hidden states, L2-normalised.
    """

    def __init__(self, path: str, weak_below: float = 0.35, min_score: float = 0.15, max_length: int = 64):
        p = Path(str(path)).expanduser()
        if not p.is_dir() or not (p / "config.json").is_file():
            raise AmgError(f"text_to_motion.matcher.path={path}: expected a local model folder with config.json")
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(p), local_files_only=True).eval()
        except (OSError, ValueError) as e:
            raise AmgError(f"text_to_motion.matcher.path={path}: cannot load a model from it ({e})") from None
        self.weak_below = float(weak_below)
        self.min_score = float(min_score)
        self.max_length = int(max_length)
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """``(N, D)`` unit-norm embeddings of ``texts``."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        hidden = self.model(**enc).last_hidden_state  # (N, T, D)
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return torch.nn.functional.normalize(mean.float(), dim=-1)

    def scores(self, action: Action, names: Sequence[str]) -> dict[str, float]:
        missing = [n for n in names if n not in self._cache]
        if missing:
            for n, e in zip(missing, self.embed([motion_library.describe(n) for n in missing])):
                self._cache[n] = e
        q = self.embed([action.text])[0]
        return {n: float(q @ self._cache[n]) for n in names}


# ---- plans -----------------------------------------------------------------------------------------------

@dataclass
class MotionChoice:
    """The motion chosen for one action.

    Attributes:
        action: the action text.
        motion: library motion name.
        score: the matcher's score of ``motion``.
        runner_up: the next best ``(name, score)`` (when nothing matched: the best, not good enough).
        speed: tempo factor; direction: heading in degrees; path: ``"circle"`` or None.
        weak: true when ``score`` is under the matcher's ``weak_below``.
        matched: false when the score is under the matcher's ``min_score`` and the motion fell back to idle.
    """

    action: str
    motion: str
    score: float
    runner_up: tuple[str, float] | None = None
    speed: float = 1.0
    direction: float = 0.0
    path: str | None = None
    weak: bool = False
    matched: bool = True


@dataclass
class MotionPlan:
    """Choices for a prompt's actions (played in sequence) for ``num_people`` people, with notes."""

    choices: list[MotionChoice]
    num_people: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"num_people": self.num_people, "choices": [asdict(c) for c in self.choices], "notes": self.notes}


class LibraryTextToMotion(TextToMotion):
    """:class:`TextToMotion` over the motion library, matching actions to motion descriptions.

    Args:
        matcher: a :class:`MotionMatcher` (default :class:`LexiconMatcher`).
        body: the body model used to ground motions (default body when omitted).
        spacing: metres between people who do one-person motions side by side.
        circle_radius: metres, for ``in a circle``.
        pair_bonus: factor on interaction scores when exactly two people act (an interaction is what two
            people who "dance" or "fight" mean).
    """

    def __init__(self, matcher: MotionMatcher | None = None, body=None, spacing: float = 1.0,
                 circle_radius: float = 1.5, pair_bonus: float = 1.15):
        self.matcher = matcher if matcher is not None else LexiconMatcher()
        self.body = body
        self.spacing = float(spacing)
        self.circle_radius = float(circle_radius)
        self.pair_bonus = float(pair_bonus)

    # -- choosing
    def choose(self, action: Action | str, num_people: int) -> MotionChoice:
        """The best library motion for one action done by ``num_people`` people."""
        action = read_action(action) if isinstance(action, str) else action
        pairs = set(motion_library.interactions())
        names = [n for n in motion_library.names() if num_people == 2 or n not in pairs]
        scores = self.matcher.scores(action, names)
        if num_people == 2:
            scores = {n: s * (self.pair_bonus if n in pairs else 1.0) for n, s in scores.items()}
        ranked = sorted(names, key=lambda n: (-scores[n], names.index(n)))
        best = ranked[0]
        score = scores[best]
        runner = (ranked[1], round(scores[ranked[1]], 4)) if len(ranked) > 1 else None
        matched = score >= max(self.matcher.min_score, 1e-9)
        if not matched:
            best, runner = "idle", (best, round(score, 4))  # the best was not good enough
        return MotionChoice(action=action.text, motion=best, score=round(score, 4), runner_up=runner,
                            speed=action.speed, direction=0.0 if action.direction is None else action.direction,
                            path=action.path, weak=score < self.matcher.weak_below, matched=matched)

    def plan(self, actions: Sequence[Action | str], num_people: int) -> MotionPlan:
        """Choices for ``actions`` (in order) done by ``num_people`` people; notes for weak matches."""
        n = max(1, int(num_people))
        choices = [self.choose(a, n) for a in actions] or [MotionChoice("", "idle", 0.0)]
        notes = []
        for c in choices:
            if not c.action:
                notes.append("no action: the people stand idle")
            elif not c.matched:
                notes.append(f"no library motion matches {c.action!r} (best {c.runner_up[0]}, score "
                             f"{c.runner_up[1]:.2f}); using idle")
            elif c.weak:
                notes.append(f"weak match for {c.action!r}: {c.motion} (score {c.score:.2f}, next "
                             f"{c.runner_up[0] if c.runner_up else '-'})")
        return MotionPlan(choices, n, notes)

    # -- building
    def build(self, plan: MotionPlan, seconds: float = 3.0, fps: float = 30.0) -> list[Motion]:
        """One Motion per person, ``round(seconds * fps)`` frames, the plan's actions one after another."""
        F = max(2, int(round(seconds * fps)))
        k = len(plan.choices)
        bounds = [round(F * i / k) for i in range(k + 1)]
        people: list[list[Motion]] = [[] for _ in range(plan.num_people)]
        for c, a, b in zip(plan.choices, bounds[:-1], bounds[1:]):
            if b - a < 1:
                continue
            seg = self._segment(c, plan.num_people, (b - a) / fps + 1.0 / fps, fps)
            for i, m in enumerate(seg):
                people[i].append(m[: b - a])
        return [self._join(clips) for clips in people]

    def _segment(self, c: MotionChoice, n: int, seconds: float, fps: float) -> list[Motion]:
        name = c.motion
        if name in motion_library.interactions() and n != 2:
            name = motion_library.solo_of(name)
        if name in motion_library.interactions():
            return motion_library.make_people(name, seconds=seconds, fps=fps, speed=c.speed,
                                              direction=c.direction, body=self.body)
        out = []
        for i in range(n):
            m = motion_library.make(name, seconds=seconds, fps=fps, speed=c.speed * (1.0 + 0.05 * i),
                                    direction=c.direction, body=self.body)
            out.append(m.copy(name=f"{name}/{i}" if n > 1 else name))
        travels = float((out[0].transl[-1, [0, 2]] - out[0].transl[0, [0, 2]]).norm()) > 0.3
        if c.path == "circle" and travels:
            out = [_bend_onto_circle(m, self.circle_radius, c.direction, self.body) for m in out]
        if c.path == "circle" and not travels and n >= 3:
            return _ring(out, max(self.circle_radius, 0.3 * n), self.body)
        offsets = [heading_matrix(c.direction) @ torch.tensor([(i - (n - 1) / 2) * self.spacing, 0.0, 0.0])
                   for i in range(n)]
        return [m.copy(transl=m.transl + o) for m, o in zip(out, offsets)]

    @staticmethod
    def _join(clips: list[Motion]) -> Motion:
        """Play clips one after another; each continues on the ground from where the last one ended."""
        out = clips[0]
        for m in clips[1:]:
            shift = out.transl[-1] - m.transl[0]
            shift[1] = 0.0
            out = Motion.concatenate([out, m.copy(transl=m.transl + shift)])
        names = [m.name.split("/")[0] for m in clips]
        return out.copy(name="+".join(dict.fromkeys(names)) + (("/" + clips[0].name.split("/")[1])
                                                              if "/" in clips[0].name else ""))

    # -- the TextToMotion contract
    def __call__(self, text: str, seconds: float = 3.0, fps: float = 30.0,
                 num_people: int | None = None) -> list[Motion]:
        plan = self.plan_text(text, num_people)
        for note in plan.notes:
            if "idle" in note:
                warnings.warn(f"text_to_motion: {note} (known: {', '.join(motion_library.names())})",
                              stacklevel=2)
        return self.build(plan, seconds=seconds, fps=fps)

    def plan_text(self, text: str, num_people: int | None = None) -> MotionPlan:
        """:meth:`plan` for a whole prompt read by :func:`~avatars.prompt_grammar.decompose`."""
        d = decompose(text)
        n = num_people if num_people is not None else max(1, len(d.people))
        return self.plan(d.actions, n)


def _bend_onto_circle(m: Motion, radius: float, direction: float, body=None) -> Motion:
    """Bend a motion that travels straight along ``direction`` onto a circle of ``radius`` turning left."""
    J0 = _pelvis(m.betas, body if body is not None else _default_body())
    h = heading_matrix(direction)[:, 2]
    left = heading_matrix(direction + 90.0)[:, 2]
    p = J0 + m.transl  # pelvis in the world
    s = (p - p[0]) @ h  # distance travelled
    q = p - s[:, None] * h
    centre = p[0] + radius * left
    theta = s / radius
    R = torch.stack([heading_matrix(math.degrees(float(a))) for a in theta])
    p2 = centre + torch.einsum("fij,fj->fi", R, q - centre)
    go = matrix_to_axis_angle(R @ axis_angle_to_matrix(m.global_orient))
    return m.copy(global_orient=go, transl=p2 - J0)


def _ring(motions: list[Motion], radius: float, body=None) -> list[Motion]:
    """Stand people on a ring of ``radius`` facing its centre (``dancers spin in a circle``)."""
    out = []
    n = len(motions)
    for i, m in enumerate(motions):
        ang = 360.0 * i / n
        pos = heading_matrix(ang)[:, 2] * radius
        turned = m.transformed(heading_matrix(ang + 180.0), pelvis=_pelvis(m.betas, body or _default_body()))
        start = turned.transl[0].clone()
        start[1] = 0.0
        out.append(turned.copy(transl=turned.transl - start + torch.tensor([float(pos[0]), 0.0, float(pos[2])])))
    return out
