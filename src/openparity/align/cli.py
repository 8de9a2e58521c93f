"""CLI of training: `openparity align sft | dpo | grpo | export`."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from openparity.console import err, print_json
from openparity.console import out as console

if TYPE_CHECKING:
    from openparity.models.gguf_export import GgufDtype

align_app = typer.Typer(help="Train the open model (SFT, DPO, GRPO on TRL + PEFT) and export it.")

BASE = typer.Option(
    "smollm2-135m", "--base", help="Base model: embedded alias, GGUF file, checkpoint dir, hub id."
)
OUTPUT = typer.Option(..., "--output", "-o", help="Run directory (checkpoints, final/).")
STEPS = typer.Option(50, "--steps", min=1, help="Optimizer steps.")
BATCH = typer.Option(4, "--batch-size", min=1, help="Global batch (examples / completions).")
ACCUM = typer.Option(1, "--grad-accum", min=1, help="Gradient accumulation steps.")
LR = typer.Option(2e-4, "--lr", help="Learning rate (constant).")
LORA_R = typer.Option(16, "--lora-r", min=0, help="LoRA rank; 0: full fine-tuning.")
MAX_LEN = typer.Option(512, "--max-length", min=16, help="Tokens per example (truncated).")
SEED = typer.Option(0, "--seed", help="Seed for weights, data order and sampling.")
BETA = typer.Option(0.1, "--beta", help="DPO temperature / GRPO KL weight.")
DECONTAM = typer.Option(
    "gsm8k,humaneval,mbpp",
    "--decontaminate",
    help="Tasks (names or YAML files) whose items no training record may contain; '' for none.",
)
SAVE = typer.Option(25, "--save-steps", min=1, help="Checkpoint every N steps.")
RESUME = typer.Option(False, "--resume", help="Continue the run in --output.")
GGUF = typer.Option(False, "--gguf", help="Also write OUTPUT/final.gguf for llama.cpp.")
GGUF_DTYPE = typer.Option(
    "q8_0",
    "--gguf-dtype",
    help="Matrices of the --gguf file: q8_0 (about 1/4 of f32), f16 or f32 (exact).",
)
PROCESSES = typer.Option(1, "--processes", min=1, help="Data-parallel processes (accelerate).")
AS_JSON = typer.Option(False, "--json", help="Print JSON.")
CURRICULUM = typer.Option(
    None,
    "--curriculum",
    help="Run id of the base model on these items: train easiest first (else random order).",
)
CHECKPOINTING = typer.Option(
    True,
    "--activation-checkpointing/--no-activation-checkpointing",
    help="Recompute activations in backward (TRL's default too): less memory for more"
    " compute; on CPUs measured no slower (benchmarks/align_step.py).",
)
DEEPSPEED = typer.Option(
    None,
    "--deepspeed",
    help="DeepSpeed ZeRO: zero2, zero3 or a DeepSpeed JSON file (GPUs; CPU works, slowly).",
)
PRECISION = typer.Option(
    "auto",
    "--precision",
    help="bf16, fp32, or auto: bf16 where the hardware has it (GPUs, CPUs with AMX or"
    " AVX512-BF16), fp32 elsewhere.",
)
STORE = typer.Option(Path(".openparity/runs.sqlite"), "--store", help="Run store (--curriculum).")

_CHILD = "OPENPARITY_ALIGN_CHILD"


def register(app: typer.Typer) -> None:
    app.add_typer(align_app, name="align")


@align_app.command("sft")
def sft_command(
    data: Path = typer.Option(..., "--data", help="JSONL: messages, or prompt + response."),
    base: str = BASE,
    output: Path = OUTPUT,
    steps: int = STEPS,
    batch_size: int = BATCH,
    grad_accum: int = ACCUM,
    lr: float = LR,
    lora_r: int = LORA_R,
    max_length: int = MAX_LEN,
    seed: int = SEED,
    decontaminate: str = DECONTAM,
    save_steps: int = SAVE,
    resume: bool = RESUME,
    gguf: bool = GGUF,
    gguf_dtype: str = GGUF_DTYPE,
    processes: int = PROCESSES,
    deepspeed: str | None = DEEPSPEED,
    as_json: bool = AS_JSON,
    curriculum: str | None = CURRICULUM,
    store: Path = STORE,
    gradient_checkpointing: bool = CHECKPOINTING,
    precision: str = PRECISION,
) -> None:
    """Supervised fine-tuning on chat records (loss on the answers only)."""
    _run(locals(), method="sft")


@align_app.command("dpo")
def dpo_command(
    data: Path = typer.Option(..., "--data", help="JSONL: prompt, chosen, rejected."),
    base: str = BASE,
    output: Path = OUTPUT,
    steps: int = STEPS,
    batch_size: int = BATCH,
    grad_accum: int = ACCUM,
    lr: float = LR,
    lora_r: int = LORA_R,
    max_length: int = MAX_LEN,
    seed: int = SEED,
    beta: float = BETA,
    decontaminate: str = DECONTAM,
    save_steps: int = SAVE,
    resume: bool = RESUME,
    gguf: bool = GGUF,
    gguf_dtype: str = GGUF_DTYPE,
    processes: int = PROCESSES,
    deepspeed: str | None = DEEPSPEED,
    as_json: bool = AS_JSON,
    curriculum: str | None = CURRICULUM,
    store: Path = STORE,
    gradient_checkpointing: bool = CHECKPOINTING,
    precision: str = PRECISION,
) -> None:
    """Direct preference optimisation on preference pairs."""
    _run(locals(), method="dpo")


@align_app.command("grpo")
def grpo_command(
    task: str = typer.Option(..., "--task", help="Task whose prompts and scorer give rewards."),
    items: str = typer.Option(":", "--items", help="Which items, START:END (e.g. 200:600)."),
    generations: int = typer.Option(4, "--generations", min=2, help="Completions per prompt."),
    max_completion: int = typer.Option(128, "--max-completion", min=1, help="Tokens each."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature."),
    vllm_server: str | None = typer.Option(
        None, "--vllm-server", help="Generate on a TRL vLLM server (http://HOST:PORT)."
    ),
    canaries: float = typer.Option(
        0.05,
        "--canaries",
        min=0.0,
        max=1.0,
        help="Share of prompts (code tasks) whose tests contradict them: a pass is a hack.",
    ),
    hack_stop: float = typer.Option(
        0.2,
        "--hack-stop",
        min=0.0,
        max=1.0,
        help="Stop when more than this share of the canaries scored pass.",
    ),
    base: str = BASE,
    output: Path = OUTPUT,
    steps: int = STEPS,
    batch_size: int = BATCH,
    grad_accum: int = ACCUM,
    lr: float = LR,
    lora_r: int = LORA_R,
    max_length: int = MAX_LEN,
    seed: int = SEED,
    beta: float = typer.Option(0.0, "--beta", help="KL weight."),
    save_steps: int = SAVE,
    resume: bool = RESUME,
    gguf: bool = GGUF,
    gguf_dtype: str = GGUF_DTYPE,
    processes: int = PROCESSES,
    deepspeed: str | None = DEEPSPEED,
    as_json: bool = AS_JSON,
    curriculum: str | None = CURRICULUM,
    store: Path = STORE,
    gradient_checkpointing: bool = CHECKPOINTING,
    precision: str = PRECISION,
) -> None:
    """Group-relative policy optimisation with the task's scorer as the reward."""
    _run(locals(), method="grpo")


