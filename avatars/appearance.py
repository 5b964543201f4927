"""Appearance from text: garments, colours, hair and skin parsed from a caption.

``parse_appearance("a woman wearing a bright yellow dress, sleeveless, flowing just above her knees")``
returns an :class:`Appearance`: which garments cover which parts of the body, their colours (CSS colour names
with the modifiers dark, light, bright, pale, deep), sleeve and hem lengths, hair length and colour, skin tone.
The Gaussian avatar (``avatars/gaussians.py``) turns it into coloured, offset Gaussians on the body surface.

Parsing is rule-based and deterministic for a given seed (the seed picks colours the text leaves open);
words it does not know are reported in one warning and otherwise ignored.
"""

from __future__ import annotations

import colorsys
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import ImageColor

__all__ = ["Garment", "Appearance", "parse_appearance", "color_from_words", "colour_name", "color_name",
           "SKIN_TONES", "HAIR_COLORS"]

RGB = tuple[float, float, float]

# garment word -> (slot, canonical name, default sleeves, default length)
# slots: top, bottom, dress (covers top and bottom), outer (over the top), shoes
_GARMENTS: dict[str, tuple[str, str, str, str]] = {
    "dress shirt": ("top", "dress shirt", "long", ""),
    "button-down": ("top", "dress shirt", "long", ""),
    "button down": ("top", "dress shirt", "long", ""),
    "t-shirt": ("top", "t-shirt", "short", ""),
    "t shirt": ("top", "t-shirt", "short", ""),
    "tshirt": ("top", "t-shirt", "short", ""),
    "tee": ("top", "t-shirt", "short", ""),
    "tank top": ("top", "tank top", "none", ""),
    "polo": ("top", "polo shirt", "short", ""),
    "shirt": ("top", "shirt", "long", ""),
    "blouse": ("top", "blouse", "long", ""),
    "top": ("top", "top", "short", ""),
    "sweater": ("top", "sweater", "long", ""),
    "jumper": ("top", "sweater", "long", ""),
    "hoodie": ("top", "hoodie", "long", ""),
    "sweatshirt": ("top", "sweatshirt", "long", ""),
    "jacket": ("outer", "jacket", "long", ""),
    "coat": ("outer", "coat", "long", "hip"),
    "blazer": ("outer", "blazer", "long", ""),
    "suit": ("outer", "suit", "long", ""),
    "vest": ("outer", "vest", "none", ""),
    "dress": ("dress", "dress", "short", "knee"),
    "gown": ("dress", "gown", "none", "long"),
    "sundress": ("dress", "sundress", "none", "above_knee"),
    "skirt": ("bottom", "skirt", "", "knee"),
    "miniskirt": ("bottom", "skirt", "", "mini"),
    "pants": ("bottom", "pants", "", "ankle"),
    "trousers": ("bottom", "trousers", "", "ankle"),
    "slacks": ("bottom", "trousers", "", "ankle"),
    "jeans": ("bottom", "jeans", "", "ankle"),
    "leggings": ("bottom", "leggings", "", "ankle"),
    "shorts": ("bottom", "shorts", "", "thigh"),
    "shoes": ("shoes", "shoes", "", ""),
    "shoe": ("shoes", "shoes", "", ""),
    "sneakers": ("shoes", "sneakers", "", ""),
    "trainers": ("shoes", "sneakers", "", ""),
    "boots": ("shoes", "boots", "", ""),
    "sandals": ("shoes", "sandals", "", ""),
    "heels": ("shoes", "heels", "", ""),
    "loafers": ("shoes", "shoes", "", ""),
}

# colours a garment takes when the text names none (jeans are denim, dress shirts white...)
_GARMENT_DEFAULT_COLORS = {
    "jeans": "#3b5a8a", "dress shirt": "white", "suit": "#23262e", "trousers": "#3a3a3f", "pants": "#3a3a3f",
    "leggings": "black", "shoes": "#2d2521", "boots": "#3d2b1f", "sneakers": "white", "heels": "black",
    "sandals": "#8b6b4a", "blazer": "#2b2f3a", "coat": "#6b5a48",
}

