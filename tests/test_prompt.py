from amg.prompt import RuleBasedPromptParser


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
