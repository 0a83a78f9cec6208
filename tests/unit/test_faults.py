from collections import Counter

import pytest
from starlette.testclient import TestClient

from workers.replay.faults import FaultPlan
from workers.replay.records import load_default
from workers.replay.server import LatencyModel, create_app

BODY = {"model": "Qwen/Qwen3-30B-A3B", "messages": [{"role": "user", "content": "What is 2+2?"}]}


def test_draws_follow_the_shares_and_the_seed() -> None:
    plan = FaultPlan(share_5xx=0.2, share_429=0.1, share_reset=0.1, seed=7)
    draws = Counter(plan.draw("x") for _ in range(10_000))
    assert abs(draws["5xx"] / 10_000 - 0.2) < 0.02
    assert abs(draws["429"] / 10_000 - 0.1) < 0.015
    assert abs(draws["reset"] / 10_000 - 0.1) < 0.015
    assert draws["timeout"] == 0 and draws["slow"] == 0
    again = FaultPlan(share_5xx=0.2, share_429=0.1, share_reset=0.1, seed=7)
    twin = FaultPlan(share_5xx=0.2, share_429=0.1, share_reset=0.1, seed=7)
    assert [again.draw("x") for _ in range(50)] == [twin.draw("x") for _ in range(50)]
    with pytest.raises(ValueError):
        FaultPlan(share_5xx=0.7, share_429=0.5)
    with pytest.raises(ValueError, match="unknown"):
        FaultPlan.from_dict({"share_teapot": 1})


def test_fail_marker_always_fails_and_other_prompts_pass() -> None:
    plan = FaultPlan(fail_marker="POISON")
    assert plan.active
    assert {plan.draw("a POISON b") for _ in range(20)} == {"5xx"}
    assert {plan.draw("fine") for _ in range(20)} == {"ok"}


def test_server_injects_errors_and_the_plan_changes_at_run_time() -> None:
    app = create_app(load_default(), LatencyModel(time_scale=0), FaultPlan(share_429=1.0, retry_after_s=1.5))
    with TestClient(app) as client:
        r = client.post("/v1/chat/completions", json=BODY)
        assert r.status_code == 429 and r.headers["retry-after"] == "1.5"
        assert r.json() == {
            "error": {
                "message": "injected fault: too many requests",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
        assert client.post("/faults", json={"share_5xx": 1.0}).json()["share_5xx"] == 1.0
        unavailable = client.post("/v1/chat/completions", json=BODY)
        assert unavailable.status_code == 503
        assert unavailable.json()["error"]["type"] == "server_error"
        assert unavailable.json()["error"]["code"] == "service_unavailable"
        assert client.post("/faults", json={"share_5xx": 2.0}).status_code == 400
        assert client.post("/faults", json={}).status_code == 200
        ok = client.post("/v1/chat/completions", json=BODY)
        assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]
        stats = client.get("/stats").json()
        assert stats["faults"] == {"429": 1, "5xx": 1}
        assert (stats["received"], stats["requests"]) == (3, 1)  # every request that reached it; answered
