"""Prompt front door: parser accuracy on the evaluation sets, and parse + plan time per prompt.

Prints, for ``tests/data/prompts.yaml`` (the set the grammar was developed on) and
``tests/data/prompts_heldout.yaml`` (written afterwards), the share of prompts whose people count,
appearance phrases, actions, chosen motions and scene match the expected ones (goals: >= 95% people count
and appearance, >= 90% action -> motion), the prompts each field got wrong (``--show``), and the time to
parse and plan one prompt against a baseline measured in the same run (tokenizing the prompt alone).

Run: ``python benchmarks/prompt.py [--show] [--matcher-path /models/all-MiniLM-L6-v2]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from amg.prompt import RuleBasedPromptParser  # noqa: E402
from avatars.prompt_grammar import tokenize  # noqa: E402
from avatars.text_to_motion import EmbeddingMatcher, LibraryTextToMotion  # noqa: E402
from prompt_eval import DATA, FIELDS, evaluate, load_cases  # noqa: E402

GOALS = {"people_count": 0.95, "appearance": 0.95, "motions": 0.90}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--show", action="store_true", help="print the prompts each field got wrong")
    ap.add_argument("--matcher-path", default=None, help="a local sentence-embedding model folder to compare")
    args = ap.parse_args()
    matchers = {"lexicon": LibraryTextToMotion()}
    if args.matcher_path:
        matchers["embedding"] = LibraryTextToMotion(EmbeddingMatcher(args.matcher_path))
    for path in (DATA, DATA.with_name("prompts_heldout.yaml")):
        cases = load_cases(path)
        for mname, t2m in matchers.items():
            s = evaluate(cases, text_to_motion=t2m)
            print(f"{path.name} ({s.n} prompts, {mname} matcher)")
            for k in FIELDS:
                goal = GOALS.get(k)
                flag = "" if goal is None else ("  ok" if s.accuracy(k) >= goal else f"  BELOW GOAL {goal:.0%}")
                print(f"  {k:13s} {s.accuracy(k):6.1%}{flag}")
                if args.show:
                    for prompt, got, want in s.wrong[k]:
                        print(f"      {prompt!r}: got {got!r}, expected {want!r}")
    prompts = [c["prompt"] for c in load_cases()]
    parser, t2m = RuleBasedPromptParser(), LibraryTextToMotion()
    t2m.plan(["walks"], 1)  # build the description index once

    def timed(fn, reps=3):
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            for p in prompts:
                fn(p)
            best = min(best, time.perf_counter() - t0)
        return best / len(prompts)

    base = timed(tokenize)
    full = timed(lambda p: (lambda q: t2m.plan(q.actions, max(1, len(q.people))))(parser.parse(p)))
    print(f"parse + plan: {full * 1e3:.2f} ms per prompt ({full / base:.0f}x tokenizing alone, "
          f"{base * 1e6:.0f} us)")


if __name__ == "__main__":
    main()
