"""One request's account with its key: request rate and tokens per minute at admission, and the
budget held call by call.

Before each upstream call the router holds the call's maximum cost (its prompt's token bound
and the most output tokens the tier can give, at the tier's price); the call goes only if the
budget covers what is spent, what other calls in flight hold, and this. When the call ends the
hold is released and the real cost added. So spending never passes a budget by more than the
gap between a call's real cost and its bound, at any concurrency and across replicas (Redis),
and a budget is rebuilt from the ledger when Redis has lost it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from openparity.route.outcome import HoldVerdict, Rejection

if TYPE_CHECKING:
    from openparity.route.keys import ApiKey
    from openparity.route.shared import SharedState

IMAGE_TOKENS = 1_600  # a bound on one image's prompt tokens (OpenAI's high detail: up to ~1.1k)


def prompt_tokens_bound(raw_body: bytes) -> int:
    """A bound on the prompt tokens of a request: byte-level tokenizers give every token at
    least one byte, and the JSON around the text more than covers the chat template's tokens;
    each image part counts IMAGE_TOKENS (its URL or base64 bytes say nothing of its tokens)."""
    images = raw_body.count(b'"image_url"') + raw_body.count(b'"input_image"')
    return len(raw_body) + IMAGE_TOKENS * images


@dataclass
class KeyAccount:
    """A gateway key's account for one request: in this process, or across replicas when
    the state is shared (`shared`); `spent_in_ledger` reads the key's spending from the ledger
    (bounded in time) when the shared state must be rebuilt."""

    key: ApiKey
    shared: SharedState | None
    spent_in_ledger: Callable[[], Awaitable[float]]

    async def admit(self, estimate: int) -> Rejection | None:
        """The request's rate and tokens-per-minute admission: None, or the 429."""
        key = self.key
        if key.rate_per_s is None and key.tokens_per_min is None:
            return None
        if self.shared is not None:
            admission = await self.shared.admit(key, estimate)
            wait, limit = admission.wait_s, admission.limit
        else:
            wait, limit = key.take(), "rate"
            if not wait:
                wait, limit = key.take_tokens(estimate), "tokens"
        if not wait:
            return None
        if limit == "tokens":
            tpm = key.tokens_per_min or 0.0
            message = (
                f"key {key.name} is over its limit of {tpm:,.0f} tokens per minute"
                f" (this request may use {estimate:,})"
            )
            if estimate > tpm:
                message += ": it can never fit; send a shorter prompt or a lower max_tokens"
        else:
            message = f"key {key.name} is over its rate limit of {key.rate_per_s:g}/s"
        error = {
            "message": message,
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
        return Rejection(429, message, error, retry_after_s=wait)

    def return_tokens(self, unused: int) -> None:
        if self.key.tokens_per_min is None or not unused:
            return
        if self.shared is not None:
            self.shared.return_tokens(self.key, unused)
        else:
            self.key.return_tokens(unused)

    async def hold(self, usd: float, member: str, seconds: float) -> HoldVerdict:
        key = self.key
        if key.budget_usd is None:
            return HoldVerdict(True)
        if self.shared is None:
            return HoldVerdict(key.hold(usd), key.spent_usd, key.held_usd)
        return await self.shared.hold(key, usd, member, seconds, self.spent_in_ledger)

    def settle(self, member: str, held: float, cost: float) -> None:
        if self.key.budget_usd is None or self.shared is None:
            self.key.settle(held, cost)
        else:
            self.shared.settle(self.key, member, held, cost)

    def refusal(self, usd: float, verdict: HoldVerdict) -> Rejection:
        key = self.key
        budget = key.budget_usd or 0.0
        if verdict.spent_usd >= budget:
            message = f"key {key.name} has spent its budget of ${budget:g}"
        else:
            message = (
                f"key {key.name}'s budget of ${budget:g} cannot cover this call's maximum cost"
                f" of ${usd:.6g} (spent ${verdict.spent_usd:.6g}, ${verdict.held_usd:.6g} held"
                " by calls in flight); a lower max_tokens costs less"
            )
        error = {
            "message": message,
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
        return Rejection(429, message, error)