_EXTRA_COLORS = {
    "blonde": "#e6c98a", "blond": "#e6c98a", "brunette": "#4a2f1f", "auburn": "#8a3b1e", "ginger": "#b5541c",
    "denim": "#3b5a8a", "burgundy": "#800020", "maroon": "#800000", "cream": "#fffdd0", "mustard": "#e1ad01",
    "charcoal": "#36454f", "rust": "#b7410e", "emerald": "#50c878", "mint": "#98ff98", "lilac": "#c8a2c8",
    "camel": "#c19a6b", "neon": "#39ff14", "golden": "#ffd700", "scarlet": "#ff2400", "ivory": "#fffff0",
    "grey": "#808080", "gray": "#808080",
}

_MODIFIERS = {"dark", "light", "bright", "pale", "deep", "pastel", "vivid", "neon"}

_SLEEVES = {"sleeveless": "none", "strapless": "none", "short-sleeved": "short", "short sleeves": "short",
            "short sleeve": "short", "long-sleeved": "long", "long sleeves": "long", "long sleeve": "long"}
_HEMS = {"knee-length": "knee", "mini": "mini", "maxi": "long", "midi": "midi", "floor-length": "long",
         "ankle-length": "long"}

_FEMALE = {"woman", "women", "girl", "lady", "female", "she", "her", "mother", "bride", "ballerina"}
_MALE = {"man", "men", "boy", "guy", "male", "he", "his", "him", "father", "gentleman", "groom"}

#: Skin tones (sRGB in [0,1]) from light to dark; the seed picks one unless the text says.
SKIN_TONES: list[RGB] = [(0.96, 0.80, 0.69), (0.91, 0.72, 0.58), (0.80, 0.60, 0.46), (0.63, 0.44, 0.32),
                         (0.45, 0.30, 0.21)]
#: Hair colours the seed picks from when the text names none.
HAIR_COLORS: list[RGB] = [(0.10, 0.07, 0.05), (0.23, 0.15, 0.09), (0.40, 0.27, 0.16), (0.70, 0.56, 0.36)]

_FILLER = set("""a an the and or with wearing wears wear dressed in on of at is are who that which this its it
her his their them they she he to just very slightly quite rather some pair pairs piece outfit clothes clothing
also plus while bodice flared pleated as by for from over under above below around flowing her knees knee hem length style styled
fitted loose tight casual formal simple plain elegant little small big large tall short long person people
standing walking has having hair skin skinned shoulder shoulders sleeve sleeves sleeved matching colored
coloured color colour tone toned""".split())


@dataclass
class Garment:
    """One garment: its slot on the body, colour (sRGB in [0,1]), sleeves and hem length.

    ``slot`` is ``top``, ``bottom``, ``dress``, ``outer`` or ``shoes``; ``sleeves`` is ``none``, ``short``
    or ``long`` (tops, dresses, outer); ``length`` is ``mini``, ``thigh``, ``above_knee``, ``knee``, ``midi``,
    ``ankle`` or ``long`` (bottoms and dresses).
    """

    slot: str
    name: str
    color: RGB
    sleeves: str = ""
    length: str = ""


@dataclass
class Appearance:
    """A parsed appearance. ``garments`` maps a slot to its :class:`Garment`."""

    text: str
    gender: str = "neutral"  # female | male | neutral
    skin: RGB = SKIN_TONES[1]
    hair_color: RGB = HAIR_COLORS[1]
    hair_length: str = "short"  # bald | short | shoulder | long
    garments: dict[str, Garment] = field(default_factory=dict)
    unknown_words: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """A short canonical caption of what was understood, e.g. for logs and contact-sheet labels."""
        who = {"female": "a woman", "male": "a man"}.get(self.gender, "a person")
        parts = []
        for slot in ("dress", "top", "outer", "bottom", "shoes"):
            g = self.garments.get(slot)
            if g is not None:
                parts.append(f"a {colour_name(g.color)} {g.name}")
        hair = "no hair" if self.hair_length == "bald" else f"{self.hair_length} {colour_name(self.hair_color)} hair"
        return f"{who} wearing " + (", ".join(parts) if parts else "plain clothes") + f", {hair}"


def _hex(c: str) -> RGB:
    r, g, b = ImageColor.getrgb(c)[:3]
    return (r / 255.0, g / 255.0, b / 255.0)


