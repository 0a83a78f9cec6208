"""``python -m loadgen.budget``: the budget accuracy table (requested vs planned vs realised share and tokens)
and the submit-side planning cost per 1,000 prompts.

Planned: ``workers.router.plan.plan_job`` with the shipped classifier and policy, on FILE. Realised (``--run``):
one ``thinkroute run FILE --time-scale 0 --json`` per budget on the embedded stack (the replay server answers),
its summary's routes and reasoning tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from workers.classifier.cache import ensure_artifact
from workers.classifier.model import Classifier
from workers.router.plan import Budget, plan_job
from workers.router.policy import load_policy
from workers.settings import Settings
from workers.submit.batchfile import read_batch

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILE = ROOT / "loadgen" / "samples" / "mmlu_pro_200.jsonl"
BUDGETS = ("share=0.1", "share=0.3", "share=0.5", "tokens=50000", "tokens=150000")


def realised(file: Path, budget: Budget) -> dict[str, Any]:
    flag = "--reasoning-share" if budget.kind == "share" else "--reasoning-tokens"
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINKROUTE_")}
    if "THINKROUTE_CACHE_DIR" in os.environ:
        env["THINKROUTE_CACHE_DIR"] = os.environ["THINKROUTE_CACHE_DIR"]
    argv = [sys.executable, "-m", "workers", "run", str(file), flag, str(budget.value), "--time-scale", "0", "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"thinkroute run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout)
    return {
        "reasoning": summary["routes"]["reasoning"],
        "share": summary["plan"]["realised"]["share"],
        "reasoning_tokens": summary["tokens_by_route"]["reasoning"]["reasoning"],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loadgen.budget", description=__doc__)
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE)
    ap.add_argument("--budget", action="append", help=f"a budget (repeatable; default {', '.join(BUDGETS)})")
    ap.add_argument("--run", action="store_true", help="also run each budget on the embedded stack (realised)")
    ap.add_argument("--cost-prompts", type=int, default=1000, help="prompts classified for the planning cost")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    s = Settings()
    requests, bad = read_batch(args.file, s.max_prompt_chars, s.max_tokens)
    if bad:
        raise SystemExit(f"{args.file}: {len(bad)} bad lines")
    prompts = [(r.custom_id, r.body) for r in requests]
    artifact = s.router.artifact_dir or ensure_artifact(s.cache_dir, progress=False)
    rows: list[dict[str, Any]] = []
    with Classifier.load(artifact, s.router.providers, s.router.intra_op_threads) as classifier:
        policy = load_policy(s.router.policy_path, classifier.labels)
        reps = -(-args.cost_prompts // len(prompts))
        many = [(f"{cid}#{k}", body) for k in range(reps) for cid, body in prompts][: args.cost_prompts]
        load = os.getloadavg()[0]
        started = time.perf_counter()
        plan_job(classifier, policy, many, Budget("share", 0.3))
        cost = (time.perf_counter() - started) * 1000 / len(many)
        for text in args.budget or BUDGETS:
            budget = Budget.parse(text)
            job, _ = plan_job(classifier, policy, prompts, budget)
            assert job is not None
            row: dict[str, Any] = {
                "budget": str(budget),
                "prompts": len(prompts),
                "planned_reasoning": job.planned_reasoning,
                "planned_share": round(job.planned_reasoning / len(prompts), 4),
                "expected_reasoning_tokens": job.expected_reasoning_tokens,
                "threshold": job.threshold,
            }
            if args.run:
                row["realised"] = realised(args.file, budget)
            rows.append(row)
    report = {
        "file": str(args.file),
        "planning_s_per_1000": round(cost, 2),
        "cost_prompts": len(many),
        "cores": os.cpu_count(),
        "load_1m": round(load, 2),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"planning: {cost:.2f} s per 1,000 prompts ({len(many)} classified, {os.cpu_count()} cores, load {load:.2f})")
    print(
        "| budget | planned reasoning | planned share | expected reasoning tokens | realised share | realised tokens |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        got = r.get("realised") or {}
        print(
            f"| {r['budget']} | {r['planned_reasoning']} / {r['prompts']} | {r['planned_share']:.1%} | "
            f"{r['expected_reasoning_tokens']:.0f} | {got.get('share', float('nan')):.1%} | "
            f"{got.get('reasoning_tokens', '')} |"
        )


if __name__ == "__main__":
    main()
