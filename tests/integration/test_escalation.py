"""Cascade: a direct answer below the confidence threshold is escalated once to the reasoning topic.

The replay server models the answer letter's log-probability from the recorded models' agreement
(`workers.replay.logprobs`). Qwen3's no-thinking answer to question 10628 agrees with 0 of the 29 recorded
models (p = 1/31 = 0.032); to question 10542 with 28 of 28 (p = 29/30 = 0.967). With a threshold of 0.5
the first is escalated (recorded: 193 tokens without thinking, 800 with), the second is not (113 tokens).
"""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from schemas.batch import ChatBody, ChatMessage
from schemas.messages import AttemptSummary, PromptMessage, RoutedMessage
from schemas.records import JobMeta
from tests.factories import route_decision
from tests.helpers import wait_until
from tests.integration.helpers import assert_exact_totals, committed, produce, read_topic, register, running, signed
from workers.data import MMLU_PRO_TEST, read_jsonl
from workers.data.prompts import format_mcq_prompt
from workers.inference.serve import serve_inference
from workers.kafka.clients import ensure_topics, kafka_config
from workers.replay.answer import count_prompt_tokens
from workers.settings import Settings
from workers.store.jobstore import Store, attempt_key, escalated_key
from workers.submit.jobs import summary, wait_for_job

pytestmark = pytest.mark.integration
MODEL = "Qwen/Qwen3-30B-A3B"
LOW, HIGH = 10628, 10542  # see the module doc
NOTHINK_TOKENS = {LOW: 193, HIGH: 113}
THINK_TOKENS = {LOW: 800}


def _questions() -> dict[int, ChatBody]:
    wanted = {LOW, HIGH}
    out = {}
    for q in read_jsonl(MMLU_PRO_TEST):
        if int(q["question_id"]) in wanted:
            text = format_mcq_prompt(q["question"], q["options"])
            out[int(q["question_id"])] = ChatBody(messages=[ChatMessage(role="user", content=text)])
    return out


def _direct(job: str, qid: int, body: ChatBody, line: int) -> RoutedMessage:
    prompt = PromptMessage(
        request_id=f"{job}/q{qid}", job_id=job, custom_id=f"q{qid}", line=line, body=body, submitted_at=time.time()
    )
    route = route_decision(
        "direct", category="computer science", model=MODEL, policy_version="test", classifier_version="test"
    )
    return RoutedMessage(prompt=prompt, route=route, routed_at=time.time())


