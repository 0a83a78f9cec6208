"""``thinkroute train --data FILE --label-field FIELD``: a classifier for the user's own categories, no torch.

The shipped fine-tuned encoder stays frozen: each prompt's pooled, L2-normalised embedding comes from the
shipped runtime model (``model.onnx``, int8, one prompt per run, exactly what the router computes), a
class-balanced softmax head is fitted on the training slice (``workers.training.custom_fit``), then the
artefact is composed by the shipped path (``build.float_models`` with the new head, ``quantize``,
``add_vote`` over the training examples' embeddings) into the same files, measured on the held-out slice
through ``Classifier.load`` (the router's code), and written with a policy skeleton (``policy.yaml``, one
rule per category, ``classifier:`` naming the artefact dir). The dir appears atomically (tmp + rename).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import yaml

from workers.classifier.build import ADAPTER_ASSET, TOKENIZER_ASSET, fingerprint, float_models, save_models, staged_dir
from workers.classifier.cache import ensure_artifact
from workers.classifier.fused_graph import quantize
from workers.classifier.graph import HEAD_PREFIX
from workers.classifier.head import LinearHead, evaluate
from workers.classifier.knn import SIMILARITY_NODE, VoteParams, add_vote, embed
from workers.classifier.model import Classifier
from workers.classifier.softmax_fit import F32
from workers.classifier.splits import HELDOUT_FRACTION, VALIDATION_FRACTION
from workers.classifier.tokens import DEFAULT_MAX_LENGTH, HEAD_FRACTION, TextEncoder
from workers.classifier.weights import load_adapter
from workers.router.policy import load_policy
from workers.training.custom_fit import as_index, choose_head, choose_vote
from workers.training.labelled import MIN_FOR_HELDOUT, Example, read_labelled, split

log = logging.getLogger(__name__)

RECIPE = "thinkroute-custom/1-frozen-shipped-encoder-balanced-softmax-vote"
EMBED_CHECK = 16  # training texts re-embedded through the composed model: must match the features
EMBED_TOL = 1e-4


def custom_version(data: Path, label_field: str, text_field: str | None, seed: int) -> str:
    """Hash of what determines the artefact: the data file's bytes, the fields, the seed, the recipe and the
    shipped classifier it builds on."""
    h = hashlib.sha256(f"{RECIPE}|{label_field}|{text_field}|seed={seed}|base={fingerprint()}|".encode())
    h.update(data.read_bytes())
    return h.hexdigest()[:16]


def default_output(cache_dir: Path, version: str) -> Path:
    return Path(cache_dir).expanduser() / "classifier" / f"custom-{version}"


def _features(shipped: Path, texts: list[str]) -> dict[str, F32]:
    """Embedding of each distinct text through the shipped runtime model."""
    distinct = list(dict.fromkeys(texts))
    model = onnx.load(str(shipped / "model.onnx"))
    encoder = TextEncoder.from_file(shipped / "tokenizer.json", DEFAULT_MAX_LENGTH)
    rows = embed(model, encoder, distinct)
    return dict(zip(distinct, rows, strict=True))


def _matrix(feats: dict[str, F32], examples: list[Example]) -> F32:
    return np.stack([feats[e.text] for e in examples]).astype(np.float32)


def compose_models(
    head: LinearHead, labels: list[str], version: str, bank: F32, bank_y: np.ndarray, vote: VoteParams
) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """(model.onnx: int8 for CPU, model_float.onnx: fp32 for CUDA), composed as the shipped artefact is."""
    adapter = {k: v for k, v in load_adapter(ADAPTER_ASSET).items() if not k.startswith(("head/", "reference/"))}
    adapter["head/W"], adapter["head/b"] = head.weight, head.bias
    fp32, fp32_cpu = float_models(adapter, labels, version)
    int8 = quantize(fp32_cpu, keep_float=(HEAD_PREFIX,))
    if vote.weight == 0.0:
        return int8, fp32
    cpu = quantize(add_vote(int8, bank, bank_y, len(labels), vote), only=(SIMILARITY_NODE,))
    return cpu, add_vote(fp32, bank, bank_y, len(labels), vote)


def policy_text(version: str, labels: list[str], artifact: Path) -> str:
    """The policy skeleton: every category direct (``use_reasoning: false``), to be edited."""
    header = [
        f"# Routing policy skeleton for the custom classifier custom-{version} (thinkroute train --data).",
        '# Edit each category\'s rule: use_reasoning: true (always reason), false (never), or "score" (by the',
        "# reasoning score and a threshold: see `thinkroute calibrate`); optional reasoning_effort and model.",
        "# Bump `version` on every edit (decisions record it). `classifier` is the artefact this policy's",
        "# categories come from: the router switches to it with the policy.",
    ]
    body = {
        "version": f"custom-{version}-v1",
        "classifier": str(artifact),
        "default": {"use_reasoning": False},
        "categories": {label: {"use_reasoning": False} for label in labels},
    }
    return "\n".join(header) + "\n" + yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


def _measure(artifact: Path, held: list[Example], labels: list[str]) -> dict[str, Any]:
    with Classifier.load(artifact, providers="cpu") as clf:
        pred = [c.category for c in clf.classify([e.text for e in held])] if held else []
    return evaluate(as_index(labels, [e.label for e in held]), as_index(labels, pred), labels)


def _embed_check(model: onnx.ModelProto, texts: list[str], expected: F32) -> float:
    got = embed(model, TextEncoder.from_file(TOKENIZER_ASSET, DEFAULT_MAX_LENGTH), texts)
    diff = float(np.abs(got - expected).max())
    if not diff <= EMBED_TOL:
        raise RuntimeError(f"the composed model's embeddings differ from the training features by {diff:g}")
    return diff


def train_custom(
    data: Path,
    label_field: str,
    cache_dir: Path,
    text_field: str | None = None,
    output: Path | None = None,
    seed: int = 13,
) -> dict[str, Any]:
    """Read, split, embed, fit, compose, measure; write the artefact + policy.yaml; return the card."""
    start = time.monotonic()
    data = Path(data)
    examples = split(read_labelled(data, label_field, text_field), seed)
    labels = sorted({e.label for e in examples})
    version = custom_version(data, label_field, text_field, seed)
    out = (Path(output) if output is not None else default_output(cache_dir, version)).expanduser().resolve()
    side = {s: [e for e in examples if e.side == s] for s in ("train", "validation", "heldout")}
    shipped = ensure_artifact(cache_dir, progress=False)
    feats = _features(shipped, [e.text for e in examples])
    embed_s = time.monotonic() - start
    k = len(labels)
    x_tr, y_tr = _matrix(feats, side["train"]), as_index(labels, [e.label for e in side["train"]])
    val = side["validation"]
    x_val = _matrix(feats, val) if val else np.zeros((0, x_tr.shape[1]), np.float32)
    y_val = as_index(labels, [e.label for e in val])
    head, l2, l2_grid = choose_head(x_tr, y_tr, x_val, y_val, k)
    vote, vote_grid = choose_vote(head, x_tr, y_tr, x_val, y_val, k)
    model, model_float = compose_models(head, labels, version, x_tr, y_tr, vote)
    with staged_dir(out) as tmp:
        save_models(tmp, model, model_float, labels)
        check = side["train"][:EMBED_CHECK]
        card = _card(data, label_field, text_field, seed, version, labels, side, l2, l2_grid, vote, vote_grid)
        diff = _embed_check(model, [e.text for e in check], _matrix(feats, check))
        card["composed"] = {"embedding_max_abs_diff": diff}
        card["sizes"] = {"model_onnx_bytes": (tmp / "model.onnx").stat().st_size}
        (tmp / "card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
        card["metrics"] = _measure(tmp, side["heldout"], labels)
        if val:
            v = _measure(tmp, val, labels)
            card["other_metrics"] = {
                "validation": {"accuracy": v["heldout_accuracy"], "macro_f1": v["heldout_macro_f1"], "n": len(val)}
            }
        card["composed"] |= {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - start, 1),
            "embedding_seconds": round(embed_s, 1),
        }
        (tmp / "card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
        (tmp / "policy.yaml").write_text(policy_text(version, labels, out), encoding="utf-8")
        load_policy(tmp / "policy.yaml", labels)  # the skeleton must load as the router loads it
    log.info("custom classifier %s (%d categories) written to %s in %.1f s", version, k, out, time.monotonic() - start)
    return card | {"path": str(out)}


def _card(
    data: Path,
    label_field: str,
    text_field: str | None,
    seed: int,
    version: str,
    labels: list[str],
    side: dict[str, list[Example]],
    l2: float,
    l2_grid: list[dict[str, Any]],
    vote: VoteParams,
    vote_grid: list[dict[str, Any]],
) -> dict[str, Any]:
    counts = {s: {lab: sum(e.label == lab for e in rows) for lab in labels} for s, rows in side.items()}
    return {
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "recipe": RECIPE,
        "base": f"shipped classifier {fingerprint()} (its fine-tuned encoder, frozen)",
        "encoder": "the shipped fine-tuned all-MiniLM-L6-v2, frozen",
        "pooling": "masked mean over tokens, then L2 normalisation",
        "head": f"class-balanced multinomial logistic regression (numpy, L2 {l2:g})",
        "reasoning_score": "the shipped reasoning-score head, unchanged (predicted error rate of 29 models)",
        "labels": labels,
        "max_length": DEFAULT_MAX_LENGTH,
        "truncation": f"head+tail: [CLS] + first {HEAD_FRACTION:.0%} + last tokens + [SEP]; flagged",
        "data": {
            "file": str(data.resolve()),
            "sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
            "label_field": label_field,
            "text_field": text_field or "first of prompt / question / text / body",
            "examples": sum(len(v) for v in side.values()),
            "per_category": {lab: sum(c[lab] for c in counts.values()) for lab in labels},
        },
        "split": {
            "how": (
                f"held out when sha256(seed, 'heldout', normalised text) < {HELDOUT_FRACTION} (a category with >= "
                f"{MIN_FOR_HELDOUT} distinct texts and none held out gets its lowest-hash ones); validation "
                f"{VALIDATION_FRACTION} of the rest by another hash; duplicates share a side"
            ),
            "unit": "examples",
            "heldout": len(side["heldout"]),
            "validation": len(side["validation"]),
            "train": len(side["train"]),
            "per_category": counts,
        },
        "fit": {
            "l2_grid": l2_grid,
            "l2": l2,
            "vote_grid": vote_grid,
            "refit": "no: the head is fitted on the training slice only; validation stays unseen to choose the vote",
            "chosen_on": "validation macro-F1 (ties: accuracy, then the stronger L2 / the smaller vote weight)",
        },
        "neighbour_vote": {**asdict(vote), "bank": len(side["train"]), "bank_source": "the training examples"},
        "seed": seed,
        "runtime": (
            "as the shipped classifier: model.onnx dynamic int8, one prompt per run on CPU; model_float.onnx fp32, "
            "batched, for CUDA"
        ),
    }
