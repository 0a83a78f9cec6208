"""Compose the runtime classifier artefact from the shipped adapter (no torch, seconds).

``thinkroute train`` (``workers.training.train``) writes ``workers/router/assets/adapter.npz`` (LoRA
factors, biases and norms of the fine-tuned encoder, the category head, the reasoning-score head and
reference outputs) and ``classifier_card.json``. At first use this module merges the adapter into the
packaged int8 encoder, appends pooling and heads, checks the result against the reference outputs
recorded at training time and writes ``model.onnx``, ``tokenizer.json``, ``labels.json``, ``card.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx

from workers.router.classifier import DEFAULT_MAX_LENGTH, HEAD_FRACTION, Classifier
from workers.training.graph import ENCODER_PACKAGE, ENCODER_VERSION, compose, encoder_path, load_encoder
from workers.training.head import LinearHead
from workers.training.weights import apply_adapter, load_adapter

log = logging.getLogger(__name__)

# Bump when the composition changes: a new fingerprint means a rebuild of cached artefacts.
RECIPE_VERSION = "thinkroute-classifier/2-lora"
DEFAULT_SEED = 13
ASSETS = Path(__file__).resolve().parent.parent / "router" / "assets"
TOKENIZER_ASSET = ASSETS / "tokenizer.json"
ADAPTER_ASSET = ASSETS / "adapter.npz"
CARD_ASSET = ASSETS / "classifier_card.json"
ARTIFACT_FILES = ("model.onnx", "tokenizer.json", "labels.json", "card.json")
VERIFY_TOL = 2e-3  # max |probs - reference|; the reference is the same composition at training time


@lru_cache(maxsize=8)
def fingerprint(seed: int = DEFAULT_SEED) -> str:
    """Short hash of what determines the artefact: recipe, adapter, card, tokenizer, encoder."""
    h = hashlib.sha256()
    h.update(f"{RECIPE_VERSION}|seed={seed}|max_length={DEFAULT_MAX_LENGTH}|head={HEAD_FRACTION}".encode())
    for asset in (ADAPTER_ASSET, CARD_ASSET, TOKENIZER_ASSET):
        h.update(asset.read_bytes())
    enc = encoder_path()
    h.update(f"{ENCODER_PACKAGE}=={ENCODER_VERSION}|{enc.name}|{enc.stat().st_size}".encode())
    return h.hexdigest()[:16]


def heads(adapter: Mapping[str, npt.NDArray[np.generic]]) -> tuple[LinearHead, LinearHead | None]:
    """The category head and the reasoning-score head (one column) stored in an adapter."""
    head = LinearHead(np.asarray(adapter["head/W"], np.float32), np.asarray(adapter["head/b"], np.float32))
    if "score/W" not in adapter:
        return head, None
    score = LinearHead(np.asarray(adapter["score/W"], np.float32), np.asarray(adapter["score/b"], np.float32))
    return head, score


def compose_model(adapter: Mapping[str, npt.NDArray[np.generic]], labels: list[str], version: str) -> onnx.ModelProto:
    head, score = heads(adapter)
    return compose(apply_adapter(load_encoder(simplify=True), adapter), head, labels, version, score)


def write_artifact(
    out_dir: Path, adapter: Mapping[str, npt.NDArray[np.generic]], card: dict[str, Any], version: str
) -> None:
    """model.onnx, tokenizer, labels and card into ``out_dir`` (must exist)."""
    labels = [str(x) for x in card["labels"]]
    onnx.save(compose_model(adapter, labels, version), str(out_dir / "model.onnx"))
    shutil.copyfile(TOKENIZER_ASSET, out_dir / "tokenizer.json")
    (out_dir / "labels.json").write_text(json.dumps(labels, indent=1) + "\n", encoding="utf-8")
    card = {**card, "version": version, "max_length": DEFAULT_MAX_LENGTH}
    card.setdefault("sizes", {})["model_onnx_bytes"] = (out_dir / "model.onnx").stat().st_size
    (out_dir / "card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")


def verify(out_dir: Path, card: Mapping[str, Any], adapter: Mapping[str, npt.NDArray[np.generic]]) -> float:
    """Max |probs - reference| on the reference texts recorded at training time (raises above VERIFY_TOL)."""
    texts = [str(t) for t in card.get("reference", {}).get("texts", [])]
    if not texts or "reference/probs" not in adapter:
        raise RuntimeError("the shipped adapter has no reference outputs to verify against")
    clf = Classifier.load(out_dir, providers="cpu")
    got = clf.predict_proba(texts)
    diff = float(np.abs(got - np.asarray(adapter["reference/probs"], np.float32)).max())
    if not np.isfinite(diff) or diff > VERIFY_TOL:
        raise RuntimeError(f"composed classifier disagrees with its training-time reference: max diff {diff:g}")
    return diff


def build_artifact(
    out_dir: Path, *, seed: int = DEFAULT_SEED, progress: bool = True, providers: str = "auto"
) -> dict[str, Any]:
    """Compose the artefact into ``out_dir`` (atomically) and return its card. ``progress`` is unused."""
    del progress, providers
    start = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    adapter = load_adapter(ADAPTER_ASSET)
    card: dict[str, Any] = json.loads(CARD_ASSET.read_text(encoding="utf-8"))
    version = fingerprint(seed)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        write_artifact(tmp, adapter, card, version)
        diff = verify(tmp, card, adapter)
        card = json.loads((tmp / "card.json").read_text(encoding="utf-8"))
        card["composed"] = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - start, 2),
            "verify_max_abs_diff": diff,
        }
        (tmp / "card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
        tmp.chmod(0o755)  # mkdtemp makes it private
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("classifier artefact %s composed in %s (%.1f s)", version, out_dir, time.monotonic() - start)
    return card


def report(card: Mapping[str, Any]) -> str:
    """The held-out report of an artefact card, as plain text."""
    m = card["metrics"]
    split = card.get("split", {})
    lines = [
        f"classifier {card.get('version', '?')}  ({card.get('encoder', '')}; {card.get('head', '')})",
        f"held-out: {split.get('heldout', '?')} MMLU-Pro questions, trained on {split.get('train', '?')}",
        f"accuracy {m['heldout_accuracy']:.4f}   macro-F1 {m['heldout_macro_f1']:.4f}",
        "",
        f"{'category':<18} {'precision':>9} {'recall':>7} {'F1':>6} {'n':>5}",
    ]
    for cat, row in sorted(m["per_category"].items(), key=lambda kv: -kv[1]["f1"]):
        lines.append(f"{cat:<18} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} {row['n']:>5}")
    if m.get("top_confusions"):
        lines += ["", "top confusions (true -> predicted: count)"]
        lines += [f"  {t} -> {p}: {c}" for t, p, c in m["top_confusions"]]
    for name, extra in card.get("other_metrics", {}).items():
        lines.append(f"{name}: accuracy {extra['accuracy']:.4f} on {extra['n']}")
    return "\n".join(lines)
