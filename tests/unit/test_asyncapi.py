"""The AsyncAPI document of the topics: committed == generated, and it says what the code does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from pydantic import BaseModel

from schemas import asyncapi, topics
from schemas.batch import ChatBody
from schemas.messages import DeadLetter, PromptMessage, RoutedMessage
from schemas.records import JobMeta
from workers.kafka.deadletter import dead_letter
from workers.settings import Topics
from workers.submit.batchfile import InputRequest
from workers.submit.jobs import submit

EXPECTED_PAYLOADS = {
    "thinkroute.prompts": "PromptMessage",
    "thinkroute.reasoning": "RoutedMessage",
    "thinkroute.direct": "RoutedMessage",
    "thinkroute.dead": "DeadLetter",
}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(asyncapi.ASYNCAPI_PATH.read_text(encoding="utf-8"))
    return document


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        assert part in node, f"{ref}: no {part!r}"
        node = node[part]
    return node


def channel_message(doc: dict[str, Any], topic: str) -> dict[str, Any]:
    (ref,) = doc["channels"][topic]["messages"].values()
    message: dict[str, Any] = resolve(doc, ref["$ref"])
    return message


def test_committed_document_matches_the_generator() -> None:
    assert asyncapi.ASYNCAPI_PATH.is_file(), "schemas/asyncapi.json missing: run `python -m schemas`"
    assert asyncapi.ASYNCAPI_PATH.read_text(encoding="utf-8") == asyncapi.render(), (
        "schemas/asyncapi.json drifted: run `python -m schemas`"
    )


def test_four_channels_with_their_payload_schemas(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert set(doc["channels"]) == set(EXPECTED_PAYLOADS)
    for topic, title in EXPECTED_PAYLOADS.items():
        channel = doc["channels"][topic]
        assert channel["address"] == topic and channel["bindings"]["kafka"]["topic"] == topic
        payload = resolve(doc, channel_message(doc, topic)["payload"]["$ref"])
        assert payload["title"] == title


@pytest.mark.parametrize("model", [PromptMessage, RoutedMessage, DeadLetter])
def test_payload_schemas_are_the_models_json_schema(doc: dict[str, Any], model: type[BaseModel]) -> None:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    components = doc["components"]["schemas"]
    assert components[model.__name__] == schema
    for name, definition in defs.items():
        assert components[name] == definition


def test_keys_headers_and_correlation_ids(doc: dict[str, Any]) -> None:
    for topic in EXPECTED_PAYLOADS:
        message = channel_message(doc, topic)
        key = message["bindings"]["kafka"]["key"]
        if topic == "thinkroute.dead":
            assert key["anyOf"] == [{"type": "string"}, {"type": "null"}]
        else:
            assert key["type"] == "string" and "request id" in key["description"]
        assert message["headers"]["type"] == "object" and message["headers"]["properties"] == {}
        location = message["correlationId"]["location"]
        assert location.startswith("$message.payload#/"), "ThinkRoute sends no headers to correlate on"
        # the pointer names a field of the payload schema
        node = resolve(doc, message["payload"]["$ref"])
        for part in location.removeprefix("$message.payload#/").split("/"):
            node = node["properties"][part]
            node = resolve(doc, node["$ref"]) if "$ref" in node else node
        assert node["title"] == "Request Id"


def test_operations_reference_existing_channels_and_messages(doc: dict[str, Any]) -> None:
    by_topic: dict[str, set[str]] = {}
    for name, op in doc["operations"].items():
        channel = resolve(doc, op["channel"]["$ref"])
        (message_ref,) = op["messages"]
        assert resolve(doc, message_ref["$ref"]) == channel["messages"]["Message"], name
        by_topic.setdefault(channel["address"], set()).add(op["action"])
    assert by_topic == {
        "thinkroute.prompts": {"send", "receive"},
        "thinkroute.reasoning": {"send", "receive"},
        "thinkroute.direct": {"send", "receive"},
        "thinkroute.dead": {"send"},
    }


def test_settings_default_to_the_contract_topic_names() -> None:
    assert Topics().model_dump() == {
        "prompts": topics.PROMPTS,
        "reasoning": topics.REASONING,
        "direct": topics.DIRECT,
        "dead": topics.DEAD,
    }
    assert {t: m.__name__ for t, m in topics.PAYLOADS.items()} == EXPECTED_PAYLOADS


class _RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, Any]]] = []

    async def send(self, topic: str, value: bytes, **kw: Any) -> asyncio.Future[None]:
        self.sent.append((topic, value, kw))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


class _Store:
    def __init__(self) -> None:
        self.jobs: list[JobMeta] = []

    async def register_job(self, meta: JobMeta, request_ids: Sequence[str], secret: bytes) -> None:
        self.jobs.append(meta)

    async def start_job(self, job_id: str) -> str:
        return "running"


async def test_submit_keys_prompts_by_request_id_and_sends_no_headers() -> None:
    producer, store = _RecordingProducer(), _Store()
    body = ChatBody.model_validate({"messages": [{"role": "user", "content": "2+2?"}]})
    requests = [InputRequest(line=i, custom_id=f"c{i}", body=body) for i in (1, 2)]
    meta = await submit(producer, store, topics.PROMPTS, requests, source="t", job_id="job-x")  # type: ignore[arg-type]
    assert store.jobs == [meta.model_copy(update={"state": "submitting"})] and meta.state == "running"
    assert [kw for _, _, kw in producer.sent] == [{"key": b"job-x/c1"}, {"key": b"job-x/c2"}]
    for topic, value, kw in producer.sent:
        assert topic == topics.PROMPTS
        assert PromptMessage.model_validate_json(value).request_id.encode() == kw["key"]


def _record(key: bytes | None) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topics.PROMPTS,
        partition=1,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=b"{not json",
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=9,
        headers=(),
    )


def test_dead_letter_keeps_the_original_key_or_none() -> None:
    letter = dead_letter("router", _record(b"job-x/c1"), "bad json", ValueError("x"))
    assert letter.key == "job-x/c1" and (letter.topic, letter.partition, letter.offset) == (topics.PROMPTS, 1, 7)
    assert dead_letter("router", _record(None), "bad json", "ValueError").key is None