def _apply_modifier(rgb: RGB, mod: str) -> RGB:
    h, l, s = colorsys.rgb_to_hls(*rgb)
    if mod == "dark" or mod == "deep":
        l *= 0.55 if mod == "dark" else 0.7
        s = min(1.0, s * 1.1)
    elif mod == "light" or mod == "pale" or mod == "pastel":
        l = l + (1 - l) * (0.45 if mod == "light" else 0.6)
        s *= 0.8 if mod == "light" else 0.6
    elif mod in ("bright", "vivid", "neon"):
        s = min(1.0, s * 1.3 + 0.1)
        l = min(0.6, max(l, 0.5))
    return colorsys.hls_to_rgb(h, l, s)


def color_from_words(words: list[str]) -> RGB | None:
    """sRGB in [0,1] for a colour phrase such as ``["bright", "yellow"]`` or ``["navy", "blue"]``.

    CSS colour names (``lightblue``, ``darkgreen``...) are matched first, joined or as separate words; the
    modifiers dark, light, bright, pale, deep, pastel, vivid adjust lightness and saturation. A modifier
    alone (``dark pants``) gives a dark grey, ``light`` a light grey. ``None`` when no colour is named.
    """
    words = [w.lower() for w in words]
    mods = [w for w in words if w in _MODIFIERS]
    names = [w for w in words if w not in _MODIFIERS]
    joined = "".join(words)
    if joined in ImageColor.colormap and len(words) > 1:
        return _hex(joined)
    base: RGB | None = None
    if names:
        # the last name is the hue ("navy blue" -> navy wins as the more specific when it is a CSS name)
        for n in names:
            if n in ImageColor.colormap or n in _EXTRA_COLORS:
                base = _hex(_EXTRA_COLORS.get(n, n))
                break
    if base is None:
        if not mods:
            return None
        base = (0.5, 0.5, 0.5)
    for m in mods:
        base = _apply_modifier(base, m)
    return tuple(float(np.clip(v, 0, 1)) for v in base)


def colour_name(rgb: RGB) -> str:
    """The nearest basic colour name of an sRGB triple in [0,1] (for captions and labels).

    Spelled as :func:`reconstruction.caption.colour_name` (which names the dominant colour of image
    pixels); ``color_name`` is the same function under its former name.
    """
    basic = {"black": (0, 0, 0), "white": (1, 1, 1), "gray": (0.5, 0.5, 0.5), "red": (0.85, 0.1, 0.1),
             "orange": (1, 0.55, 0), "yellow": (1, 0.9, 0.1), "green": (0.1, 0.6, 0.2), "blue": (0.15, 0.3, 0.8),
             "navy": (0.1, 0.12, 0.35), "purple": (0.5, 0.2, 0.6), "pink": (1, 0.6, 0.75), "brown": (0.45, 0.3, 0.2),
             "beige": (0.9, 0.85, 0.7), "light blue": (0.6, 0.8, 0.95), "dark gray": (0.22, 0.22, 0.25)}
    a = np.asarray(rgb)
    return min(basic, key=lambda k: float(((np.asarray(basic[k]) - a) ** 2).sum()))


color_name = colour_name


_TOKEN = re.compile(r"[a-z]+(?:-[a-z]+)*")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("t shirt", "t-shirt"))


def _is_color_word(w: str) -> bool:
    return w in ImageColor.colormap or w in _EXTRA_COLORS or w in _MODIFIERS


# Pass 1 of the parser: rules that label the token at position i, tried in order; each returns
# (kind, value, tokens consumed) or None. A token no rule takes is filler or an unknown word.
_KNEE_WORDS = {"knee", "knees", "ankle", "ankles", "floor"}
_HAIR_LENGTH_WORDS = {"long": "long", "short": "short", "shoulder-length": "shoulder", "cropped": "short",
                      "buzzed": "short"}
_LONG_HAIR_STYLES = {"ponytail", "braid", "braids", "bun"}
_HAIR_COLOR_WORDS = {"blonde": "blonde", "blond": "blond", "brunette": "brunette", "redhead": "ginger"}
_SKIN_PHRASES = {  # (word, next word or None) -> skin tone index
    ("dark-skinned", None): 4, ("dark", "skin"): 4, ("dark", "skinned"): 4, ("brown", "skin"): 4,
    ("brown", "skinned"): 4, ("black", "skin"): 4, ("black", "skinned"): 4, ("pale", "skin"): 0,
    ("pale", "skinned"): 0, ("pale", "complexion"): 0, ("fair", "skin"): 0, ("fair", "skinned"): 0,
    ("fair", "complexion"): 0, ("light", "skin"): 0, ("light", "skinned"): 0, ("light", "complexion"): 0,
    ("tanned", None): 2, ("olive", None): 2,
}


