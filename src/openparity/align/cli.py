"""CLI of training: `openparity align sft | dpo | grpo | export`."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from openparity.align.settings import AlignSettings
from openparity.console import err, print_json
from openparity.console import out as console
from openparity.cpus import cpu_threads
from openparity.settings_cli import options_from

if TYPE_CHECKING:
    from openparity.models.gguf_export import GgufDtype

align_app = typer.Typer(help="Train the open model (SFT, DPO, GRPO on TRL + PEFT) and export it.")

RESUME = typer.Option(False, "--resume", help="Continue the run in --output.")
GGUF = typer.Option(False, "--gguf", help="Also write OUTPUT/final.gguf for llama.cpp.")
GGUF_DTYPE = typer.Option(
    "q8_0",
    "--gguf-dtype",
    help="Matrices of the --gguf file: q8_0 (about 1/4 of f32), f16 or f32 (exact).",
)
AS_JSON = typer.Option(False, "--json", help="Print JSON.")
_GRPO_ONLY = (
    "task",
    "items",
    "generations",
    "max_completion",
    "temperature",
    "vllm_server",
    "canaries",
    "hack_stop",
)

_CHILD = "OPENPARITY_ALIGN_CHILD"


def register(app: typer.Typer) -> None:
    app.add_typer(align_app, name="align")


def _training_command(method: str, summary: str, **declaration: Any) -> Callable[..., None]:
    """`align METHOD`: the AlignSettings options the method uses, and what every run takes."""

    @options_from(AlignSettings, fixed={"method": method}, **declaration)
    def command(
        resume: bool = RESUME,
        gguf: bool = GGUF,
        gguf_dtype: str = GGUF_DTYPE,
        as_json: bool = AS_JSON,
        settings: AlignSettings = ...,
    ) -> None:
        _run(settings, resume=resume, gguf=gguf, gguf_dtype=gguf_dtype, as_json=as_json)

    command.__doc__ = summary
    align_app.command(method)(command)
    return command


sft_command = _training_command(
    "sft",
    "Supervised fine-tuning on chat records (loss on the answers only).",
    leave_out=(*_GRPO_ONLY, "beta"),
    required=("data",),
    helps={"data": "JSONL: messages, or prompt + response."},
)
dpo_command = _training_command(
    "dpo",
    "Direct preference optimisation on preference pairs.",
    leave_out=_GRPO_ONLY,
    required=("data",),
    helps={"data": "JSONL: prompt, chosen, rejected."},
)
grpo_command = _training_command(
    "grpo",
    "Group-relative policy optimisation with the task's scorer as the reward.",
    leave_out=("data",),
    required=("task",),
    defaults={"beta": 0.0},
    helps={"beta": "KL weight."},
)


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


def _run(
    settings: AlignSettings, *, resume: bool, gguf: bool, gguf_dtype: str, as_json: bool
) -> None:
    from openparity.align.quiet import quiet_libraries
    from openparity.align.training import train

    if settings.deepspeed:
        _check_deepspeed(settings.deepspeed)
    launched = os.environ.get("WORLD_SIZE")  # under torchrun / accelerate launch already
    if launched and not os.environ.get(_CHILD):
        settings = replace(settings, processes=int(launched))
    elif (settings.processes > 1 or settings.deepspeed) and not os.environ.get(_CHILD):
        _launch(settings.processes)  # DeepSpeed wants a launcher's environment even for one
        return
    dtype = _gguf_dtype(gguf_dtype)
    written_dtype = dtype if gguf else None
    # stdout carries only the result: what the libraries print while training (DeepSpeed's
    # logger, trainer prints) goes to stderr, so `--json` output parses
    with (
        quiet_libraries(err.print),
        _progress(settings.method) as report,
        contextlib.redirect_stdout(sys.stderr),
    ):
        result = train(settings, resume=resume, gguf=written_dtype, progress=report, say=err.print)
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
        console.print(f"GGUF ({written_dtype}): {result.gguf} (model spec local:{result.gguf})")
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
    threads = str(max(1, cpu_threads() // processes))
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