@align_app.command("export")
def export_command(
    checkpoint: Path = typer.Argument(..., help="A checkpoint directory (OUTPUT/final)."),
    out: Path = typer.Option(..., "--out", help="The GGUF file to write."),
    template: Path | None = typer.Option(
        None, "--template", help="GGUF of the base model (default: the one it was trained from)."
    ),
    dtype: str = typer.Option("f32", "--dtype", help="f32 (exact), f16 or q8_0 for matrices."),
) -> None:
    """Write a trained checkpoint as GGUF (run it as local:OUT)."""
    from openparity.align.training import export_checkpoint

    path = export_checkpoint(checkpoint, out, template=template, dtype=_gguf_dtype(dtype))
    console.print(f"wrote {path}; run it as local:{path}")


def _gguf_dtype(dtype: str) -> GgufDtype:
    from openparity.align.errors import AlignError
    from openparity.models.gguf_export import GGUF_DTYPES

    if dtype not in GGUF_DTYPES:
        raise AlignError(f"GGUF dtype {dtype!r}: use " + ", ".join(GGUF_DTYPES))
    return dtype  # type: ignore[return-value]


def _run(options: dict, method: str) -> None:
    from openparity.align.quiet import quiet_libraries
    from openparity.align.training import AlignSettings, train

    processes = options.pop("processes")
    if options.get("deepspeed"):
        _check_deepspeed(options["deepspeed"])
    launched = os.environ.get("WORLD_SIZE")  # under torchrun / accelerate launch already
    if launched and not os.environ.get(_CHILD):
        processes = int(launched)
    elif (processes > 1 or options.get("deepspeed")) and not os.environ.get(_CHILD):
        _launch(processes)  # DeepSpeed wants a launcher's environment even for one process
        return
    as_json, resume, gguf = options.pop("as_json"), options.pop("resume"), options.pop("gguf")
    dtype = _gguf_dtype(options.pop("gguf_dtype"))
    gguf_dtype = dtype if gguf else None
    options["learning_rate"] = options.pop("lr")
    options["decontaminate"] = tuple(
        t for t in (options.get("decontaminate") or "").split(",") if t
    )
    settings = AlignSettings(method=method, processes=processes, **options)  # type: ignore[arg-type]
    # stdout carries only the result: what the libraries print while training (DeepSpeed's
    # logger, trainer prints) goes to stderr, so `--json` output parses
    with (
        quiet_libraries(err.print),
        _progress(method) as report,
        contextlib.redirect_stdout(sys.stderr),
    ):
        result = train(settings, resume=resume, gguf=gguf_dtype, progress=report, say=err.print)
    if os.environ.get("RANK", "0") != "0":
        return
    if as_json:
        print_json(result.to_dict())
        return
    console.print(
        f"{result.examples}; {result.steps} steps in {result.train_seconds:.0f} s"
        f" on {result.processes} process{'es' if result.processes > 1 else ''}"
    )
    if result.reward_failures:
        console.print(f"reward failures (not scored): {result.reward_failures}")
    if result.rewards.get("canaries_scored"):
        r = result.rewards
        console.print(
            f"canaries: {r['canaries_passed']} of {r['canaries_scored']} passed"
            f" ({'reward hacking: ' + r['hacks'][0] if r['hacks'] else 'no hack seen'})"
        )
    console.print(f"checkpoint: {result.checkpoint} (model spec hf:{result.checkpoint})")
    if result.gguf:
        console.print(f"GGUF ({gguf_dtype}): {result.gguf} (model spec local:{result.gguf})")
    console.print(
        f"measure what it moved: openparity gap --open hf:{result.checkpoint}"
        f" --base hf:{settings.base} --tasks YOUR_TASK,A_GUARD_TASK [--closed CLOSED_MODEL]"
    )


