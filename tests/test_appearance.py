import warnings

import pytest

from avatars.appearance import color_from_words, parse_appearance

PAPER_WOMAN = ("A woman wearing a bright yellow dress with a fitted bodice and a flared skirt, sleeveless, "
               "flowing just above her knees")
PAPER_MAN = "A man wearing a white dress shirt and dark pants"


def hue_is(rgb, name):
    r, g, b = rgb
    return {"yellow": r > 0.8 and g > 0.7 and b < 0.35, "white": min(rgb) > 0.9,
            "dark": max(rgb) < 0.35, "blue": b > r and b > g}[name]


def test_paper_prompts():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = parse_appearance(PAPER_WOMAN)
    assert w.gender == "female" and w.hair_length == "long"
    d = w.garments["dress"]
    assert hue_is(d.color, "yellow") and d.sleeves == "none" and d.length == "above_knee"
    assert "top" not in w.garments and "bottom" not in w.garments
    m = parse_appearance(PAPER_MAN)
    assert m.gender == "male" and m.hair_length == "short"
    assert m.garments["top"].name == "dress shirt" and hue_is(m.garments["top"].color, "white")
    assert m.garments["top"].sleeves == "long" and "dress" not in m.garments
    assert hue_is(m.garments["bottom"].color, "dark") and m.garments["bottom"].length == "ankle"
    assert "shoes" in m.garments


def test_colours_and_modifiers():
    assert color_from_words(["red"]) == (1.0, 0.0, 0.0)
    assert color_from_words(["light", "blue"]) == pytest.approx((173 / 255, 216 / 255, 230 / 255))  # CSS lightblue
    dark_green = color_from_words(["dark", "green"])
    assert max(dark_green) < 0.45 and dark_green[1] == max(dark_green)
    bright = color_from_words(["bright", "yellow"])
    assert hue_is(bright, "yellow")
    assert color_from_words(["dark"]) is not None and max(color_from_words(["dark"])) < 0.35
    assert color_from_words(["wearing"]) is None


def test_sleeves_hems_hair_and_defaults():
    a = parse_appearance("a girl with long blonde hair in a light blue t-shirt, denim shorts and white sneakers")
    assert a.hair_length == "long" and a.hair_color[0] > 0.8
    assert a.garments["top"].sleeves == "short" and hue_is(a.garments["top"].color, "blue")
    assert a.garments["bottom"].name == "shorts" and a.garments["shoes"].name == "sneakers"
    b = parse_appearance("a short-sleeved red shirt and a black mini skirt, a bald man", seed=3)
    assert b.garments["top"].sleeves == "short" and b.garments["bottom"].length == "mini"
    assert b.hair_length == "bald"
    c = parse_appearance("a man")  # nothing said: still dressed
    assert {"top", "bottom", "shoes"} <= set(c.garments)


def test_seed_picks_what_the_text_leaves_open_and_nothing_else():
    runs = {seed: parse_appearance("a person", seed=seed) for seed in range(8)}
    assert parse_appearance("a person", seed=5) == runs[5]  # the same seed gives the same appearance
    # skin, hair colour and the unnamed top's colour are left open: the seed varies them
    assert len({(a.skin, a.hair_color, a.garments["top"].color) for a in runs.values()}) >= 4
    # what the text names does not move with the seed
    named = [parse_appearance("a man with short black hair in a red t-shirt and blue jeans", seed=s) for s in range(8)]
    said = {(a.garments["top"].color, a.garments["bottom"].color, a.hair_color, a.hair_length) for a in named}
    assert said == {((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 0.0, 0.0), "short")}


def test_unknown_words_warn_once_and_are_listed():
    with pytest.warns(UserWarning, match="zorblax") as rec:
        a = parse_appearance("a man in a zorblax shirt")
    assert len(rec) == 1 and a.unknown_words == ["zorblax"] and a.garments["top"].name == "shirt"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parse_appearance("a man in a zorblax shirt", warn=False).unknown_words == ["zorblax"]


def test_colour_names_of_garments_and_the_old_spelling():
    from avatars.appearance import color_name, colour_name

    assert color_name is colour_name
    assert [colour_name(c) for c in [(1.0, 0.95, 0.2), (0.1, 0.1, 0.35), (0.97, 0.97, 0.97), (0.05, 0.03, 0.02)]] == \
        ["yellow", "navy", "white", "black"]
    man = parse_appearance("a man wearing a white dress shirt and dark pants, bald")
    assert man.describe().startswith("a man wearing a white dress shirt") and "no hair" in man.describe()
