"""Which text of a request the classifier reads."""

from __future__ import annotations

from schemas.batch import ChatBody


def prompt_text(body: ChatBody) -> str:
    """The last user message (what the question is); the whole conversation if it has no user turn."""
    for message in reversed(body.messages):
        if message.role == "user":
            return message.content
    return "\n".join(m.content for m in body.messages)
