"""One training run: SFT, DPO or GRPO on TRL, LoRA (PEFT) or full fine-tuning, then a merged
checkpoint that `hf:` opens and `--gguf` turns into a file llama.cpp runs.

Layout of `--output DIR`:
  DIR/settings.json        what the run was started with (a resume must match it)
  DIR/checkpoints/         the Trainer's checkpoints (weights, optimiser, RNG, data position)
  DIR/final/               the trained model, LoRA merged, + openparity-align.json
  DIR/final.gguf           with --gguf: the same weights for llama.cpp
Checkpoints are complete only once their trainer_state.json exists; a resume skips a partial
one (a kill -9 during a save). `final/` is written beside its place and renamed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from openparity.align.errors import AlignError
from openparity.align.settings import PRECISIONS, AlignSettings, Progress
from openparity.atomic import write_atomic
from openparity.models.embedded import EMBEDDED_MODELS
from openparity.models.gguf_export import GgufDtype

METADATA = "openparity-align.json"


@dataclass
class AlignResult:
    checkpoint: Path
    gguf: Path | None
    steps: int
    train_seconds: float
    examples: str
    logs: list[dict[str, float]] = field(default_factory=list)
    reward_failures: dict[str, int] = field(default_factory=dict)
    processes: int = 1
    rewards: dict[str, Any] = field(default_factory=dict)  # grpo: canaries and scorer outcomes

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "gguf": None if self.gguf is None else str(self.gguf),
            "steps": self.steps,
            "train_seconds": round(self.train_seconds, 2),
            "examples": self.examples,
            "final_loss": self.final("loss"),
            "reward_failures": self.reward_failures,
            "processes": self.processes,
            "rewards": self.rewards or None,
        }

    def final(self, key: str) -> float | None:
        values = [log[key] for log in self.logs if key in log]
        return values[-1] if values else None


_DEFAULTS = {f.name: f.default for f in fields(AlignSettings) if f.default is not MISSING}


def template_gguf(base: str) -> Path | None:
    """The GGUF a base model came from (its tokenizer and metadata serve the export)."""
    if base in EMBEDDED_MODELS:
        return EMBEDDED_MODELS[base].path()
    path = Path(base)
    if path.suffix == ".gguf" and path.is_file():
        return path.resolve()
    meta = path / METADATA
    if meta.is_file():
        template = json.loads(meta.read_text()).get("template_gguf")
        return Path(template) if template else None
    return None


def _full_weights(trainer: Any) -> contextlib.AbstractContextManager:
    """Under ZeRO-3 each rank holds a shard of every weight: gather them all (a collective, so
    every rank enters) for rank 0 to merge and save; elsewhere nothing to do."""
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    if plugin is None or plugin.zero_stage != 3:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(trainer.model.parameters()), modifier_rank=None)


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[1])


def last_complete_checkpoint(directory: Path) -> Path | None:
    """The newest checkpoint-N whose save finished (trainer_state.json is written last)."""
    done = [
        p
        for p in directory.glob("checkpoint-*")
        if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def check_output(settings: AlignSettings, resume: bool) -> Path | None:
    """Check `--output` against `--resume`; the checkpoint to resume from, if any."""
    out = settings.output
    saved = out / "settings.json"
    if saved.is_file():
        if not resume:
            raise AlignError(
                f"{out} already holds a training run",
                hint="pass --resume to continue it, or choose another --output",
            )
        # a setting added after the run was saved has its default there
        before = {**_DEFAULTS, **json.loads(saved.read_text())}
        now = settings.fingerprint()
        changed = sorted(k for k in now if before.get(k) != now[k])
        if changed:
            raise AlignError(
                f"--resume with other settings than the run in {out}: {', '.join(changed)}",
                hint="resume with the same options, or start a new --output",
            )
        return last_complete_checkpoint(out / "checkpoints")
    if resume:
        raise AlignError(f"nothing to resume in {out}", hint="drop --resume to start a run")
    return None


def train(
    settings: AlignSettings,
    *,
    resume: bool = False,
    gguf: GgufDtype | None = None,
    progress: Progress | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> AlignResult:
    """Run one training method end to end; see the module docstring for the files. `gguf`:
    also write DIR/final.gguf with matrices in that dtype. `say` gets the lines a user should
    read (what a resume continues from)."""
    from openparity.align import trainers

    if settings.steps < 1:
        raise AlignError("--steps must be at least 1")
    if settings.precision not in PRECISIONS:
        raise AlignError(f"--precision {settings.precision!r}: use " + ", ".join(PRECISIONS))
    checkpoint = check_output(settings, resume)
    if resume:
        say(
            f"resuming {settings.output} from {checkpoint.name} (step {_step_of(checkpoint)})"
            if checkpoint
            else f"resuming {settings.output}: it stopped before its first checkpoint"
            f" (one is written every {settings.save_steps} steps), so training starts at step 0"
        )
    run = trainers.build(settings)  # bad data or a bad base model fail here, before any write
    saved = settings.output / "settings.json"
    if not saved.is_file():
        write_atomic(saved, json.dumps(settings.fingerprint(), indent=2, ensure_ascii=False))
    logs: list[dict[str, float]] = []
    trainers.report_logs_to(run.trainer, trainers.log_callback(logs, settings.steps, progress))
    started = time.perf_counter()
    try:
        run.trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except KeyboardInterrupt:
        last = last_complete_checkpoint(settings.output / "checkpoints")
        raise AlignError(
            f"interrupted at step {run.trainer.state.global_step} of {settings.steps}; last"
            f" checkpoint: {f'step {_step_of(last)}' if last else 'none'}",
            hint="continue with the same command and --resume"
            + (
                ""
                if last
                else f" (it starts at step 0: a checkpoint is written every"
                f" {settings.save_steps} steps, --save-steps)"
            ),
        ) from None
    finally:
        run.close()
    seconds = time.perf_counter() - started
    with _full_weights(run.trainer):
        if not run.trainer.is_world_process_zero():
            return AlignResult(settings.output / "final", None, settings.steps, seconds, "", logs)
        final = save_final(
            trainers.merged(run.trainer.model, settings), run.tokenizer, settings, seconds
        )
    gguf_path = None
    if gguf:
        gguf_path = export_checkpoint(final, settings.output / "final.gguf", dtype=gguf)
    return AlignResult(
        final,
        gguf_path,
        run.trainer.state.global_step,
        seconds,
        run.examples.summary(),
        logs,
        run.reward_failures,
        run.trainer.args.world_size,
        run.reward_summary,
    )


def save_final(model: Any, tokenizer: Any, settings: AlignSettings, seconds: float) -> Path:
    """Write the merged model to DIR/final atomically (rename of a full copy)."""
    final = settings.output / "final"
    partial = settings.output / ".final.partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    template = template_gguf(settings.base)
    meta = {
        "method": settings.method,
        "base": settings.base,
        "template_gguf": None if template is None else str(template),
        "settings": settings.fingerprint(),
        "train_seconds": round(seconds, 2),
    }
    (partial / METADATA).write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    return final


def export_checkpoint(
    checkpoint: Path, out: Path, *, template: Path | None = None, dtype: GgufDtype = "f32"
) -> Path:
    """A trained checkpoint as a GGUF llama.cpp runs (`local:OUT`)."""
    from safetensors.torch import load_file

    from openparity.models.gguf_export import export_gguf

    template = template or template_gguf(str(checkpoint))
    if template is None:
        raise AlignError(
            f"{checkpoint} does not say which GGUF it came from",
            hint="pass --template BASE.gguf (the GGUF of the model it was trained from)",
        )
    shards = sorted(checkpoint.glob("*.safetensors"))
    if not shards:
        raise AlignError(f"no safetensors weights in {checkpoint}", hint="is it a checkpoint?")
    state: dict[str, Any] = {}
    for shard in shards:
        state.update(load_file(shard))
    if "lm_head.weight" not in state and "model.embed_tokens.weight" in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]  # tied head
    return export_gguf(state, template, out, dtype=dtype, name=f"openparity {checkpoint.name}")
