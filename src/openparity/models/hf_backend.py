"""Backend `hf`: a transformers causal LM run in-process (a trained checkpoint, any HF model).

`hf:DIR` opens what `save_pretrained` or `openparity align` wrote (a PEFT adapter directory is
merged into its base), `hf:FILE.gguf` and `hf:smollm2-135m` load a GGUF dequantised, and
`hf:ORG/NAME` a hub model (online). Requests that arrive together are generated as one
left-padded batch: a `generate_batch`, a benchmark run or concurrent gateway calls all share
the forward passes. One worker thread owns each loaded model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openparity.models.base import ChatModel
from openparity.models.chat_turn import assistant_turn
from openparity.models.embedded import EMBEDDED_MODELS
from openparity.models.errors import (
    MissingDependencyError,
    ModelCallError,
    ModelConfigError,
    UnsupportedCapabilityError,
)
from openparity.models.resident import Resident, Residents
from openparity.models.spec import ModelSpec
from openparity.models.types import (
    ChatRequest,
    Completion,
    Loglikelihood,
    LoglikelihoodRequest,
    TokenLogprob,
)

MAX_BATCH = 16


Loaded = Resident[tuple[Any, Any]]  # (model, tokenizer) and their thread
_RESIDENTS: Residents[tuple[Any, Any]] = Residents("hf")


def load_hf_model(target: str) -> tuple[Any, Any]:
    """(model, tokenizer) for an hf: target, in eval mode on the CPU or the first GPU."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(
            f"the hf backend needs {exc.name}", hint='pip install "openparity[train]"'
        ) from None
    from openparity.models.gguf_weights import load_gguf_model

    path = EMBEDDED_MODELS[target].path() if target in EMBEDDED_MODELS else Path(target)
    try:
        if path.suffix == ".gguf":
            model, tokenizer = load_gguf_model(path)
        elif (path / "adapter_config.json").is_file():
            model, tokenizer = _load_adapter(path)
        else:
            model = transformers.AutoModelForCausalLM.from_pretrained(target, dtype="auto")
            tokenizer = transformers.AutoTokenizer.from_pretrained(target)
    except (OSError, ValueError) as exc:
        raise ModelConfigError(
            f"transformers could not load {target} ({str(exc).splitlines()[0][:200]})",
            hint="a hub id needs the hub (online) or HF_HOME with a cached copy;"
            " a directory needs config.json and weights",
        ) from None
    if torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model, tokenizer


def _load_adapter(path: Path) -> tuple[Any, Any]:
    """A PEFT adapter directory, merged into the base model it names."""
    import json

    try:
        import peft
    except ImportError:
        raise MissingDependencyError(
            "an adapter checkpoint needs peft", hint='pip install "openparity[train]"'
        ) from None
    base = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
    model, tokenizer = load_hf_model(base)
    return peft.PeftModel.from_pretrained(model, path).merge_and_unload(), tokenizer


def release_hf_model(target: str) -> None:
    """Free a model the hf backend keeps loaded (e.g. a checkpoint measured once)."""
    _RESIDENTS.forget(target)


def _load(target: str) -> Loaded:
    return _RESIDENTS.get(target, lambda: load_hf_model(target))


