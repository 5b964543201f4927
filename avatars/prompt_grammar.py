"""Reading prompts as people write them: a small English grammar over a verb and a person-noun lexicon.

One source for the prompt words of the project: :mod:`amg.prompt` (people, action, scene for the apps)
and :mod:`avatars.text_to_motion` (actions to library motions) both read prompts through
:func:`decompose`.

The grammar, in the order a prompt is read::

    prompt   := [scene ","] people [aux] action (conj action)* [scene] | scene-only text
    people   := person ("," | "and" person)*           person := noun phrase with a person head
    person   := [det | count] adj* head modifier*       modifier := ("in" | "with" | "wearing" ...) np
    action   := verb particle? adverb* object? pp*      pp := direction / object / manner phrase
    conj     := "and" | "then" | "and then" | "," ["then"] | "before" | "after"

People are noun phrases (never verbs); counts and group nouns give the number of people (``two friends``,
``a couple``, ``a group of five dancers``, ``twins``); a person named as an action's object (``a man hugs a
woman``) is a person too. A prepositional phrase after the action is part of the action when it is a
direction, a path or an object (``to the camera``, ``in a circle``, ``at a bag``) and starts the scene
otherwise (``from a balcony``, ``in a gym``, ``at sunset``). A prompt with no person in it yields no people
and a note saying so.

>>> d = decompose("an old woman with grey hair waves to the camera from a balcony")
>>> [p.text for p in d.people], [a.text for a in d.actions], d.scene
(['an old woman with grey hair'], ['waves to the camera'], 'from a balcony')
>>> [a.verb for a in decompose("a basketball player dribbles and jumps to dunk").actions]
['dribble', 'jump']
>>> len(decompose("a group of five dancers spin in a circle").people)
5
>>> decompose("a sunset over the sea").people
[]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "Token", "Person", "Action", "Decomposition", "decompose", "read_action", "tokenize", "lemma", "verb_lemma",
    "is_person_noun", "VERBS", "PERSON_NOUNS", "SPEED_WORDS", "DIRECTIONS", "PATHS",
]

# ---- lexicon ------------------------------------------------------------------------------------------

#: Action verbs (lemmas). Forms (-s, -es, -ing, -ed, doubled consonants, -ies) are derived; irregular
#: ones are listed in _IRREGULAR.
VERBS = frozenset("""
walk stroll wander march pace stride amble saunter strut hike tiptoe step limp stagger trudge
run jog sprint dash rush race chase hurry flee
jump hop leap bounce skip vault dunk bound
wave greet salute beckon hail
dance groove boogie tango waltz salsa twirl pirouette sway shimmy breakdance
box punch spar jab fight brawl wrestle grapple kick strike hit battle duel fence
turn spin rotate whirl
sit stand rise get idle wait pose rest stay watch look talk listen pause
bow curtsy clap applaud cheer point gesture crouch squat kneel duck crawl creep lie lay recline sleep nap
throw toss hurl pitch fling lob catch grab receive push shove press pull drag tug haul carry lift hold
stretch exercise climb ascend descend scale
dribble shoot swing celebrate nod shake hug embrace cuddle high-five lead follow perform practice practise
do play move take give make have trade lunge juggle cartwheel somersault flip skate ski swim surf ride drive type
read write sing laugh cry eat drink cook paint draw
""".split())

_IRREGULAR = {
    "ran": "run", "sat": "sit", "stood": "stand", "threw": "throw", "thrown": "throw", "caught": "catch",
    "lying": "lie", "lay": "lie", "lain": "lie", "laid": "lay", "swung": "swing", "fought": "fight",
    "led": "lead", "spun": "spin", "got": "get", "gotten": "get", "shook": "shake", "shaken": "shake",
    "held": "hold", "rose": "rise", "risen": "rise", "did": "do", "done": "do", "does": "do", "took": "take",
    "taken": "take", "gave": "give", "given": "give", "made": "make", "has": "have", "had": "have",
    "having": "have", "slept": "sleep", "struck": "strike", "hit": "hit", "shot": "shoot",
    "high-fives": "high-five", "high-fiving": "high-five", "high-fived": "high-five",
}

#: Verbs that carry little meaning of their own: the action is their object (``throws punches``,
#: ``takes a bow``, ``gives a hug``, ``does a dance``).
LIGHT_VERBS = frozenset("throw do take give make have perform practice practise play trade".split())

#: Participles that attach a modifier to a person and never start the action.
_MODIFIER_WORDS = frozenset("wearing dressed clad holding carrying with in wears wear sporting".split())

_PERSON_SINGULAR = """
person man woman girl boy child kid lady guy gentleman dancer athlete boxer player friend fencer runner
jogger soldier chef doctor nurse teacher student worker astronaut ballerina businessman businesswoman
policeman policewoman officer firefighter farmer musician singer teenager teen toddler grandmother
grandfather grandma grandpa mother father mom dad mum son daughter brother sister wife husband bride
groom knight warrior wrestler gymnast skater hiker climber tourist actor actress model clown cowboy
cowgirl pirate ninja monk samurai referee coach fighter martial-artist karateka cheerleader waiter
waitress bartender pedestrian commuter traveler traveller shopper customer couple pair duo twin trio
quartet group crowd audience team family someone somebody everyone he she partner youngster adult senior elder
retiree student stranger neighbor neighbour baby infant performer acrobat juggler magician dj rapper
teammate opponent rival colleague classmate companion surfer skier cyclist swimmer golfer footballer
goalkeeper striker sprinter marathoner yogi instructor
trainer bodybuilder lifter soldier guard king queen prince princess zombie superhero hero villain
""".split()
_PERSON_PLURAL_IRREGULAR = {"people": "person", "men": "man", "women": "woman", "children": "child",
                            "ladies": "lady", "gentlemen": "gentleman", "businessmen": "businessman",
                            "businesswomen": "businesswoman", "policemen": "policeman",
                            "policewomen": "policewoman", "they": "person", "everyone": "person"}
PERSON_NOUNS = frozenset(_PERSON_SINGULAR)

# group nouns: how many people, and the member noun when no "of <noun>" follows
_GROUPS = {"couple": (2, "person"), "pair": (2, "person"), "duo": (2, "person"), "twins": (2, "person"),
           "twin": (2, "person"), "trio": (3, "person"), "quartet": (4, "person"), "group": (3, "person"),
           "crowd": (5, "person"), "audience": (5, "person"), "team": (4, "person"), "family": (3, "person"),
           "bunch": (3, "person")}
_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
            "ten": 10, "both": 2, "several": 3, "few": 3, "dozen": 12}
_MAX_PEOPLE = 12

_DETERMINERS = frozenset("a an the this that these those his her their its my our your some another each "
                         "every one any".split())
_AUX = frozenset("is are was were be being been am 's can will".split())
_CONJ_SEQ = ("and then", "then", "and", "before", "after", "afterwards", "followed by", "while")
_PREPOSITIONS = frozenset("""in at on from under over near by inside outside through across along beside behind
during against onto into amid among amidst around toward towards to with beneath below above past up down
off away between within upon underneath atop of before after""".split())
#: Prepositions after which a phrase belongs to the action unless its noun is a place or a time.
_ACTION_PREPS = frozenset("to toward towards at with into around away back forward past off up down over".split())
#: Nouns of places and times: a phrase with one of these is the scene (``at sunset``, ``to the beach``).
_PLACE_WORDS = frozenset("""sunset sunrise dawn dusk night noon midnight evening morning afternoon twilight
daylight moonlight rain snow fog storm wind sun beach park gym club party studio street road city town
village room stage arena stadium field court ring forest wood woods mountain hill lake river sea ocean shore
desert garden yard backyard house home office kitchen bedroom bathroom hallway corridor library school
classroom campus church temple station airport mall market shop store restaurant cafe bar pub hotel lobby
plaza square bridge rooftop roof balcony terrace porch alley sidewalk pavement crosswalk parking track
trail path meadow valley cave castle palace museum gallery theater theatre hall warehouse factory
playground pool deck boat ship train bus car lawn grass sand water background foreground light lights
spotlight neon studio dancefloor floor ground wedding concert race match game festival ceremony
show class meeting desk table window counter stop lighthouse supermarket trampoline mat bench sofa couch chair
bed city sky hills skyline""".split())
# phrases after the verb that are always part of the action (paths, manners, partners)
_ACTION_PHRASES = ("in a circle", "in circles", "in place", "on the spot", "in unison", "in slow motion",
                   "back and forth", "side to side", "from side to side", "up and down", "with each other",
                   "with one another", "each other", "one another", "in a line", "in a row", "in sync",
                   "in step", "hand in hand", "arm in arm", "on all fours", "on the floor", "on the ground",
                   "on his back", "on her back", "on their back", "on his shoulders", "on her shoulders",
                   "on their shoulders", "in his arms", "in her arms", "in their arms")

#: Speed words -> tempo factor.
SPEED_WORDS = {
    "slowly": 0.6, "slow": 0.6, "leisurely": 0.6, "gently": 0.7, "calmly": 0.7, "lazily": 0.6,
    "carefully": 0.7, "gracefully": 0.8, "casually": 0.8, "tiredly": 0.6, "sluggishly": 0.5,
    "quickly": 1.5, "fast": 1.5, "rapidly": 1.6, "energetically": 1.3, "briskly": 1.3, "hurriedly": 1.5,
    "vigorously": 1.3, "swiftly": 1.5, "furiously": 1.5, "frantically": 1.6, "wildly": 1.3,
    "slow-motion": 0.4, "slow motion": 0.4,
}
#: Direction phrases -> heading in degrees about +Y (0 faces +Z, the default camera).
DIRECTIONS = [("towards the camera", 0.0), ("toward the camera", 0.0), ("to the camera", 0.0),
              ("towards the viewer", 0.0), ("toward the viewer", 0.0), ("to the viewer", 0.0),
              ("at the camera", 0.0), ("towards us", 0.0), ("toward us", 0.0),
              ("away from the camera", 180.0), ("away from us", 180.0), ("away", 180.0),
              ("to the left", -90.0), ("leftward", -90.0), ("leftwards", -90.0),
              ("to the right", 90.0), ("rightward", 90.0), ("rightwards", 90.0)]
#: Path phrases -> path name.
PATHS = {"in a circle": "circle", "in circles": "circle", "around in a circle": "circle"}

_TOKEN = re.compile(r"[A-Za-z]+(?:[-'][A-Za-z]+)*|\d+|[,.;:!?]")


# ---- words ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Token:
    """One word or punctuation mark of a prompt with its character span."""

    text: str
    start: int
    end: int

    @property
    def low(self) -> str:
        return self.text.lower()


def tokenize(text: str) -> list[Token]:
    """Words, numbers and punctuation with their character spans in ``text``."""
    return [Token(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _double(v: str) -> bool:
    return bool(re.fullmatch(r".*[^aeiou][aeiou][bdgmnprt]", v)) and not v.endswith(("er", "en", "on"))


def _verb_forms(v: str) -> dict[str, str]:
    forms = {v: v, v + "s": v}
    if v.endswith(("x", "sh", "ch", "ss", "o", "z")):
        forms[v + "es"] = v
    if re.fullmatch(r".*[^aeiou]y", v):
        forms[v[:-1] + "ies"] = v
        forms[v[:-1] + "ied"] = v
    stem = v[:-1] if v.endswith("e") and not v.endswith(("ee", "ye")) else v
    forms[stem + "ing"] = v
    forms[(v + "d") if v.endswith("e") else (stem + "ed")] = v
    if _double(v):
        forms[v + v[-1] + "ing"] = v
        forms[v + v[-1] + "ed"] = v
    return forms


_VERB_FORMS: dict[str, str] = {}
for _v in VERBS:
    _VERB_FORMS.update(_verb_forms(_v))
_VERB_FORMS.update({k: v for k, v in _IRREGULAR.items() if v in VERBS})


def verb_lemma(word: str) -> str | None:
    """The lexicon lemma of a verb form (``punches`` -> ``punch``, ``sat`` -> ``sit``), else None."""
    return _VERB_FORMS.get(word.lower())


def _person_singular(word: str) -> str | None:
    w = word.lower()
    if w in _PERSON_PLURAL_IRREGULAR:
        return _PERSON_PLURAL_IRREGULAR[w]
    if w in PERSON_NOUNS:
        return w
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", "")):
        if w.endswith(suffix) and w[: len(w) - len(suffix)] + repl in PERSON_NOUNS:
            return w[: len(w) - len(suffix)] + repl
    return None


def is_person_noun(word: str) -> bool:
    """True for person nouns in either number (``dancer``, ``women``, ``twins``, ``people``)."""
    return _person_singular(word) is not None


def _is_plural_person(word: str) -> bool:
    s = _person_singular(word)
    return s is not None and s != word.lower() and word.lower() not in ("he", "she", "someone")


def lemma(word: str) -> str:
    """A normal form for matching: verb lemma, else a singular noun (``balls`` -> ``ball``)."""
    w = word.lower()
    v = verb_lemma(w)
    if v is not None:
        return v
    p = _person_singular(w)
    if p is not None:
        return p
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("ches", "shes", "sses", "xes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


# ---- results ----------------------------------------------------------------------------------------------

@dataclass
class Person:
    """One person of a prompt.

    Attributes:
        text: the appearance phrase, e.g. ``"a boxer in red shorts"``; for a counted group each member
            gets the member noun with the group's modifiers (``two friends in red`` -> ``a friend in red``).
        span: ``(start, end)`` characters of the noun phrase it came from in the prompt.
        role: ``"subject"`` or ``"object"`` (named as an action's object: ``hugs a woman``).
    """

    text: str
    span: tuple[int, int]
    role: str = "subject"


@dataclass
class Action:
    """One action of a prompt: a verb with its particles, adverbs, objects and phrases.

    Attributes:
        text: the action's words as written (``"jumps to dunk"``, ``"waves to the camera"``).
        verb: lemma of the verb (``"jump"``); for a light verb with an action object (``throws punches``)
            the lemma of the verb as written (``"throw"``) and ``head`` gives the meaning (``"punch"``).
        head: the word that carries the action's meaning.
        words: lemmas of the other content words (objects, particles, purpose verbs).
        speed: tempo factor from speed words (1.0 when none).
        direction: heading in degrees from a direction phrase, or None.
        path: ``"circle"`` or None.
        span: ``(start, end)`` characters in the prompt.
    """

    text: str
    verb: str
    head: str
    words: list[str] = field(default_factory=list)
    speed: float = 1.0
    direction: float | None = None
    path: str | None = None
    span: tuple[int, int] = (0, 0)


@dataclass
class Decomposition:
    """What :func:`decompose` reads from a prompt: people, actions in order, scene, notes."""

    prompt: str
    people: list[Person]
    actions: list[Action]
    scene: str
    notes: list[str] = field(default_factory=list)

    @property
    def action_text(self) -> str:
        """All actions as one phrase, joined by the words the prompt joins them with."""
        if not self.actions:
            return ""
        a, b = self.actions[0].span[0], self.actions[-1].span[1]
        whole = self.prompt[a:b]
        inside = " ".join(x.text for x in self.actions)
        # the prompt's own words when only connectives lie between the actions, else the actions joined
        gap = re.sub(r"\b(and|then|before|after|afterwards|while|followed|by)\b|[,;]", " ", whole)
        return whole if len(gap.split()) == len(inside.split()) else " and ".join(x.text for x in self.actions)


# ---- grammar ----------------------------------------------------------------------------------------------

def _match_phrase(toks: list[Token], i: int, phrase: str) -> int:
    """Number of tokens of ``phrase`` matched at ``toks[i:]`` (0 when it does not match)."""
    words = phrase.split()
    if i + len(words) > len(toks):
        return 0
    return len(words) if all(toks[i + k].low == w for k, w in enumerate(words)) else 0


def _conj_at(toks: list[Token], i: int) -> int:
    """Length of a sequence connective at ``i`` (``and``, ``then``, ``, then``, ``and then``), else 0."""
    n = 0
    if i < len(toks) and toks[i].low in (",", ";"):
        n = 1
    for c in _CONJ_SEQ:
        k = _match_phrase(toks, i + n, c)
        if k:
            return n + k
    return n


def _verb_candidate(toks: list[Token], i: int) -> bool:
    """True when ``toks[i]`` is a lexicon verb in a position a verb can take (not a noun modifier)."""
    w = toks[i].low
    if verb_lemma(w) is None or w in _MODIFIER_WORDS:
        return False
    prev = toks[i - 1].low if i > 0 else ""
    nxt = toks[i + 1].low if i + 1 < len(toks) else ""
    if prev in _DETERMINERS or prev in _NUMBERS or (prev in _PREPOSITIONS and prev not in ("to",)):
        return False  # "a dance", "two boxing gloves", "in running shoes"
    if is_person_noun(nxt) and not _is_plural_person(toks[i].text) and nxt not in ("he", "she"):
        # "a tango dancer", "a boxing coach": the word modifies the noun after it -- unless it is the verb
        # of a plural subject followed by its object ("two men push people"), which the caller decides
        return prev in _AUX
    return True


def _is_finite(word: str) -> bool:
    """A verb form that can head a clause alone (``walks``, ``sat``), not a participle (``holding``)."""
    w = word.lower()
    return not w.endswith(("ing", "ed")) or (w in _IRREGULAR and not w.endswith("ing"))


def _find_verb(toks: list[Token], start: int) -> int | None:
    """Index of the main verb: the first verb candidate after the people, skipping modifier participles
    (``a man holding a baby walks``: ``holding`` modifies, ``walks`` is the verb)."""
    cands = [i for i in range(start, len(toks)) if _verb_candidate(toks, i) and (i > start or i == 0)]
    if not cands:
        return None
    first = cands[0]
    if toks[first].low.endswith("ing") and first > 0 and toks[first - 1].low not in _AUX:
        # a participle right after a noun phrase is a modifier when a finite verb follows before any
        # connective ("a man holding a box walks"); otherwise it is the action ("a girl jumping")
        for j in cands[1:]:
            if _is_finite(toks[j].text) and _conj_at(toks, j - 1) == 0 and toks[j - 1].low not in ("to",):
                between = [t.low for t in toks[first:j]]
                if "," not in between and not any(p in between for p in (".", ";")):
                    return j
    return first


def _noun_phrases(toks: list[Token]) -> list[list[Token]]:
    """Split the people part into noun phrases at ``and`` / ``,`` where a new person starts."""
    pieces: list[list[Token]] = [[]]
    for t in toks:
        if t.low in (",", "and", "&") or t.low == "or":
            pieces.append([])
        else:
            pieces[-1].append(t)
    pieces = [p for p in pieces if p]
    out: list[list[Token]] = []
    for p in pieces:
        if out and _head(p) is None:
            out[-1] = out[-1] + p  # "a man in a white shirt and dark pants": the garments continue
        else:
            out.append(p)
    return out


def _head(np_toks: list[Token]) -> int | None:
    """Index of the person head of a noun phrase: the last person noun before its first modifier."""
    head = None
    for k, t in enumerate(np_toks):
        if t.low in _PREPOSITIONS or t.low in _MODIFIER_WORDS or (t.low in ("who", "that") and head is not None):
            if t.low == "of" and head is not None and np_toks[head].low in _GROUPS:
                continue  # "a group of dancers": the members follow
            break
        if is_person_noun(t.text):
            head = k
    return head


def _agentive(word: str) -> bool:
    """Nouns of agents outside the lexicon (``a plumber``, ``a violinist``) read as people when they act."""
    return bool(re.fullmatch(r"[a-z]{3,}(er|or|ist|ian|ant|ent)s?", word.lower()))


def _span_text(prompt: str, toks: list[Token]) -> str:
    return prompt[toks[0].start:toks[-1].end] if toks else ""


def _people_of(prompt: str, np_toks: list[Token], role: str, notes: list[str]) -> list[Person]:
    """One noun phrase -> its people (several for counts and group nouns)."""
    if not np_toks:
        return []
    span = (np_toks[0].start, np_toks[-1].end)
    low = [t.low for t in np_toks]
    text = _span_text(prompt, np_toks)
    # "a group of five dancers in red", "a couple of friends", "a pair of boxers", "two friends", "twins"
    k = 1 if low[0] in ("a", "an", "the") else 0
    count, member, rest_from = 1, None, None
    g = next((i for i in range(k, len(low)) if is_person_noun(low[i])), None)
    adjectives = [t.text for t in np_toks[k:g]] if g is not None and low[g] in _GROUPS else []
    if adjectives and low[g] not in _NUMBERS:
        k = g  # "an elderly couple": the adjectives go to each member
    if k < len(low) and low[k] in _GROUPS:
        count, member = _GROUPS[low[k]]
        member = " ".join(adjectives + [member])
        rest_from = k + 1
        if rest_from < len(low) and low[rest_from] == "of":
            rest_from += 1
            if rest_from < len(low) and (low[rest_from] in _NUMBERS or low[rest_from].isdigit()):
                count = int(low[rest_from]) if low[rest_from].isdigit() else _NUMBERS[low[rest_from]]
                rest_from += 1
            if rest_from < len(low) and is_person_noun(low[rest_from]) and low[rest_from] not in _GROUPS:
                member = None  # the member noun is written: keep it with its adjectives
    elif k < len(low) and (low[k] in _NUMBERS or low[k].isdigit()):
        n = int(low[k]) if low[k].isdigit() else _NUMBERS[low[k]]
        if n > 1 or low[k] == "one":
            count, rest_from = n, k + 1
    elif low[0] in ("twin",) or (len(low) > k and low[k] == "twin"):
        count, rest_from = 2, k + 1
    if count > 1 or rest_from is not None:
        count = min(count, _MAX_PEOPLE)
        if count == _MAX_PEOPLE:
            notes.append(f"{text!r}: more than {_MAX_PEOPLE} people is capped at {_MAX_PEOPLE}")
        words = [t.text for t in np_toks[rest_from or 0:]]
        if member is not None:
            desc = _singular_phrase([member] + words)
        else:
            desc = _singular_phrase(words)
        return [Person(desc, span, role) for _ in range(count)]
    return [Person(text, span, role)]


def _singular_phrase(words: list[str]) -> str:
    """``["tall", "dancers", "in", "red"]`` -> ``"a tall dancer in red"``."""
    out, done = [], False
    for w in words:
        if not done and is_person_noun(w):
            out.append(_person_singular(w) if _is_plural_person(w) else w)
            done = True
        else:
            out.append(w)
    phrase = " ".join(out)
    if not phrase:
        return "a person"
    return ("an " if phrase[0].lower() in "aeiou" else "a ") + phrase


def _classify_pp(toks: list[Token], i: int, end: int) -> str:
    """``"action"`` or ``"scene"`` for the phrase starting at preposition ``toks[i]`` (until ``end``)."""
    for ph in sorted(_ACTION_PHRASES, key=len, reverse=True):
        if _match_phrase(toks, i, ph):
            return "action"
    for ph, _ in DIRECTIONS:
        if _match_phrase(toks, i, ph):
            return "action"
    p = toks[i].low
    if p not in _ACTION_PREPS:
        return "scene"
    nouns = [lemma(t.text) for t in toks[i + 1:end] if t.low not in _DETERMINERS]
    if any(n in _PLACE_WORDS for n in nouns):
        return "scene"
    return "action"


def _phrase_end(toks: list[Token], i: int) -> int:
    """End (exclusive) of the phrase that starts at ``i``: the next preposition, connective or comma."""
    j = i + 1
    while j < len(toks):
        t = toks[j].low
        c = _conj_at(toks, j)
        if t in (",", ";", ".", "!", "?") or (t in _PREPOSITIONS and t not in ("up", "down")) or \
                (c and j + c < len(toks) and _verb_candidate(toks, j + c)):
            break
        j += 1
    return j


_PARTICLES = frozenset("up down around away back over off".split())


def _joined_text(prompt: str, toks: list[Token]) -> str:
    """The words of ``toks`` as written; pieces the prompt separates by other words are joined by a space."""
    parts, cur = [], [toks[0]]
    for a, b in zip(toks, toks[1:]):
        if prompt[a.end:b.start].strip():
            parts.append(cur)
            cur = [b]
        else:
            cur.append(b)
    parts.append(cur)
    return " ".join(_span_text(prompt, p) for p in parts)


def _make_action(prompt: str, toks: list[Token]) -> Action:
    text = _joined_text(prompt, toks)
    low = " ".join(t.low for t in toks)
    verb = verb_lemma(toks[0].text) or toks[0].low
    speed = 1.0
    for w, f in SPEED_WORDS.items():
        if re.search(rf"\b{re.escape(w)}\b", low):
            speed *= f
    direction = None
    for ph, deg in DIRECTIONS:
        if re.search(rf"\b{re.escape(ph)}\b", low):
            direction = deg
            break
    path = next((name for ph, name in PATHS.items() if re.search(rf"\b{re.escape(ph)}\b", low)), None)
    skip = (_DETERMINERS | _PREPOSITIONS | set(SPEED_WORDS) | {"and", "then", "each", "other", "camera", "viewer"}) \
        - _PARTICLES
    words = [lemma(t.text) for t in toks[1:] if t.low not in skip and t.text.isalpha() or "-" in t.text]
    words = [w for w in words if w not in skip]
    head = verb
    if verb in LIGHT_VERBS:
        acts = [w for w in words if w in VERBS and w not in LIGHT_VERBS]
        if acts:
            head = acts[0]
    return Action(text=text, verb=verb, head=head, words=words, speed=speed, direction=direction, path=path,
                  span=(toks[0].start, toks[-1].end))


def _object_people(prompt: str, toks: list[Token], notes: list[str]) -> tuple[list[Person], list[Token]]:
    """A person named right after the verb (``hugs a woman in red``) -> that person and the remaining words."""
    if len(toks) < 2:
        return [], toks
    j = 1
    while j < len(toks) and toks[j].low in ("up", "down", "around", "over"):
        j += 1
    k = j
    while k < len(toks) and (toks[k].low in _DETERMINERS or toks[k].low in _NUMBERS or toks[k].text.isalpha()
                             and not is_person_noun(toks[k].text) and toks[k].low not in _PREPOSITIONS
                             and toks[k].low not in ("and", "then") and verb_lemma(toks[k].text) is None
                             and k - j < 3):
        k += 1
    if j < len(toks) and (toks[j].low in _DETERMINERS or toks[j].low in _NUMBERS) and k < len(toks) \
            and is_person_noun(toks[k].text) and toks[k].low not in ("other", "another"):
        # the object noun phrase runs on through its modifiers ("a woman in a red dress")
        e = k + 1
        while e < len(toks):
            t = toks[e].low
            if t in (",", ";", ".") or t in ("and", "then") or t in SPEED_WORDS:
                break
            if t in _DETERMINERS and toks[e - 1].low not in _PREPOSITIONS and toks[e - 1].low != "wearing":
                break  # a second object starts: "gives her friend | a piggyback ride"
            if t in _PREPOSITIONS and t not in ("in", "with", "wearing") or t in _PREPOSITIONS and \
                    _classify_pp(toks, e, _phrase_end(toks, e)) == "scene" and t != "in":
                break
            if t == "in" and any(lemma(x.text) in _PLACE_WORDS for x in toks[e + 1:_phrase_end(toks, e)]):
                break
            e += 1
        return _people_of(prompt, toks[j:e], "object", notes), toks[:j] + toks[e:]
    return [], toks


def decompose(prompt: str) -> Decomposition:
    """Read a prompt into people, actions and scene.

    Args:
        prompt: free English text, e.g. ``"a boxer in red shorts throws punches at a bag in a gym"``.
    Returns:
        :class:`Decomposition`; ``people`` is empty (with a note) when the prompt names nobody, and a
        prompt with an action but no subject (``"dancing in the rain"``) gets one person with a note.
    """
    toks = tokenize(prompt)
    notes: list[str] = []
    scene_parts: list[tuple[int, int]] = []
    start = 0
    # a scene that leads ("In a gym, a boxer ...")
    if toks and toks[0].low in _PREPOSITIONS:
        comma = next((i for i, t in enumerate(toks) if t.low == ","), None)
        if comma is not None and comma + 1 < len(toks):
            scene_parts.append((toks[0].start, toks[comma - 1].end))
            start = comma + 1
    vi = _find_verb(toks, start)
    people_toks = toks[start:vi] if vi is not None else toks[start:]
    while people_toks and (people_toks[-1].low in _AUX or people_toks[-1].low in
                           ("who", "that", "both", "together", "all", ",", "also", "just", "now")):
        people_toks = people_toks[:-1]
    # adverbs before the verb ("a man slowly walks") belong to the action
    pre_adverbs: list[Token] = []
    while people_toks and (people_toks[-1].low in SPEED_WORDS or people_toks[-1].low.endswith("ly")
                           and not is_person_noun(people_toks[-1].text) and len(people_toks) > 1):
        pre_adverbs.insert(0, people_toks.pop())
    nps = _noun_phrases([t for t in people_toks if t.low not in (".", "!", "?")])
    people: list[Person] = []
    for np_toks in nps:
        h = _head(np_toks)
        last_noun = next((t for t in reversed(np_toks) if t.text.isalpha() and t.low not in _PREPOSITIONS), None)
        if h is not None:
            people += _people_of(prompt, np_toks, "subject", notes)
        elif vi is not None and any(_agentive(t.text) for t in np_toks[: len(np_toks)]) and \
                not any(t.low in _PLACE_WORDS for t in np_toks):
            people += _people_of(prompt, np_toks, "subject", notes)
            notes.append(f"{_span_text(prompt, np_toks)!r}: not a known person word; read as a person "
                         "because it acts")
        elif people:
            people[-1] = Person(prompt[people[-1].span[0]:np_toks[-1].end], (people[-1].span[0], np_toks[-1].end))
        elif last_noun is not None:
            notes.append(f"{_span_text(prompt, np_toks)!r}: names no person")
    actions: list[Action] = []
    if vi is not None:
        i = vi
        cur: list[Token] = list(pre_adverbs)
        in_scene: list[Token] = []

        def close_action():
            nonlocal cur
            if cur:
                objs, rest = _object_people(prompt, [t for t in cur if t not in pre_adverbs] or cur, notes)
                lead = [t for t in cur if t in pre_adverbs]
                people.extend(objs)
                actions.append(_make_action(prompt, rest) if not lead else _with_lead(prompt, lead, rest))
            cur = []

        def close_scene():
            nonlocal in_scene
            if in_scene:
                scene_parts.append((in_scene[0].start, in_scene[-1].end))
            in_scene = []

        while i < len(toks):
            t = toks[i]
            c = _conj_at(toks, i)
            if c and i + c < len(toks) and _verb_candidate(toks, i + c) and (cur or in_scene):
                close_action()
                close_scene()
                i += c
                continue
            if t.low in _AUX and not cur:
                i += 1
                continue
            if not cur and not in_scene and _verb_candidate(toks, i):
                cur = [t]
                i += 1
                continue
            if in_scene:
                if t.low not in (".", "!", "?"):
                    in_scene.append(t)
                i += 1
                continue
            fixed = max(_match_phrase(toks, i, ph) for ph in _ACTION_PHRASES)
            if fixed and cur:
                cur.extend(toks[i:i + fixed])  # "hand in hand", "back and forth", "in a circle"
                i += fixed
                continue
            if t.low in _PREPOSITIONS and not (t.low == "to" and i + 1 < len(toks)
                                               and verb_lemma(toks[i + 1].text) is not None):
                end = _phrase_end(toks, i)
                if t.low in ("in", "with") and any(is_person_noun(x.text) for x in cur[1:]) and \
                        not any(lemma(x.text) in _PLACE_WORDS for x in toks[i + 1:end]):
                    cur.extend(toks[i:end])  # the object person's clothes ("hugs a woman in a red dress")
                    i = end
                    continue
                if _classify_pp(toks, i, end) == "scene":
                    in_scene = list(toks[i:end])
                    i = end
                    continue
                # an action phrase may be longer than one preposition ("back and forth", "away from the camera")
                n = max([_match_phrase(toks, i, ph) for ph in list(_ACTION_PHRASES) + [d for d, _ in DIRECTIONS]]
                        + [end - i])
                cur.extend(toks[i:i + n])
                i += n
                continue
            if t.low in (",", ";"):
                # ", at sunset" after the action: what follows is scene unless it is another action
                i += 1
                if i < len(toks) and toks[i].low in _PREPOSITIONS:
                    end = _phrase_end(toks, i)
                    if _classify_pp(toks, i, end) == "scene":
                        close_action()
                        in_scene = list(toks[i:end])
                        i = end
                continue
            if t.low in (".", "!", "?"):
                i += 1
                continue
            if cur:
                cur.append(t)
            i += 1
        close_action()
        close_scene()
    if not people and actions and any(t.text.isalpha() for np_toks in nps for t in np_toks):
        # something that is not a person acts ("a flag waves in the wind"): nobody to animate
        actions = []
        notes.append("the prompt names nobody: no people, no action")
    elif not people and actions:
        people = [Person("a person", (0, 0))]
        notes.append("no person named: one person does the action")
    elif not people:
        notes.append("the prompt names nobody: no people, no action")
    elif not actions:
        notes.append("no action verb found: the people stand idle")
    scene = " ".join(prompt[a:b] for a, b in scene_parts).strip(" ,.")
    if not people and not scene:
        scene = prompt.strip(" .")
    elif not people and toks:
        scene = prompt.strip(" .")
    return Decomposition(prompt=prompt, people=people, actions=actions, scene=scene, notes=notes)


def _with_lead(prompt: str, lead: list[Token], rest: list[Token]) -> Action:
    """An action whose speed word comes before its verb (``slowly walks``)."""
    a = _make_action(prompt, rest)
    for t in lead:
        a.speed *= SPEED_WORDS.get(t.low, 1.0)
    a.text = prompt[lead[0].start:rest[-1].end] if rest else a.text
    a.span = (lead[0].start, a.span[1])
    return a


def read_action(text: str) -> Action:
    """One action phrase as a parser (rules or a language model) hands it over: ``"jumps to dunk"``.

    The phrase starts at its first verb; words before it (``"slowly walks"``) are read as adverbs.
    """
    toks = [t for t in tokenize(text) if t.low not in (".", "!", "?")]
    if not toks:
        return Action(text="", verb="", head="", span=(0, 0))
    vi = next((i for i, t in enumerate(toks) if verb_lemma(t.text) is not None and t.low not in _AUX), 0)
    lead = [t for t in toks[:vi] if t.low in SPEED_WORDS or t.low.endswith("ly")]
    return _with_lead(text, lead, toks[vi:]) if lead else _make_action(text, toks[vi:])


def _check_lexicon():
    """Import-time check: every derived form maps back into the lexicon (a typo would drop a verb)."""
    bad = [w for w, v in _VERB_FORMS.items() if v not in VERBS]
    if bad:  # pragma: no cover - a lexicon edit error
        raise RuntimeError(f"verb forms outside the lexicon: {bad[:5]}")


_check_lexicon()
