"""assistant_turn: the assistant's turn as a chat template writes it, or a clear refusal."""

import pytest

from openparity.models.chat_turn import assistant_turn
from openparity.models.errors import UnsupportedCapabilityError


def chatml(messages, opened):
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if opened else "")


def test_the_turn_is_the_reply_and_its_end_marker():
    context, turn = assistant_turn(chatml, [{"role": "user", "content": "问"}], "答 42", "m")
    assert context.endswith("<|im_start|>assistant\n") and turn == "答 42<|im_end|>"


def test_templates_that_do_not_write_the_reply_back_are_refused():
    def rewrites_history(messages, opened):  # e.g. drops the system turn once a reply exists
        return chatml(messages if opened else messages[1:], opened)

    def drops_reply(messages, opened):
        kept = [m if m["role"] != "assistant" else {**m, "content": ""} for m in messages]
        return chatml(kept, opened)

    asked = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    with pytest.raises(UnsupportedCapabilityError, match="differently"):
        assistant_turn(rewrites_history, asked, "a", "m")
    with pytest.raises(UnsupportedCapabilityError, match="does not write the assistant's reply"):
        assistant_turn(drops_reply, asked, "a", "m")