def _phrase_rule(kind: str, table: dict):
    """A rule matching a two-word then a one-word key of ``table`` (value ``table[key]``, or the key)."""
    def rule(w, nxt, near):
        for key, n in ((f"{w} {nxt}", 2), (w, 1)):
            if key in table:
                return kind, (key if kind == "garment" else table[key]), n
        return None
    return rule


def _hem_phrase(w, nxt, near):
    if w in ("above", "below", "to") and _KNEE_WORDS & set(near):
        knee = "knee" in near or "knees" in near
        return "hem", {("above", True): "above_knee", ("below", True): "midi", ("to", True): "knee",
                       ("above", False): "midi"}.get((w, knee), "long"), 1
    return None


def _hair_rule(w, nxt, near):
    if w in _HAIR_LENGTH_WORDS and "hair" in near[:3]:
        return "hair_length", _HAIR_LENGTH_WORDS[w], 1
    if w in _LONG_HAIR_STYLES:
        return "hair_length", "long", 1
    if w == "bald":
        return "hair_length", "bald", 1
    if w in _HAIR_COLOR_WORDS:
        return "hair_color", _hex(_EXTRA_COLORS[_HAIR_COLOR_WORDS[w]]), 1
    if w == "hair":
        return "hair", None, 1
    return None


def _skin_rule(w, nxt, near):
    for key, n in (((w, nxt), 2), ((w, None), 1)):
        if key in _SKIN_PHRASES:
            return "skin", SKIN_TONES[_SKIN_PHRASES[key]], n
    return None


_RULES = (_phrase_rule("garment", _GARMENTS), _phrase_rule("sleeves", _SLEEVES), _phrase_rule("hem", _HEMS),
          _hem_phrase, _hair_rule, _skin_rule,
          lambda w, nxt, near: ("color", w, 1) if _is_color_word(w) else None)


def _label(toks: list[str]) -> list[tuple[str, object]]:
    """Pass 1: ``(kind, value)`` items for the tokens, by the first rule of :data:`_RULES` that applies."""
    items, i = [], 0
    while i < len(toks):
        w, nxt = toks[i], toks[i + 1] if i + 1 < len(toks) else ""
        hit = next((h for h in (rule(w, nxt, toks[i + 1:i + 4]) for rule in _RULES) if h is not None), None)
        if hit is not None:
            items.append(hit[:2])
            i += hit[2]
            continue
        if w not in _FILLER and w not in _FEMALE and w not in _MALE:
            items.append(("unknown", w))
        i += 1
    return items


class _Dresser:
    """Pass 2: builds the garments of ``app`` from the labelled items, one handler per kind. Colours
    attach forward to the next garment (or hair); sleeves and hems go to the nearest fitting garment."""

    def __init__(self, app: Appearance, rng: np.random.Generator):
        self.app, self.rng = app, rng
        self.made: dict[int, Garment] = {}  # item index -> the garment it made or belongs to
        self.pending: list[str] = []

    def color(self, idx, val):
        self.pending.append(val)

    def garment(self, idx, val):
        app = self.app
        slot, name, sleeves, length = _GARMENTS[val]
        if slot == "bottom" and name == "skirt" and "dress" in app.garments:
            self.made[idx] = app.garments["dress"]  # "a dress with a flared skirt": the dress's own skirt
            self.pending = []
            return
        color = color_from_words(self.pending)
        if color is None:
            default = _GARMENT_DEFAULT_COLORS.get(name)
            color = _hex(default) if default else _random_color(self.rng)
        g = Garment(slot, name, color, sleeves, length)
        self.made[idx] = g
        app.garments[slot] = g
        if name == "suit" and "bottom" not in app.garments:
            app.garments["bottom"] = Garment("bottom", "trousers", color, "", "ankle")
        self.pending = []

    def hair(self, idx, val):
        col = color_from_words(self.pending)
        if col is not None:
            self.app.hair_color = col
        self.pending = []

    def hair_color(self, idx, val):
        self.app.hair_color = val

    def hair_length(self, idx, val):
        self.app.hair_length = val

    def skin(self, idx, val):
        self.app.skin = val

    def unknown(self, idx, val):
        self.pending = []

    def sleeves(self, idx, val):  # placed after every garment exists (see fit)
        pass

    hem = sleeves

    def fit(self, items: list[tuple[str, object]]) -> None:
        """Sleeves to the nearest top, dress or outer garment, hems to the nearest dress or bottom (the
        previous one, else the next)."""
        for idx, (kind, val) in enumerate(items):
            if kind not in ("sleeves", "hem"):
                continue
            slots = ("top", "dress", "outer") if kind == "sleeves" else ("dress", "bottom")
            fits = [j for j, g in self.made.items() if g.slot in slots]
            before, after = [j for j in fits if j < idx], [j for j in fits if j > idx]
            pick = before[-1] if before else after[0] if after else None
            if pick is not None:
                setattr(self.made[pick], "sleeves" if kind == "sleeves" else "length", val)


