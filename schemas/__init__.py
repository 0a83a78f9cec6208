"""ThinkRoute's only wire and store formats: versioned pydantic models, ``extra="forbid"``.

Every Kafka message and Redis record is one of these models; the JSON Schema of each is generated
into ``schemas/json`` by ``python -m schemas`` and a test fails when the two drift apart. The topics'
default names are in ``schemas.topics``; ``python -m schemas`` also writes their AsyncAPI 3.0 document,
``schemas/asyncapi.json`` (``schemas.asyncapi``), drift-tested the same way.
"""

from schemas.batch import BatchOutputLine, BatchRequestLine, ChatBody, ChatMessage, SimplePromptLine
from schemas.messages import AttemptSummary, DeadLetter, PromptMessage, RouteDecision, RoutedMessage
from schemas.records import JobMeta, JobTotals, RequestResult, Usage

__all__ = [
    "AttemptSummary",
    "BatchOutputLine",
    "BatchRequestLine",
    "ChatBody",
    "ChatMessage",
    "DeadLetter",
    "JobMeta",
    "JobTotals",
    "PromptMessage",
    "RequestResult",
    "RouteDecision",
    "RoutedMessage",
    "SimplePromptLine",
    "Usage",
]
