"""Training speed and memory of `openparity align` against plain TRL with its defaults, same
model, same data, same LoRA, same batch, each configuration in its own process (peak RSS is
per process). Prints tokens/s, peak memory and the ratios; and GRPO's step split into
generation / reward / update with the rewards/s of the sandboxed MBPP reward.

  openparity          align's defaults: LoRA r=16, bf16 where the hardware has it (GPUs,
                      CPUs with AMX or AVX512-BF16; fp32 elsewhere) with the frozen base
                      stored in bf16, activation checkpointing
  openparity-no-ckpt  the same with --no-activation-checkpointing (compute for memory)
  trl                 TRL's SFTConfig / DPOConfig defaults (bf16 on, activation
                      checkpointing on) with the same LoRA: the engine alone
  trl-full            TRL exactly as its README shows it: no LoRA, full fine-tuning

    python benchmarks/align_step.py [--base smollm2-135m] [--steps 3] [--batch 4]
        [--repeats 3] [--kinds openparity,trl] [--no-grpo]

With --repeats N the arms run N times in alternating order (A B, then B A, ...) and each
ratio is taken within a repeat: the median and the range of the N ratios are printed, with a
95 % t interval of the geometric mean from 3 repeats. One draw of 2 steps varies by 20 %.

On CPUs without bf16 units TRL's default is tens of times slower: keep --steps small.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_data(where: Path, n: int = 32) -> tuple[Path, Path]:
    from openparity.bench.tasks import get_task

    items = get_task("gsm8k").items()[600 : 600 + n]
    sft, dpo = where / "sft.jsonl", where / "dpo.jsonl"
    with open(sft, "w") as a, open(dpo, "w") as b:
        for item in items:
            question, answer = item.input["question"], f"The answer is {item.reference}."
            a.write(json.dumps({"prompt": question, "response": answer}) + "\n")
            b.write(
                json.dumps({"prompt": question, "chosen": answer, "rejected": "I do not know."})
                + "\n"
            )
    return sft, dpo


def child(args: argparse.Namespace) -> None:
    """One configuration: train, then print a JSON line with its figures."""
    from openparity.align import AlignSettings, train

    out = Path(tempfile.mkdtemp(prefix="align-bench-"))
    settings = AlignSettings(
        method=args.method,
        base=args.base,
        output=out / "run",
        data=Path(args.data),
        steps=args.steps,
        batch_size=args.batch,
        max_length=256,
        decontaminate=(),
        save_steps=10_000,
        gradient_checkpointing=args.kind != "openparity-no-ckpt",
    )
    if args.kind.startswith("openparity"):
        result = train(settings)
        logs = result.logs
    else:
        logs = plain_trl(settings, lora=args.kind == "trl")
    final = next(log for log in reversed(logs) if "train_runtime" in log)
    tokens = max(log.get("num_input_tokens_seen", 0) for log in logs)
    print(
        json.dumps(
            {
                "tokens_per_s": tokens / final["train_runtime"],
                "seconds": final["train_runtime"],
                "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            }
        )
    )


def plain_trl(settings, lora: bool) -> list[dict]:
    """TRL with the config's defaults and our batch (and use_cpu, which TRL's default bf16
    demands on a CPU); with our LoRA, or none (full fine-tuning, TRL's default)."""
    import datasets
    import torch
    import trl
    from transformers import TrainerCallback

    from openparity.align.examples import dpo_examples, sft_examples
    from openparity.align.trainers import lora_config
    from openparity.models.hf_backend import load_hf_model

    model, tokenizer = load_hf_model(settings.base)
    model.train()
    if settings.method == "sft":
        rows, config, cls = sft_examples(settings.data, None).rows, trl.SFTConfig, trl.SFTTrainer
    else:
        rows, config, cls = dpo_examples(settings.data, None).rows, trl.DPOConfig, trl.DPOTrainer
    # full-fine-tuning DPO needs a frozen reference copy; TRL would load it from the model's
    # path, which for the embedded GGUF only transformers' gguf_file= loader can read
    extra = (
        {"ref_model": load_hf_model(settings.base)[0]}
        if settings.method == "dpo" and not lora
        else {}
    )
    logs: list[dict] = []

    class Keep(TrainerCallback):
        def on_log(self, args, state, control, logs_=None, **kwargs):
            logs.append(dict(kwargs.get("logs") or logs_ or {}))

    trainer = cls(
        model=model,
        args=config(
            output_dir=str(settings.output),
            max_steps=settings.steps,
            per_device_train_batch_size=settings.batch_size,
            max_length=256,
            report_to=[],
            logging_steps=1,
            include_num_input_tokens_seen="all",
            save_strategy="no",
            use_cpu=not torch.cuda.is_available(),
        ),
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora_config(settings) if lora else None,
        callbacks=[Keep()],
        **extra,
    )
    trainer.train()
    return logs


def grpo_split(args: argparse.Namespace) -> None:
    """One GRPO run on MBPP with the sandboxed reward; time inside generate and inside the
    reward, the rest is the update."""
    import openparity.align.trainers as trainers
    from openparity.align import AlignSettings, train

    spent = {"generation": 0.0, "reward": 0.0, "rewards": 0}
    build = trainers.build

    def timed_build(settings):
        run = build(settings)
        policy = run.trainer.model
        generate, score = policy.generate, run.reward.__call__

        def timed_generate(*a, **k):
            started = time.perf_counter()
            try:
                return generate(*a, **k)
            finally:
                spent["generation"] += time.perf_counter() - started

        def timed_reward(prompts, completions, **k):
            started = time.perf_counter()
            try:
                return score(prompts, completions, **k)
            finally:
                spent["reward"] += time.perf_counter() - started
                spent["rewards"] += len(completions)

        policy.generate = timed_generate
        run.trainer.reward_funcs[0] = timed_reward
        return run

    trainers.build = timed_build
    out = Path(tempfile.mkdtemp(prefix="align-grpo-"))
    result = train(
        AlignSettings(
            method="grpo",
            base=args.base,
            output=out / "run",
            task="mbpp",
            items="0:8",
            steps=args.steps,
            batch_size=4,
            generations=4,
            max_completion=96,
            beta=0.0,
            save_steps=10_000,
            decontaminate=(),
        )
    )
    total = result.train_seconds
    update = total - spent["generation"] - spent["reward"]
    print(f"GRPO, {args.steps} steps of 4 completions on MBPP ({total:.1f} s):")
    for part in ("generation", "reward"):
        print(f"  {part:<10} {spent[part]:7.1f} s  {spent[part] / total:6.1%}")
    print(f"  {'update':<10} {update:7.1f} s  {update / total:6.1%}")
    print(f"  sandboxed MBPP rewards/s: {spent['rewards'] / max(spent['reward'], 1e-9):.1f}")


def run_child(args: argparse.Namespace, kind: str, method: str, data: Path) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            "--kind",
            kind,
            "--method",
            method,
            "--data",
            str(data),
            "--base",
            args.base,
            "--steps",
            str(args.steps),
            "--batch",
            str(args.batch),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratio_line(ratios: list[float]) -> str:
    """The median ratio, its range, and from 3 ratios a 95 % t interval of the geometric mean."""
    line = f"{statistics.median(ratios):.2f}x"
    if len(ratios) > 1:
        line += f" (range {min(ratios):.2f}-{max(ratios):.2f}"
        if len(ratios) > 2:
            from openparity.bench.stats import cluster_robust, t_interval

            log_mean = t_interval(cluster_robust([math.log(r) for r in ratios]))
            line += f", geometric mean {math.exp(log_mean.mean):.2f}x "
            line += f"[{math.exp(log_mean.low):.2f}, {math.exp(log_mean.high):.2f}]"
        line += ")"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1, help="Alternating runs of each arm.")
    parser.add_argument(
        "--kinds",
        default="openparity,openparity-no-ckpt,trl,trl-full",
        help="Arms to run, comma-separated.",
    )
    parser.add_argument("--no-grpo", action="store_true", help="Skip the GRPO split.")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="openparity", help=argparse.SUPPRESS)
    parser.add_argument("--method", default="sft", help=argparse.SUPPRESS)
    parser.add_argument("--data", default="", help=argparse.SUPPRESS)
    parser.add_argument("--grpo", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.grpo:
        grpo_split(args)
        return
    sft, dpo = write_data(Path(tempfile.mkdtemp(prefix="align-data-")))
    kinds = args.kinds.split(",")
    for method, data in (("sft", sft), ("dpo", dpo)):
        runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
        for repeat in range(args.repeats):
            for kind in kinds if repeat % 2 == 0 else kinds[::-1]:
                runs[kind].append(run_child(args, kind, method, data))
        print(
            f"{method.upper()}, {args.steps} steps x {args.batch}, {args.base}, "
            f"{args.repeats} repeat(s):"
        )
        for kind, figures in runs.items():
            speed = statistics.median(f["tokens_per_s"] for f in figures)
            peak = statistics.median(f["peak_rss_gb"] for f in figures)
            print(f"  {kind:<18} {speed:8.1f} tok/s  peak {peak:.2f} GB  (medians)")
        for ours in (k for k in ("openparity", "openparity-no-ckpt") if k in runs):
            for theirs in (k for k in ("trl", "trl-full") if k in runs):
                pairs = list(zip(runs[ours], runs[theirs], strict=True))
                speed = [a["tokens_per_s"] / b["tokens_per_s"] for a, b in pairs]
                memory = [a["peak_rss_gb"] / b["peak_rss_gb"] for a, b in pairs]
                print(
                    f"  {ours} / {theirs}: speed {ratio_line(speed)}; "
                    f"peak memory {ratio_line(memory)}"
                )
    if args.no_grpo:
        return
    subprocess.run(
        [sys.executable, __file__, "--grpo", "--base", args.base, "--steps", str(args.steps)],
        check=True,
    )


if __name__ == "__main__":
    main()