def parse_appearance(text: str, seed: int = 0, warn: bool = True) -> Appearance:
    """Parse an appearance caption into an :class:`Appearance`.

    Colour words attach to the garment noun that follows them ("a white dress shirt and dark pants");
    "sleeveless", "short sleeves", "long-sleeved" set the sleeves of the nearest top or dress (the previous
    one, else the next); "above her knees", "knee-length", "mini", "maxi", "floor-length" set the hem of the
    nearest dress or bottom; "long/short <colour> hair", "bald", "blonde" set the hair; "dark-skinned",
    "pale skin", "tanned" the skin. Garments the text leaves out get defaults (a top and trousers unless a
    dress covers both; shoes). Unknown words are ignored with one warning.

    Args:
        text: the caption (English).
        seed: picks skin tone, hair colour and unnamed garment colours deterministically.
        warn: emit a ``UserWarning`` listing the words that were not understood.
    """
    rng = np.random.default_rng(seed)
    toks = _tokens(text)
    app = Appearance(text=text)
    votes = sum(1 if t in _FEMALE else -1 if t in _MALE else 0 for t in toks)
    app.gender = "female" if votes > 0 else "male" if votes < 0 else "neutral"
    app.skin = SKIN_TONES[int(rng.integers(0, 3))]
    app.hair_color = HAIR_COLORS[int(rng.integers(0, len(HAIR_COLORS)))]
    app.hair_length = {"female": "long", "male": "short"}.get(app.gender, "short")

    items = _label(toks)
    dresser = _Dresser(app, rng)
    for idx, (kind, val) in enumerate(items):
        getattr(dresser, kind)(idx, val)
    dresser.fit(items)

    _fill_defaults(app, rng)
    app.unknown_words = [v for k, v in items if k == "unknown"]
    if app.unknown_words and warn:
        warnings.warn(f"appearance {text!r}: ignored unknown words {', '.join(sorted(set(app.unknown_words)))}",
                      stacklevel=2)
    return app


def _random_color(rng: np.random.Generator) -> RGB:
    h = float(rng.uniform(0, 1))
    return tuple(float(v) for v in colorsys.hls_to_rgb(h, float(rng.uniform(0.35, 0.6)), float(rng.uniform(0.5, 0.9))))


def _fill_defaults(app: Appearance, rng: np.random.Generator) -> None:
    """Cover the body: a top and a bottom unless a dress covers both; shoes always."""
    gs = app.garments
    if "dress" not in gs:
        if "top" not in gs and "outer" not in gs:
            gs["top"] = Garment("top", "t-shirt", _random_color(rng), "short", "")
        if "bottom" not in gs:
            gs["bottom"] = Garment("bottom", "trousers", _hex(_GARMENT_DEFAULT_COLORS["trousers"]), "", "ankle")
    if "outer" in gs and "top" not in gs:
        o = gs["outer"]
        gs["top"] = Garment("top", "shirt", _hex("white"), o.sleeves, "")
    if "shoes" not in gs:
        gs["shoes"] = Garment("shoes", "shoes", _hex(_GARMENT_DEFAULT_COLORS["shoes"]), "", "")
