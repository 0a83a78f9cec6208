"""Routing quality: the shipped classifier's accuracy, classify == router, calibration, replay evaluation.

Runs without torch: the artefact is composed from the shipped adapter (seconds). The training test at
the end needs torch and skips cleanly without it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from schemas.batch import ChatBody
from schemas.messages import PromptMessage
from workers.classifier.build import CARD_ASSET, report
from workers.classifier.cache import ensure_artifact
from workers.classifier.model import Classification, Classifier
from workers.evaluation.calibrate import _effective, _share, calibrate, dump_policy, threshold_for_share
from workers.evaluation.classify_file import classify_rows, line_text
from workers.evaluation.heldout import heldout_items
from workers.evaluation.replay import evaluate_replay, outcome, read_records, select, split_of
from workers.router.policy import Policy, load_policy
from workers.router.worker import RouterWorker
from workers.settings import Settings, Topics

pytestmark = pytest.mark.timeout(900)
SEED = 13
SHARE_TOLERANCE = 0.01  # calibration hits the target share on its own data within 1 point


def _cache() -> Path:
    return Path(os.environ.get("THINKROUTE_CACHE_DIR") or Path.home() / ".cache" / "thinkroute")


@pytest.fixture(scope="module")
def classifier() -> Iterator[Classifier]:
    yield Classifier.load(ensure_artifact(_cache(), progress=False), providers="cpu")


@pytest.fixture(scope="module")
def policy(classifier: Classifier) -> Policy:
    return load_policy(None, classifier.labels)


def test_card_records_heldout_accuracy_at_target() -> None:
    card = json.loads(CARD_ASSET.read_text())
    m = card["metrics"]
    assert m["heldout_accuracy"] >= 0.85  # the target, measured through the runtime model
    assert m["heldout_macro_f1"] >= 0.85
    assert card["split"]["heldout"] == sum(row["n"] for row in m["per_category"].values()) > 2000
    assert card["neighbour_vote"]["bank"] == card["split"]["train"]  # the vote only sees training questions
    assert card["other_metrics"]["gsm8k_unseen_as_math"]["accuracy"] >= 0.95
    assert card["sizes"]["adapter_npz_bytes"] < 3_000_000
    assert "accuracy" in report(card)


def test_heldout_sample_remeasured(classifier: Classifier) -> None:
    """A fixed sample of 400 held-out questions, through the composed ONNX model."""
    items = heldout_items(SEED)
    rng = np.random.default_rng(0)
    sample = [items[i] for i in rng.choice(len(items), 400, replace=False)]
    pred = classifier.classify([it.fixed_text(SEED) for it in sample])
    acc = float(np.mean([p.category == it.label for p, it in zip(pred, sample, strict=True)]))
    recorded = json.loads(CARD_ASSET.read_text())["metrics"]["heldout_accuracy"]
    assert acc >= 0.82 and abs(acc - recorded) < 0.04, acc


def test_composed_model_matches_training_reference(classifier: Classifier) -> None:
    card = json.loads((ensure_artifact(_cache(), progress=False) / "card.json").read_text())
    assert card["composed"]["fp32_max_abs_diff"] < 2e-3
    assert card["composed"]["runtime_top1_agreement"] >= 0.8
    assert card["composed"]["seconds"] < 180


def test_reasoning_score_orders_difficulty(classifier: Classifier) -> None:
    easy = "What is 2 + 3?"
    hard = (
        "A thin uniform rod of mass M and length L pivots about one end. A bullet of mass m and speed v embeds "
        "at the free end. Derive the angular velocity just after impact and the maximum angle of swing."
    )
    e, h = classifier.classify([easy, hard])
    assert e.reasoning_score is not None and h.reasoning_score is not None
    assert h.reasoning_score > e.reasoning_score
    card = json.loads(CARD_ASSET.read_text())
    assert card["reasoning_score"]["heldout_pearson"] > 0.3


LINES: list[dict[str, Any]] = [
    {"id": "q1", "question": "What is the molar mass of H2SO4?", "options": ["49.0", "98.1", "96.1"], "x": 1},
    {
        "id": "q2",
        "question": "What was a main cause of the collapse of the Western Roman Empire in the fifth century?",
        "choices": ["Barbarian invasions", "The printing press"],
        "keep": [1],
    },
    {
        "id": "p1",
        "prompt": "Under the doctrine of promissory estoppel, can a promise be enforced by a court without "
        "consideration when the promisee relied on it to their detriment?",
    },
    {
        "custom_id": "b1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "Qwen/Qwen3-30B-A3B",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is the worst-case time complexity of quicksort?"},
            ],
        },
    },
]


def test_classify_adds_route_and_passes_fields_through(classifier: Classifier, policy: Policy) -> None:
    out = list(classify_rows(LINES, classifier, policy, "default-model"))
    assert [o["category"] for o in out] == ["chemistry", "history", "law", "computer science"]
    assert out[0]["x"] == 1 and out[1]["keep"] == [1] and out[3]["custom_id"] == "b1"
    assert out[3]["model"] == "Qwen/Qwen3-30B-A3B" and out[2]["model"] == "default-model"
    for o in out:
        assert isinstance(o["use_reasoning"], bool) and 0 < o["confidence"] <= 1
        assert o["route"] == ("reasoning" if o["use_reasoning"] else "direct")


def test_classify_and_router_decide_identically(classifier: Classifier, policy: Policy) -> None:
    rows = LINES + [
        {"id": f"h{i}", "question": it.question, "options": list(it.options)}
        for i, it in enumerate(heldout_items(SEED)[:60])
    ]
    via_file = list(classify_rows(rows, classifier, policy, "default-model"))
    prompts = []
    for i, row in enumerate(rows):
        text, model = line_text(row)
        body = (
            ChatBody.model_validate(row["body"])
            if "body" in row
            else ChatBody(
                model=model,
                messages=[{"role": "user", "content": text}],  # type: ignore[list-item]
            )
        )
        prompts.append(
            (
                None,
                PromptMessage(
                    request_id=f"r{i}", job_id="j", custom_id=f"c{i}", line=i + 1, body=body, submitted_at=0.0
                ),
            )
        )
    s = Settings(default_model="default-model", topics=Topics(prompts="p", reasoning="r", direct="d", dead="x"))
    worker = RouterWorker(s, cast(Any, None), cast(Any, None), classifier, policy)
    routed = asyncio.run(worker._classify(cast(Any, prompts)))
    keys = ("category", "confidence", "use_reasoning", "reasoning_effort", "reasoning_score", "model", "reason")
    assert [{k: getattr(m.route, k) for k in keys} for _, m in routed] == [{k: o[k] for k in keys} for o in via_file]
    assert {o["use_reasoning"] for o in via_file} == {True, False}  # both routes occur


def _c(score: float | None, category: str = "computer science", confidence: float = 0.9) -> Classification:
    return Classification(category, confidence, False, 10, score)


def test_policy_combines_category_rule_score_and_floor() -> None:
    policy = Policy.model_validate(
        {
            "version": "t",
            "confidence_floor": 0.4,
            "low_confidence": {"use_reasoning": False},
            "default": {"use_reasoning": "score"},
            "categories": {
                "math": {"use_reasoning": "score", "score_offset": 0.2, "reasoning_effort": "medium"},
                "law": {"use_reasoning": False},
            },
            "reasoning": {"threshold": 0.5},
        }
    )
    assert policy.decide(_c(0.6), None, "m", "v").use_reasoning is True
    assert policy.decide(_c(0.4), None, "m", "v").use_reasoning is False
    d = policy.decide(_c(0.35, "math"), None, "m", "v")
    assert d.use_reasoning and d.reasoning_effort == "medium" and d.reason == "category+score"
    assert policy.decide(_c(0.99, "law"), None, "m", "v").use_reasoning is False
    low = policy.decide(_c(0.99, confidence=0.2), None, "m", "v")
    assert low.use_reasoning is False and low.reason == "confidence_floor"
    assert policy.decide(_c(None), None, "m", "v").use_reasoning is False  # no score: fallback


def test_threshold_for_share_is_exact_on_distinct_scores() -> None:
    rng = np.random.default_rng(1)
    values = rng.random(1000).tolist()
    fixed: list[bool | None] = [None] * 1000
    for target in (0.0, 0.1, 0.25, 0.5, 0.9, 1.0):
        t = threshold_for_share(fixed, values, target)
        assert abs(_share(fixed, values, t) - target) <= 0.001


def test_calibration_hits_target_share(classifier: Classifier, policy: Policy) -> None:
    """On its own data within SHARE_TOLERANCE; on the held-out MMLU-Pro questions within 3 points."""
    new, info = calibrate(policy, classifier, share=0.3)
    assert abs(info["achieved"]["reasoning_share"] - 0.3) <= SHARE_TOLERANCE
    reloaded = Policy.model_validate(__import__("yaml").safe_load(dump_policy(new)))
    assert reloaded.reasoning is not None and reloaded.reasoning.calibration["target"] == {"reasoning_share": 0.3}
    held = heldout_items(SEED)[::3]
    classes = classifier.classify([it.fixed_text(SEED) for it in held])
    fixed, values = _effective(reloaded, classes)
    assert abs(_share(fixed, values, reloaded.reasoning.threshold) - 0.3) <= 0.03


def test_shipped_policy_is_calibrated(policy: Policy) -> None:
    assert policy.reasoning is not None and policy.reasoning.calibration["target"]["reasoning_share"] == 0.3


def test_replay_eval_on_report_split(classifier: Classifier, policy: Policy) -> None:
    records = read_records("qwen3")
    report_part = select(records, "report")
    assert 80 < len(report_part) < 125 and all(split_of(r) == "report" for r in report_part)
    result = evaluate_replay(report_part, classifier, policy)
    p = result["policies"]
    n = len(report_part)
    assert p["always"]["accuracy"] == round(sum(bool(r["think_correct"]) for r in report_part) / n, 4)
    assert p["never"]["mean_tokens"] == round(sum(float(r["nothink_n_tokens"]) for r in report_part) / n, 1)
    assert p["always"]["reasoning_share"] == 1.0 and p["never"]["reasoning_share"] == 0.0
    assert p["oracle"]["accuracy"] >= max(p["always"]["accuracy"], p["never"]["accuracy"])
    assert p["never"]["accuracy"] <= p["router"]["accuracy"] + 0.05
    assert set(result["per_category"]) == {"computer science"}


def test_outcome_uses_effort_fields() -> None:
    rec = {
        "nothink_correct": False,
        "nothink_n_tokens": 100,
        "think_correct": True,
        "think_n_tokens": 900,
        "think_bias_19_correct": True,
        "think_bias_19_n_tokens": 500,
    }
    assert outcome(rec, False).tokens == 100
    assert outcome(rec, True, "medium").tokens == 500
    assert outcome(rec, True, "low").tokens == 900  # no low-effort run recorded: full thinking


def test_train_skips_or_runs_without_error() -> None:
    pytest.importorskip("torch")
    from workers.classifier.corpus import load_items

    items, info = load_items(SEED)
    assert info["replay_questions_excluded"] >= 200
    assert not any(
        it.side == "train" and it.source == "mmlu_pro" and it.key in {i.key for i in items if i.side == "replay"}
        for it in items
    )