class HFModel(ChatModel):
    """A transformers model in this process; concurrent requests are batched."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._pending: list[tuple[ChatRequest, asyncio.Future[Completion]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def generate(self, request: ChatRequest) -> Completion:
        _check_text_only(self.name, request)
        loop = asyncio.get_running_loop()
        loaded = await loop.run_in_executor(None, _load, self.spec.model)
        future: asyncio.Future[Completion] = loop.create_future()
        self._pending.append((request, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.ensure_future(self._drain(loaded))
        return await future

    async def _drain(self, loaded: Loaded) -> None:
        """Run waiting requests in batches of equal settings until none are left."""
        await asyncio.sleep(0)  # callers scheduled in the same tick join this batch
        while self._pending:
            key = _settings_key(self._pending[0][0])
            batch = [p for p in self._pending if _settings_key(p[0]) == key][:MAX_BATCH]
            for entry in batch:
                self._pending.remove(entry)
            batch = [(r, f) for r, f in batch if not f.done()]  # cancelled callers
            if not batch:
                continue
            try:
                results = await loaded.run(self._generate_sync, loaded, [r for r, _ in batch])
            except Exception as exc:  # one failed batch fails its callers, not the drainer
                error = ModelCallError(
                    f"{self.name} could not answer: {exc}", reason="upstream_error"
                )
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), completion in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(completion)

    def _generate_sync(self, loaded: Loaded, requests: list[ChatRequest]) -> list[Completion]:
        import torch

        model, tokenizer = loaded.value
        first = requests[0]
        prompts = [
            tokenizer.apply_chat_template(
                [dict(m) for m in r.messages], add_generation_prompt=True, tokenize=False
            )
            for r in requests
        ]
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            model.device
        )
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()
        room = self.spec.n_ctx - max(prompt_lengths)
        max_new = room if first.max_tokens is None else first.max_tokens  # None: the rest
        if max_new > room or room < 1:
            raise ModelCallError(
                f"{self.name}: prompt of {max(prompt_lengths)} tokens + {max_new}"
                f" new ones exceeds the context of {self.spec.n_ctx}",
                hint="shorten the prompt or lower max_tokens",
                reason="context",
            )
        temperature = 1.0 if first.temperature is None else first.temperature
        sample = temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "do_sample": sample,
            "pad_token_id": tokenizer.pad_token_id,
            "return_dict_in_generate": True,
            "output_logits": first.logprobs,
        }
        if sample:
            top_p = 1.0 if first.top_p is None else first.top_p
            kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if first.stop:
            kwargs.update(stop_strings=list(first.stop), tokenizer=tokenizer)
        started = time.perf_counter()
        with torch.inference_mode():
            if first.seed is not None:
                torch.manual_seed(first.seed)
            output = model.generate(**inputs, **kwargs)
        latency = time.perf_counter() - started
        new_tokens = output.sequences[:, inputs["input_ids"].shape[1] :]
        completions = []
        for row, request in enumerate(requests):
            ids = new_tokens[row].tolist()
            text, n_tokens, finish = _finish(tokenizer, ids, request, max_new)
            completions.append(
                Completion(
                    text=text,
                    finish_reason=finish,
                    prompt_tokens=int(prompt_lengths[row]),
                    completion_tokens=n_tokens,
                    latency_s=latency,
                    model=self.name,
                    cost_usd=self.spec.cost(int(prompt_lengths[row]), n_tokens),
                    logprobs=_token_logprobs(tokenizer, output.logits, row, ids[:n_tokens], request)
                    if request.logprobs
                    else None,
                )
            )
        return completions

    async def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        loop = asyncio.get_running_loop()
        loaded = await loop.run_in_executor(None, _load, self.spec.model)
        return await loaded.run(_loglikelihoods, loaded, list(requests), self.name)


def _settings_key(request: ChatRequest) -> tuple[Any, ...]:
    """Requests batch together only when they generate with the same settings."""
    return (
        request.max_tokens,
        request.temperature,
        request.top_p,
        tuple(request.stop),
        request.seed,
        request.logprobs,
        request.top_logprobs,
    )


def _check_text_only(name: str, request: ChatRequest) -> None:
    for message in request.messages:
        if not isinstance(message.get("content"), str | None):
            raise UnsupportedCapabilityError(
                f"{name} takes text messages only (got content parts)",
                hint="send plain text, or use a vision model through an openai: backend",
            )


def _finish(
    tokenizer: Any, ids: list[int], request: ChatRequest, max_new: int
) -> tuple[str, int, str]:
    """(text, tokens generated, finish reason) for one row of a padded batch. A row that ended
    before max_tokens ended on its own (end token or stop string): "stop"."""
    stop_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
    end = next((i for i, t in enumerate(ids) if t in stop_ids), None)
    kept = ids if end is None else ids[:end]
    counted = len(ids) if end is None else end + 1  # the end token was generated too
    finish = "stop" if end is not None or len(ids) < max_new else "length"
    text = tokenizer.decode(kept, skip_special_tokens=True)
    for stop in request.stop:
        if stop in text:
            text, finish = text[: text.index(stop)], "stop"
    return text, counted, finish


def _token_logprobs(
    tokenizer: Any, logits: Sequence[Any], row: int, ids: list[int], request: ChatRequest
) -> tuple[TokenLogprob, ...]:
    import torch

    result = []
    for step, token in enumerate(ids):
        logprobs = torch.log_softmax(logits[step][row].float(), dim=-1)
        top: tuple[tuple[str, float], ...] = ()
        if request.top_logprobs:
            values, indices = logprobs.topk(request.top_logprobs)
            top = tuple(
                (tokenizer.decode([i]), float(v))
                for v, i in zip(values.tolist(), indices.tolist(), strict=True)
            )
        result.append(TokenLogprob(tokenizer.decode([token]), float(logprobs[token]), top))
    return tuple(result)


def _loglikelihoods(
    loaded: Loaded, requests: list[LoglikelihoodRequest], name: str
) -> list[Loglikelihood]:
    """log P(continuation | context), one forward pass per request."""
    import torch

    model, tokenizer = loaded.value

    def render(messages: list[dict[str, object]], opened: bool) -> str:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=opened, tokenize=False)

    results = []
    for request in requests:
        text, continuation = request.context, request.continuation
        if request.messages is not None:
            text, continuation = assistant_turn(render, request.messages, continuation, name)
        context = tokenizer(text, add_special_tokens=False)["input_ids"]
        whole = tokenizer(text + continuation, add_special_tokens=False)["input_ids"]
        n_context = len(context)
        while n_context > 0 and whole[:n_context] != context[:n_context]:
            n_context -= 1  # the boundary token merged with the continuation's first one
        n_context = max(n_context, 1)
        ids = torch.tensor([whole], device=model.device)
        with torch.inference_mode():
            logits = model(ids).logits[0, :-1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        targets = ids[0, n_context:]
        picked = logprobs[n_context - 1 :].gather(1, targets[:, None])[:, 0]
        greedy = bool((logprobs[n_context - 1 :].argmax(dim=-1) == targets).all())
        results.append(Loglikelihood(float(picked.sum()), greedy, int(targets.numel())))
    return results