async def test_low_confidence_answer_is_escalated_once(settings: Settings, redis: Redis, unique: str) -> None:
    s = settings.model_copy(update={"inference": settings.inference.model_copy(update={"escalate_below": 0.5})})
    kc, t = kafka_config(s), s.topics
    await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], s.partitions)
    store = Store(redis)
    bodies = _questions()
    job, job_b = f"job-esc-{unique}", f"job-esc-b-{unique}"
    meta = JobMeta(job_id=job, total=2, source="test", submitted_at=time.time())
    meta_b = JobMeta(job_id=job_b, total=1, source="test", submitted_at=time.time())
    low, high = _direct(job, LOW, bodies[LOW], 1), _direct(job, HIGH, bodies[HIGH], 2)
    secret = await register(store, meta, [low.prompt.request_id, high.prompt.request_id])
    low, high = signed(low, secret), signed(high, secret)

    # job B: a worker crashed after recording the first attempt and before publishing the escalation
    low_b = _direct(job_b, LOW, bodies[LOW], 1)
    low_b = signed(low_b, await register(store, meta_b, [low_b.prompt.request_id]))
    crashed = AttemptSummary(
        route=low_b.route,
        model=MODEL,
        answer="The answer is (X).",
        confidence=1 / 31,
        threshold=0.5,
        prompt_tokens=count_prompt_tokens([m.model_dump() for m in bodies[LOW].messages]),
        completion_tokens=NOTHINK_TOKENS[LOW],
    )
    assert await store.write_escalation(job_b, low_b.prompt.request_id, crashed)

    n = s.partitions
    async with running(lambda stop: serve_inference(s, stop)) as workers:
        items = [(m.prompt.request_id.encode(), m.model_dump_json().encode()) for m in (low, high, low_b)]
        await produce(kc.bootstrap, t.direct, items)
        await wait_for_job(store, meta, check=workers.check, timeout_s=120)
        await wait_for_job(store, meta_b, check=workers.check, timeout_s=120)

        results = {r.custom_id: r for r in await assert_exact_totals(store, job, completed=2)}
        esc, kept = results[f"q{LOW}"], results[f"q{HIGH}"]
        assert esc.route.route == "reasoning" and esc.route.use_reasoning and esc.route.reason == "category+escalated"
        assert esc.escalated_from is not None
        first = esc.escalated_from
        assert first.route.route == "direct" and first.confidence == pytest.approx(1 / 31, abs=1e-6)
        assert first.completion_tokens == NOTHINK_TOKENS[LOW] and first.reasoning_tokens == 0
        assert esc.usage.completion_tokens == THINK_TOKENS[LOW]
        assert esc.usage.reasoning_tokens == THINK_TOKENS[LOW] - 7
        assert kept.route.route == "direct" and kept.escalated_from is None
        assert kept.usage.completion_tokens == NOTHINK_TOKENS[HIGH]

        # both attempts accounted: the escalation bucket holds exactly the first attempt
        totals = await store.totals(job)
        assert totals.escalations.requests == 1
        assert totals.escalations.prompt_tokens == first.prompt_tokens
        assert totals.escalations.completion_tokens == NOTHINK_TOKENS[LOW]
        assert await store.redis.scard(escalated_key(job)) == 1  # type: ignore[misc]
        stored = AttemptSummary.model_validate_json(await store.redis.get(attempt_key(job, esc.request_id)))
        assert stored == first
        sm = await summary(store, meta, wall_s=1.0)
        assert sm["escalations"] == 1
        assert sm["escalation_tokens"]["completion"] == NOTHINK_TOKENS[LOW]
        assert sm["tokens"]["completion"] == NOTHINK_TOKENS[LOW] + THINK_TOKENS[LOW] + NOTHINK_TOKENS[HIGH]
        assert sm["tokens"]["prompt"] == first.prompt_tokens + esc.usage.prompt_tokens + kept.usage.prompt_tokens

        # job B: the redelivered direct message re-published the escalation but did not count it again
        totals_b = await store.totals(job_b)
        assert (totals_b.completed, totals_b.escalations.requests) == (1, 1)
        assert totals_b.escalations.completion_tokens == NOTHINK_TOKENS[LOW]
        assert totals_b.routes["reasoning"].completion_tokens == THINK_TOKENS[LOW]

        # exactly one escalated message per escalated request on the reasoning topic
        escalated = [RoutedMessage.model_validate_json(r.value) for r in await read_topic(kc.bootstrap, t.reasoning, 2)]
        assert sorted(m.prompt.request_id for m in escalated) == sorted([esc.request_id, low_b.prompt.request_id])
        assert all(m.previous_attempt is not None for m in escalated)

        # redeliveries: the direct message and the escalated message again; nothing changes
        again = next(m for m in escalated if m.prompt.job_id == job)
        await produce(kc.bootstrap, t.direct, [items[0]])
        await produce(kc.bootstrap, t.reasoning, [(again.prompt.request_id.encode(), again.model_dump_json().encode())])

        async def consumed() -> bool:
            workers.check()
            got = await committed(kc.bootstrap, s.inference.group, [t.reasoning, t.direct], n)
            return sum(v for v in got.values() if v > 0) == 3 + 1 + 2 + 1  # 3 direct + 1 again, 2 + 1 reasoning

        await wait_until(consumed, 60, "the redelivered messages to be committed")
        assert await store.totals(job) == totals
        assert await store.totals(job_b) == totals_b


SMALL, LARGE = "Meta-Llama-3_1-8B-Instruct", "Meta-Llama-3_1-70B-Instruct"
SMALL_LOW = 1303  # Llama-3.1-8B's letter agrees with 0 of 28 other models; recorded 439 / 200 chars -> 110 / 50 tokens


async def test_escalation_to_a_larger_model_on_its_own_endpoint(settings: Settings, redis: Redis, unique: str) -> None:
    """Model routing: small model direct, escalated to the large one, served by a per-model URL."""
    inference = settings.inference.model_copy(update={"escalate_below": 0.5, "escalate_model": LARGE})
    s = settings.model_copy(
        update={
            "inference": inference,
            "llm_reasoning_base_url": "http://127.0.0.1:9/v1",  # nothing listens: only the model URL works
            "llm_model_urls": {LARGE: settings.llm_base_url},
        }
    )
    kc, t = kafka_config(s), s.topics
    await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], s.partitions)
    store = Store(redis)
    q = next(q for q in read_jsonl(MMLU_PRO_TEST) if int(q["question_id"]) == SMALL_LOW)
    body = ChatBody(messages=[ChatMessage(role="user", content=format_mcq_prompt(q["question"], q["options"]))])
    job = f"job-esc-m-{unique}"
    meta = JobMeta(job_id=job, total=1, source="test", submitted_at=time.time())
    msg = _direct(job, SMALL_LOW, body, 1)
    msg = msg.model_copy(update={"route": msg.route.model_copy(update={"model": SMALL})})
    msg = signed(msg, await register(store, meta, [msg.prompt.request_id]))
    async with running(lambda stop: serve_inference(s, stop)) as workers:
        await produce(kc.bootstrap, t.direct, [(msg.prompt.request_id.encode(), msg.model_dump_json().encode())])
        await wait_for_job(store, meta, check=workers.check, timeout_s=120)
    (result,) = await assert_exact_totals(store, job, completed=1)
    assert result.route.model == LARGE and result.model == LARGE and result.route.route == "reasoning"
    assert result.usage.completion_tokens == 50
    assert result.escalated_from is not None and result.escalated_from.model == SMALL
    assert result.escalated_from.completion_tokens == 110
    assert result.escalated_from.confidence == pytest.approx(1 / 30, abs=1e-6)
    totals = await store.totals(job)
    assert (totals.escalations.requests, totals.escalations.completion_tokens) == (1, 110)
