"""The AsyncAPI 3.0 document of the four topics, built by FastStream from ``schemas`` (drift-tested).

A FastStream ``KafkaBroker`` that is never started declares one publisher per topic with its payload
model: FastStream then builds the channels, the messages and their payload schemas (the pydantic models'
JSON Schema, shared definitions moved to ``components/schemas``). Two things it does not model are added
here, through its own schema classes: the Kafka message binding (the key) and the headers, and one
operation per stage that sends or receives on a channel (FastStream gives each endpoint a channel of its
own, so four channels with several operations each cannot be declared as endpoints). FastStream's
default correlation id (a ``correlation_id`` header) is replaced by the request id in the payload, since
ThinkRoute sends no headers.

The workers do not run on FastStream: its subscribers commit every assigned partition's position on an
ack, and the workers commit only what was processed. The broker here only describes the contract.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from faststream.specification.asyncapi.v3_0_0.schema import (
    ApplicationSchema,
    CorrelationId,
    Message,
    Operation,
    Reference,
)
from faststream.specification.asyncapi.v3_0_0.schema.operations import Action

from schemas.topics import DEAD, DIRECT, PAYLOADS, PROMPTS, REASONING

ASYNCAPI_PATH: Final = Path(__file__).resolve().parent / "asyncapi.json"
VERSION: Final = "1.0.0"  # the contract's: messages are at ``v`` = 1
SERVER: Final = "kafka:9092"  # compose's broker (THINKROUTE_KAFKA_BOOTSTRAP)
BINDING_VERSION: Final = "0.4.0"  # the Kafka bindings FastStream writes for channels

REQUEST_ID_KEY: Final = {
    "type": "string",
    "description": "the request id, UTF-8: `{job_id}/{custom_id}`, equal to the payload's request id; the "
    "producer's default partitioner hashes it, so every message of one request goes to one partition",
}
DEAD_KEY: Final = {
    "anyOf": [{"type": "string"}, {"type": "null"}],
    "description": "the key of the record that could not be processed, as it was (the request id when a "
    "ThinkRoute stage or `thinkroute submit` produced it); absent when that record had none",
}
NO_HEADERS: Final = {
    "type": "object",
    "properties": {},
    "description": "none: ThinkRoute's producers set no Kafka headers and its consumers read none",
}
CORRELATION: Final = {
    PROMPTS: "$message.payload#/request_id",
    REASONING: "$message.payload#/prompt/request_id",
    DIRECT: "$message.payload#/prompt/request_id",
    DEAD: "$message.payload#/request_id",
}
CHANNELS: Final = {
    PROMPTS: "One prompt of a submitted job, as `thinkroute submit` (or any producer) writes it.",
    REASONING: "A prompt the router sent to the reasoning route (thinking on), with its routing decision; "
    "also an escalated direct answer's second attempt.",
    DIRECT: "A prompt the router sent to the direct route (no thinking), with its routing decision.",
    DEAD: "What a stage could not process: the reason, the error class and the original record's bytes.",
}


@dataclass(frozen=True)
class Op:
    action: Literal["send", "receive"]
    topic: str
    summary: str


OPERATIONS: Final = {
    "submitPrompts": Op("send", PROMPTS, "`thinkroute submit` publishes every prompt of a job"),
    "routePrompts": Op("receive", PROMPTS, "the router classifies prompts in micro-batches"),
    "routeToReasoning": Op("send", REASONING, "the router publishes prompts routed to reasoning"),
    "routeToDirect": Op("send", DIRECT, "the router publishes prompts routed to direct"),
    "routerDeadLetters": Op("send", DEAD, "the router dead-letters records it cannot parse or that break a limit"),
    "inferReasoning": Op("receive", REASONING, "the inference worker calls the LLM with thinking on"),
    "inferDirect": Op("receive", DIRECT, "the inference worker calls the LLM without thinking"),
    "escalate": Op("send", REASONING, "the inference worker re-publishes a too unconfident direct answer"),
    "inferenceDeadLetters": Op("send", DEAD, "the inference worker dead-letters requests it cannot serve"),
}


def broker() -> KafkaBroker:
    """The never-started broker whose publishers declare the four topics and their payload models."""
    br = KafkaBroker(SERVER, description="the Kafka bootstrap; unset: the embedded Tansu broker on loopback")
    for topic, model in PAYLOADS.items():
        br.publisher(topic, title=topic, schema=model, description=CHANNELS[topic])
    return br


def build() -> ApplicationSchema:
    spec = AsyncAPI(
        broker(),
        title="ThinkRoute topics",
        version=VERSION,
        description="The Kafka topics between ThinkRoute's stages: submit -> router -> inference, and dead letters.",
        schema_version="3.0.0",
    ).to_specification()
    assert isinstance(spec, ApplicationSchema)
    assert spec.components is not None and spec.components.messages is not None
    for topic in PAYLOADS:
        (name,) = spec.channels[topic].messages
        message = spec.components.messages[f"{topic}:{name}"]
        assert isinstance(message, Message)
        message.correlationId = CorrelationId(location=CORRELATION[topic], description="the request id")
        key = DEAD_KEY if topic == DEAD else REQUEST_ID_KEY
        message.headers = NO_HEADERS  # type: ignore[attr-defined]  # an extra field of FastStream's model
        message.bindings = {"kafka": {"key": key, "bindingVersion": BINDING_VERSION}}  # type: ignore[attr-defined]
    spec.operations = {name: _operation(op, spec) for name, op in OPERATIONS.items()}
    return spec


def _operation(op: Op, spec: ApplicationSchema) -> Operation:
    (name,) = spec.channels[op.topic].messages
    return Operation(
        action=Action(op.action),
        channel=Reference(**{"$ref": f"#/channels/{op.topic}"}),
        messages=[Reference(**{"$ref": f"#/channels/{op.topic}/messages/{name}"})],
        summary=op.summary,
    )


def render() -> str:
    """The document as JSON, keys sorted: FastStream keeps its publishers in a set, so its order varies."""
    document: dict[str, Any] = build().to_jsonable()
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(path: Path = ASYNCAPI_PATH) -> Path:
    path.write_text(render(), encoding="utf-8")
    return path