def _check_deepspeed(choice: str) -> None:
    """A bad --deepspeed fails here, in one line, before any process is launched."""
    import importlib.util

    from openparity.align.errors import AlignError
    from openparity.align.settings import deepspeed_config

    deepspeed_config(choice)
    if importlib.util.find_spec("deepspeed") is None:
        raise AlignError(
            "--deepspeed needs the deepspeed package",
            hint="pip install --no-build-isolation deepspeed (after torch; scripts/install.sh"
            " does this)",
        )


def _launch(processes: int) -> None:
    """Re-run this command as N data-parallel processes (torch.distributed: NCCL on GPUs, gloo
    on CPU; the Trainer picks it up from the environment, as under `accelerate launch`).
    What the processes print passes through; the launcher's own noise does not (its thread
    banner, its log lines and, when a process fails, its traceback): a failed run ends with the
    process's one error line, once, and its exit status."""
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(processes),
        "-m",
        "openparity.cli",
        *sys.argv[1:],
    ]
    threads = str(max(1, (os.cpu_count() or 1) // processes))
    env = {**os.environ, _CHILD: "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads)}
    launcher = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True, bufsize=1)
    assert launcher.stderr is not None
    status, said = None, set()
    for line in launcher.stderr:
        failed = _LAUNCHER_FAILED.search(line)
        if failed:
            status = int(failed.group(1))
        if status is not None or _LAUNCHER_LOG.match(line):
            continue  # after a failure only the launcher's own report follows
        if line.startswith("error:"):
            if line in said:
                continue  # every process says the same
            said.add(line)
        sys.stderr.write(line)
        sys.stderr.flush()
    code = launcher.wait()
    sys.exit(status if code and status else code)


_LAUNCHER_LOG = re.compile(r"[WEI]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ torch/distributed/")
_LAUNCHER_FAILED = re.compile(r"failed \(exitcode: (-?\d+)\)")


def _progress(method: str):
    """A bar with loss, reward and tokens/s (rank 0 only)."""
    import contextlib

    from openparity.console import ProgressBars

    if os.environ.get("RANK", "0") != "0":
        return contextlib.nullcontext(None)

    @contextlib.contextmanager
    def bars():
        with ProgressBars() as bar:
            update = bar(f"align {method}")
            seen: dict[str, float] = {}

            def report(step: int, total: int, log: dict[str, float]) -> None:
                seen.update(log)
                parts = []
                if "loss" in log:
                    parts.append(f"loss {log['loss']:.3f}")
                if "reward" in log:
                    parts.append(f"reward {log['reward']:.3f}")
                runtime = seen.get("train_runtime")
                tokens = seen.get("num_input_tokens_seen")
                if runtime and tokens:
                    parts.append(f"{tokens / runtime:.0f} tok/s")
                update(step, total, " · ".join(parts))

            yield report

    return bars()
