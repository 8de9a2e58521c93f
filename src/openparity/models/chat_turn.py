"""The text of one assistant turn as a model's chat template writes it: what a chat
log-likelihood request (`LoglikelihoodRequest(messages=...)`) scores."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from openparity.models.errors import UnsupportedCapabilityError
from openparity.models.types import Message

# render(messages, add_generation_prompt) -> the template's text
Render = Callable[[list[dict[str, object]], bool], str]


def assistant_turn(
    render: Render, messages: Sequence[Message], reply: str, model: str
) -> tuple[str, str]:
    """(context, continuation): the conversation up to the opened assistant turn, and that
    turn as the template writes it for `reply`, end-of-turn marker included (trailing
    whitespace dropped). A template that rewrites the earlier turns once a reply follows, or
    that drops the reply, cannot be scored this way: UnsupportedCapabilityError."""
    asked = [dict(message) for message in messages]
    context = render(asked, True)
    whole = render([*asked, {"role": "assistant", "content": reply}], False)
    if not whole.startswith(context):
        raise UnsupportedCapabilityError(
            f"{model}: its chat template writes the conversation differently once the "
            "assistant has replied, so the reply's likelihood is not defined",
            hint="score with a generative task, or give the model a standard chat template",
        )
    continuation = whole[len(context) :].rstrip()
    if reply.strip() not in continuation:
        raise UnsupportedCapabilityError(
            f"{model}: its chat template does not write the assistant's reply back",
            hint="score with a generative task, or give the model a standard chat template",
        )
    return context, continuation
