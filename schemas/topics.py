"""The four Kafka topics and what travels on each: the wire contract's names.

These are the default topic names (``workers.settings.Topics`` takes them as its defaults; a deployment
may rename them with ``THINKROUTE_TOPICS__*``). Every message is keyed by its request id, the UTF-8 bytes
of ``{job_id}/{custom_id}``, and carries no Kafka headers.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel

from schemas.messages import DeadLetter, PromptMessage, RoutedMessage

PROMPTS: Final = "thinkroute.prompts"
REASONING: Final = "thinkroute.reasoning"
DIRECT: Final = "thinkroute.direct"
DEAD: Final = "thinkroute.dead"

PAYLOADS: Final[dict[str, type[BaseModel]]] = {
    PROMPTS: PromptMessage,
    REASONING: RoutedMessage,
    DIRECT: RoutedMessage,
    DEAD: DeadLetter,
}
