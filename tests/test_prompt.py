"""The front door: prompts decomposed by grammar, actions matched to motions by meaning, the config wiring."""

import doctest
import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from amg.prompt import ParsedPrompt, PromptParser, RuleBasedPromptParser
from avatars import motion_library as ml
from avatars.prompt_grammar import Action, decompose, read_action, verb_lemma
from avatars.text_to_motion import EmbeddingMatcher, LexiconMatcher, LibraryTextToMotion
from prompt_eval import DATA, evaluate, load_cases
from render.errors import AmgError

CONF = str(Path(__file__).resolve().parents[1] / "conf")
HELD_OUT = DATA.with_name("prompts_heldout.yaml")


def test_default_prompt_decomposes_into_two_people_action_scene():
    p = RuleBasedPromptParser().parse(
        "a woman in a yellow dress and a man in a white shirt dance in a park at sunset")
    assert p.people == ["a woman in a yellow dress", "a man in a white shirt"]
    assert p.action == "dance" and p.scene == "in a park at sunset"


def test_counts_adverbs_and_garment_conjunctions():
    parser = RuleBasedPromptParser()
    p = parser.parse("two people box slowly in a gym")
    assert len(p.people) == 2 and p.action == "box slowly" and p.scene == "in a gym"
    p = parser.parse("A man wearing a white dress shirt and dark pants is walking on a beach")
    assert p.people == ["A man wearing a white dress shirt and dark pants"]
    assert p.action == "walking" and p.scene == "on a beach"
    p = parser.parse("a woman, a man and a child wave on a street")
    assert p.people == ["a woman", "a man", "a child"]


def test_no_verb_means_idle_with_a_note():
    p = RuleBasedPromptParser().parse("an astronaut")
    assert p.people == ["an astronaut"] and p.action == "" and p.notes


@pytest.mark.parametrize("module", ["amg.prompt", "avatars.prompt_grammar", "avatars.text_to_motion"])
def test_docstring_examples_are_the_real_output(module):
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_the_issue_table_decomposes_and_no_action_falls_back_to_idle():
    cases = [c for c in load_cases() if c.get("issue")]
    assert len(cases) >= 9
    scores = evaluate(cases)
    for field_name, wrong in scores.wrong.items():
        assert not wrong, f"{field_name}: {wrong}"
    t2m = LibraryTextToMotion()
    for c in cases:
        p = RuleBasedPromptParser().parse(c["prompt"])
        if p.people:
            assert all(ch.motion != "idle" and ch.matched and not ch.weak
                       for ch in t2m.plan(p.actions, len(p.people)).choices), c["prompt"]


@pytest.mark.parametrize("path", [DATA, HELD_OUT], ids=["tuned", "held_out"])
def test_evaluation_set_meets_its_goals(path):
    cases = load_cases(path)
    scores = evaluate(cases)
    assert scores.n >= (100 if path == DATA else 30)
    assert scores.accuracy("people_count") >= 0.95, scores.wrong["people_count"]
    assert scores.accuracy("appearance") >= 0.95, scores.wrong["appearance"]
    assert scores.accuracy("motions") >= 0.90, scores.wrong["motions"]
    assert scores.accuracy("scene") >= 0.85, scores.wrong["scene"]


def test_evaluation_scoring_catches_a_wrong_parser():
    """The scoring is not vacuous: a parser that reads everyone as one person fails it."""

    class OnePerson(PromptParser):
        def parse(self, prompt):
            p = RuleBasedPromptParser().parse(prompt)
            return ParsedPrompt(p.prompt, p.people[:1], p.action, p.scene, actions=p.actions)

    scores = evaluate(load_cases(), parser=OnePerson())
    assert scores.accuracy("people_count") < 0.9


def test_one_vocabulary_for_apps_and_motion_library():
    """motion_library.parse_text reads prompts with the same grammar as amg.prompt."""
    for case in load_cases()[:40]:
        p = RuleBasedPromptParser().parse(case["prompt"])
        if p.people:
            assert ml.parse_text(case["prompt"])["num_people"] == len(p.people), case["prompt"]


