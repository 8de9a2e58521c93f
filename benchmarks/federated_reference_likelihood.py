"""A continuous held-out metric for a finished `openparity federated compare` folder: each
arm's mean log-probability per token of the reference answers (the question through the
model's chat template, the reference as the assistant's turn), compared paired with the judged
alliance (cluster-robust t interval, items as clusters).

Format compliance is 0/1 and saturates after a few steps whatever the data; the reference
likelihood also moves with what the data teaches, which is what pooling members' data buys.
This is an analysis of adapters `compare` already trained, not part of its report yet.

    python benchmarks/federated_reference_likelihood.py fed-runs/compare fmt/heldout.jsonl \
        [--items 80] [--alliance fedavg]

The held-out JSONL needs `question` and `answer` fields (examples/align/gsm8k_format.py writes
one, with GSM8K's full reference solutions).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def arm_targets(folder: Path) -> dict[str, str]:
    """Arm name -> what `hf:` opens, from the compare report."""
    report = json.loads((folder / "compare.json").read_text(encoding="utf-8"))
    return {arm["arm"]: arm["model"].removeprefix("hf:") for arm in report["arms"]}


def reference_logprobs(target: str, items: list[dict]) -> list[float]:
    """Per item: mean log-probability of the reference's tokens (and the end of turn)."""
    import torch

    from openparity.models.hf_backend import load_hf_model

    model, tokenizer = load_hf_model(target)
    scores = []
    for item in items:
        prompt = [{"role": "user", "content": item["question"]}]
        context = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        head = tokenizer(context, add_special_tokens=False)["input_ids"]
        tail = tokenizer(item["answer"] + tokenizer.eos_token, add_special_tokens=False)[
            "input_ids"
        ]
        ids = torch.tensor([head + tail], device=model.device)
        with torch.inference_mode():
            logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
        picked = logprobs[len(head) - 1 :].gather(1, ids[0, len(head) :, None])[:, 0]
        scores.append(float(picked.mean()))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="an `openparity federated compare` output")
    parser.add_argument("heldout", type=Path, help="JSONL with question and answer fields")
    parser.add_argument("--items", type=int, default=80)
    parser.add_argument("--alliance", default=None, help="the arm to judge (default: report's)")
    args = parser.parse_args()
    from openparity.bench import stats

    rows = args.heldout.read_text(encoding="utf-8").splitlines()
    items = [json.loads(line) for line in rows if line.strip()][: args.items]
    targets = arm_targets(args.folder)
    report = json.loads((args.folder / "compare.json").read_text(encoding="utf-8"))
    judged = args.alliance or report["alliance"]
    scores = {name: reference_logprobs(target, items) for name, target in targets.items()}
    print(f"mean log-probability per reference token, {len(items)} held-out items;"
          f" {judged} - arm with 95 % cluster-robust t intervals:")  # fmt: skip
    for name, values in scores.items():
        line = f"  {name:<16} {sum(values) / len(values):8.4f}"
        if name != judged:
            tests = stats.paired_tests(scores[judged], values, margin=0.01)
            d = tests.diff
            line += f"   {judged} - arm {d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}]"
        print(line)
    alone = [name for name in scores if name.endswith("alone")]
    beats = all(stats.paired_tests(scores[judged], scores[n], 0.01).diff.low > 0 for n in alone)
    print(f"{judged} {'beats' if beats else 'does not beat'} every member alone on this metric")


if __name__ == "__main__":
    main()
