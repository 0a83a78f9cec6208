"""Which text of a request the classifier reads."""

from __future__ import annotations

from schemas.batch import ChatBody


def prompt_text(body: ChatBody) -> str:
    """The question: the text of the last user message that has text (its text parts joined by newlines).

    Images, audio and files are not read. Tool messages are not read either: a tool's output is data the
    answer will use, not the question (and the assistant's tool calls are its own turn). A conversation
    with no user text is read whole: the text of every message, system and developer instructions, the
    assistant's turns and tool outputs included, one per line; "" when it has no text at all.
    """
    for message in reversed(body.messages):
        if message.role == "user" and (text := message.text()).strip():
            return text
    return "\n".join(text for m in body.messages if (text := m.text()))