def test_grammar_details():
    d = decompose("a group of five dancers in red spin quickly in a circle at a festival")
    assert [p.text for p in d.people] == ["a dancer in red"] * 5
    (a,) = d.actions
    assert a.path == "circle" and a.speed == pytest.approx(1.5) and d.scene == "at a festival"
    d = decompose("a man hugs a woman in a green coat in the snow")
    assert [(p.text, p.role) for p in d.people] == [("a man", "subject"), ("a woman in a green coat", "object")]
    assert d.scene == "in the snow"
    d = decompose("a runner slowly walks away from the camera, then sits down")
    assert [a.verb for a in d.actions] == ["walk", "sit"]
    assert d.actions[0].direction == 180.0 and d.actions[0].speed == pytest.approx(0.6)
    # a verb in a noun's place is not a verb
    d = decompose("a boxing coach in running shoes waves")
    assert [p.text for p in d.people] == ["a boxing coach in running shoes"] and d.actions[0].verb == "wave"
    assert verb_lemma("punches") == "punch" and verb_lemma("sat") == "sit" and verb_lemma("waltzes") == "waltz"
    assert read_action("slowly walks towards the camera").speed == pytest.approx(0.6)
    # a prompt that names nobody, and a thing that acts, give no people and the whole text as the scene
    for text in ("a sunset over the sea", "a flag waves in the wind"):
        d = decompose(text)
        assert d.people == [] and d.actions == [] and d.scene == text and d.notes


def test_matcher_reads_meaning_not_keywords():
    t2m = LibraryTextToMotion()
    choose = lambda text, n=1: t2m.choose(text, n).motion  # noqa: E731
    assert choose("throws punches at a bag") == "box"  # the light verb's object is the action
    assert choose("throws a ball") == "throw"
    assert choose("strolls along") == "walk" and choose("embrace", 2) == "hug"
    assert choose("gives each other a high five", 2) == "high_five"
    assert choose("dance tango", 2) == "lead_follow" and choose("dance", 2) == "dance_pair"
    assert choose("hug", 1) != "hug"  # an interaction needs two people
    c = t2m.choose("juggles three balls", 1)
    assert c.motion == "idle" and not c.matched and c.weak
    plan = t2m.plan(["juggles three balls"], 1)
    assert any("juggles" in n and "idle" in n for n in plan.notes)
    # the scores are the matcher's: a stricter threshold turns a match into a weak one
    strict = LibraryTextToMotion(LexiconMatcher(weak_below=2.0))
    assert strict.choose("kicks a ball", 1).weak and strict.choose("kicks a ball", 1).motion == "kick"


def test_every_library_motion_has_a_description_that_finds_it():
    t2m = LibraryTextToMotion()
    pairs = set(ml.interactions())
    for name in ml.names():
        text = ml.describe(name)
        assert len(text.split()) >= 4, name
        got = t2m.choose(read_action(text), 2 if name in pairs else 1).motion
        assert got == name, (name, got)


def _tiny_bert(tmp_path):
    """A random 1-layer BERT and a word-level vocab over the motion descriptions, saved as a model folder."""
    from transformers import BertConfig, BertModel, BertTokenizer

    words = sorted({w.strip(",.;:()").lower() for n in ml.names() for w in ml.describe(n).split()} - {""})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words)}
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(words) + 5, hidden_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=64, max_position_embeddings=128))
    folder = tmp_path / "bert"
    model.save_pretrained(folder)
    tok = BertTokenizer(vocab=vocab)  # transformers 5 reads the vocabulary as a dict, not a file
    assert tok("kicking a ball")["input_ids"][1] == vocab["kicking"]
    tok.save_pretrained(folder)
    return folder, model


def test_embedding_matcher_on_a_tiny_random_bert(tmp_path):
    folder, model = _tiny_bert(tmp_path)
    m = EmbeddingMatcher(str(folder))
    texts = ["kicking a ball", "two people hugging each other with their arms around each other"]
    e = m.embed(texts)
    # mean pooling written out independently: average the hidden states of the real tokens
    from transformers import BertTokenizer

    tok = BertTokenizer.from_pretrained(folder)
    model.eval()
    for i, t in enumerate(texts):
        ids = tok(t, return_tensors="pt")
        with torch.no_grad():
            h = model(**ids).last_hidden_state[0]
        ref = h.mean(0) / h.mean(0).norm()
        assert torch.allclose(e[i], ref, atol=1e-5)
    assert torch.allclose(e.norm(dim=-1), torch.ones(2), atol=1e-5)
    # a query that is a description word for word scores its motion top, at cosine 1
    action = Action(text=ml.describe("kick"), verb="kick", head="kick")
    scores = m.scores(action, ml.names())
    assert max(scores, key=scores.get) == "kick" and scores["kick"] == pytest.approx(1.0, abs=1e-5)
    # selectable in config, like the default
    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = compose(config_name="generate", overrides=["text_to_motion=embedding",
                                                         f"text_to_motion.matcher.path={folder}"])
    t2m = instantiate(cfg.text_to_motion)
    assert isinstance(t2m.matcher, EmbeddingMatcher) and t2m.choose("kicks a ball", 1).motion in ml.names()
    with pytest.raises(AmgError, match="matcher.path"):
        EmbeddingMatcher(str(tmp_path / "missing"))


class ShoutingParser(PromptParser):
    """A stand-in for a language-model parser: upper-cases what the rules read."""

    def __init__(self, suffix: str = "!"):
        self.suffix = suffix

    def parse(self, prompt):
        p = RuleBasedPromptParser().parse(prompt)
        return ParsedPrompt(p.prompt, [x.upper() + self.suffix for x in p.people], p.action, p.scene,
                            p.scene_prompt, p.notes, p.actions)


def test_parser_and_text_to_motion_are_selected_in_config(tmp_path):
    from amg.generate import run

    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = compose(config_name="generate", overrides=["parser._target_=test_prompt.ShoutingParser",
                                                         "+parser.suffix=?"])
        default = compose(config_name="generate")
    parser = instantiate(cfg.parser)
    assert isinstance(parser, ShoutingParser) and parser.parse("a man waves").people == ["A MAN?"]
    assert isinstance(instantiate(default.parser), RuleBasedPromptParser)
    t2m = instantiate(default.text_to_motion)
    assert isinstance(t2m, LibraryTextToMotion) and isinstance(t2m.matcher, LexiconMatcher)
    # a prompt naming nobody stops with one line, before anything is built
    with initialize_config_dir(config_dir=CONF, version_base=None):
        nobody = compose(config_name="generate", overrides=["prompt=a sunset over the sea", "progress=false"])
    with pytest.raises(AmgError, match="names no person"):
        run(nobody, tmp_path)
    assert not any(tmp_path.iterdir())


def test_generate_records_the_plan_in_prompt_json(tmp_path):
    from amg.generate import run

    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = compose(config_name="generate", overrides=[
            "prompt=a basketball player in a red jersey dribbles and jumps to dunk in a gym", "num_frames=4",
            "width=48", "height=48", "avatar.num_gaussians=800", "progress=false", "conditions=[avatar]"])
    run(cfg, tmp_path)
    rec = json.loads((tmp_path / "prompt.json").read_text())
    assert rec["people"] == ["a basketball player in a red jersey"] and rec["scene"] == "in a gym"
    assert rec["actions"] == ["dribbles", "jumps to dunk"]
    choices = rec["motions"]["choices"]
    assert [c["motion"] for c in choices] == ["dribble", "jump"]
    assert all(c["score"] > 0.5 and c["runner_up"] and not c["weak"] for c in choices)
