"""Compose the runtime classifier artefact from the shipped adapter (no torch, about 2 minutes on 2 cores).

``thinkroute train`` (``workers.training.train``) writes ``workers/classifier/assets/adapter.npz`` (LoRA
factors, biases and norms of the fine-tuned encoder, the category head, the reasoning-score head and
reference outputs) and ``classifier_card.json``. At first use this module merges the adapter into the
packaged encoder's weights, writes the encoder as a fused ONNX Runtime graph, appends pooling and heads,
checks the fp32 result against the reference outputs recorded at training time, quantizes it to int8,
embeds the training questions for the neighbour vote (``workers.classifier.knn``) and writes
``model.onnx`` (int8), ``model_float.onnx`` (fp32, for CUDA), ``tokenizer.json``, ``labels.json``,
``card.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx

from workers.classifier.corpus import load_items
from workers.classifier.fused_graph import encoder_graph, quantize
from workers.classifier.graph import ENCODER_PACKAGE, ENCODER_VERSION, HEAD_PREFIX, compose, encoder_path, load_encoder
from workers.classifier.head import LinearHead
from workers.classifier.knn import SIMILARITY_NODE, VoteParams, add_vote, embed
from workers.classifier.lexical_build import build_tier
from workers.classifier.model import Classifier, FloatArray
from workers.classifier.session import create_session
from workers.classifier.splits import DATA_FILES
from workers.classifier.tokens import DEFAULT_MAX_LENGTH, HEAD_FRACTION, TextEncoder
from workers.classifier.weights import base_weights, load_adapter, merged_weights, quantize_columns
from workers.data import QWEN3_THINK
from workers.data import path as data_path

log = logging.getLogger(__name__)

# Bump when the composition changes: a new fingerprint means a rebuild of cached artefacts.
RECIPE_VERSION = "thinkroute-classifier/8-first-tier-one-threshold"
DEFAULT_SEED = 13
ASSETS = Path(__file__).resolve().parent / "assets"
TOKENIZER_ASSET = ASSETS / "tokenizer.json"
ADAPTER_ASSET = ASSETS / "adapter.npz"
CARD_ASSET = ASSETS / "classifier_card.json"
ARTIFACT_FILES = ("model.onnx", "model_float.onnx", "tokenizer.json", "labels.json", "card.json")
VERIFY_TOL = 2e-3  # max |probs - reference| of the fp32 composition; the reference is recorded at training time
MIN_AGREEMENT = 0.8  # top-1 agreement of the runtime model (int8 + neighbour vote) with that reference
VOTE = VoteParams()


@lru_cache(maxsize=8)
def fingerprint(seed: int = DEFAULT_SEED) -> str:
    """Short hash of what determines the artefact: recipe, adapter, card, tokenizer, encoder."""
    h = hashlib.sha256()
    h.update(f"{RECIPE_VERSION}|seed={seed}|max_length={DEFAULT_MAX_LENGTH}|head={HEAD_FRACTION}|{VOTE}".encode())
    for name in (*DATA_FILES, QWEN3_THINK):  # the neighbour bank is built from them
        h.update(f"{name}:{data_path(name).stat().st_size}".encode())
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


def float_models(
    adapter: Mapping[str, npt.NDArray[np.generic]], labels: list[str], version: str
) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Fp32 encoder with the adapter merged (Linear weights rounded per column like the packaged int8
    encoder, which is what training saw) + pooling + heads: (all fused kernels, for CUDA and the reference
    check; residual LayerNorms as plain ops, the graph the CPU model is quantized from)."""
    head, score = heads(adapter)
    merged = merged_weights(base_weights(load_encoder()), adapter)
    for name, w in merged.items():
        if name.startswith("encoder.layer.") and name.endswith(".weight") and w.ndim == 2:
            q, scale = quantize_columns(w)
            merged[name] = q.astype(np.float32) * scale
    fused = compose(encoder_graph(merged, fused_norm=True), head, labels, version, score)
    plain = compose(encoder_graph(merged, fused_norm=False), head, labels, version, score)
    return fused, plain


def bank_texts(seed: int) -> tuple[list[str], list[str]]:
    """Texts and labels of the training questions (the neighbour vote's bank), in a fixed order."""
    items, _ = load_items(seed)
    train = [it for it in items if it.side == "train"]
    return [it.fixed_text(seed) for it in train], [it.label for it in train]


def runtime_models(
    adapter: Mapping[str, npt.NDArray[np.generic]],
    labels: list[str],
    version: str,
    seed: int = DEFAULT_SEED,
    progress: bool = False,
) -> tuple[onnx.ModelProto, onnx.ModelProto, onnx.ModelProto, FloatArray]:
    """(fp32 head-only model, int8 and fp32 models with the neighbour vote, the bank's embeddings).

    The int8 model is ``model.onnx`` (CPU), the fp32 one ``model_float.onnx`` (CUDA: the int8 kernels
    are CPU ones); both vote over the same bank, embedded once with the int8 model.
    """
    fp32, fp32_cpu = float_models(adapter, labels, version)
    int8 = quantize(fp32_cpu, keep_float=(HEAD_PREFIX,))
    texts, bank_labels = bank_texts(seed)
    encoder = TextEncoder.from_file(TOKENIZER_ASSET, DEFAULT_MAX_LENGTH)
    with _progress(len(texts), "embedding the neighbour bank", progress) as advance:
        bank = embed(int8, encoder, texts, advance)
    index = np.array([labels.index(x) for x in bank_labels], dtype=np.int64)
    # the CPU model's similarities to the bank in int8 too (per bank row scales): a quarter of the 14 MB read
    cpu = quantize(add_vote(int8, bank, index, len(labels), VOTE), only=(SIMILARITY_NODE,))
    return fp32, cpu, add_vote(fp32, bank, index, len(labels), VOTE), bank


@contextmanager
def _progress(total: int, what: str, show: bool) -> Iterator[Callable[[int], None]]:
    if not show:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


def float_probs(model: onnx.ModelProto, texts: list[str], labels: list[str]) -> FloatArray:
    """Class probabilities of an in-memory model (e.g. the fp32 composition) through ``Classifier``."""
    session = create_session(model.SerializeToString(), "cpu")
    clf = Classifier(session, TextEncoder.from_file(TOKENIZER_ASSET, DEFAULT_MAX_LENGTH), labels, "verify")
    return clf.predict_proba(texts)


def verify(
    fp32: onnx.ModelProto, final_dir: Path, card: Mapping[str, Any], adapter: Mapping[str, npt.NDArray[np.generic]]
) -> dict[str, float]:
    """Check the composition against the outputs recorded at training time; raises when it disagrees.

    The fp32 model must reproduce them to VERIFY_TOL (the merge is right); the runtime model (int8 +
    neighbour vote) must agree on the top category for at least MIN_AGREEMENT of the reference texts.
    """
    texts = [str(t) for t in card.get("reference", {}).get("texts", [])]
    if not texts or "reference/probs" not in adapter:
        raise RuntimeError("the shipped adapter has no reference outputs to verify against")
    ref = np.asarray(adapter["reference/probs"], np.float32)
    diff = float(np.abs(float_probs(fp32, texts, [str(x) for x in card["labels"]]) - ref).max())
    if not np.isfinite(diff) or diff > VERIFY_TOL:
        raise RuntimeError(f"composed classifier disagrees with its training-time reference: max diff {diff:g}")
    with Classifier.load(final_dir, providers="cpu") as clf:
        got = clf.predict_proba(texts)
    agreement = float((got.argmax(1) == ref.argmax(1)).mean())
    if agreement < MIN_AGREEMENT:
        raise RuntimeError(f"runtime classifier agrees with its reference on only {agreement:.0%} of the texts")
    return {"fp32_max_abs_diff": diff, "runtime_top1_agreement": agreement}


def write_artifact(
    out_dir: Path,
    adapter: Mapping[str, npt.NDArray[np.generic]],
    card: dict[str, Any],
    version: str,
    seed: int = DEFAULT_SEED,
    progress: bool = False,
) -> tuple[onnx.ModelProto, FloatArray]:
    """model.onnx, tokenizer, labels and card into ``out_dir`` (must exist); returns the fp32 model and the
    neighbour bank's embeddings (the training questions', in ``bank_texts`` order)."""
    labels = [str(x) for x in card["labels"]]
    fp32, model, model_float, bank = runtime_models(adapter, labels, version, seed, progress)
    save_models(out_dir, model, model_float, labels)
    card = {
        **card,
        "version": version,
        "max_length": DEFAULT_MAX_LENGTH,
        "runtime": (
            "fused ONNX Runtime BERT graph; model.onnx: dynamic int8 (MatMulInteger, QAttention; per-channel "
            "weights, heads in fp32; residual LayerNorms as plain ops), one prompt per run on CPU; "
            "model_float.onnx: fp32, all fused kernels, batched, for CUDA"
        ),
        "neighbour_vote": {**VOTE.__dict__, "bank": len(bank), "bank_source": "the training questions"},
    }
    card.setdefault("sizes", {})["model_onnx_bytes"] = (out_dir / "model.onnx").stat().st_size
    (out_dir / "card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return fp32, bank


def save_models(out_dir: Path, model: onnx.ModelProto, model_float: onnx.ModelProto, labels: Sequence[str]) -> None:
    """The runtime files every artefact has: the int8 and fp32 graphs, the tokenizer and the labels."""
    onnx.save(model, str(out_dir / "model.onnx"))
    onnx.save(model_float, str(out_dir / "model_float.onnx"))
    shutil.copyfile(TOKENIZER_ASSET, out_dir / "tokenizer.json")
    (out_dir / "labels.json").write_text(json.dumps(list(labels), indent=1) + "\n", encoding="utf-8")


@contextmanager
def staged_dir(out_dir: Path) -> Iterator[Path]:
    """A temporary sibling of ``out_dir`` to write an artefact into; on success it replaces ``out_dir`` (a rename:
    readers see the old dir or the whole new one), on any error it is removed."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_artifact(
    out_dir: Path, *, seed: int = DEFAULT_SEED, progress: bool = True, providers: str = "auto"
) -> dict[str, Any]:
    """Compose the artefact into ``out_dir`` (atomically) and return its card."""
    del providers
    start = time.monotonic()
    out_dir = Path(out_dir)
    adapter = load_adapter(ADAPTER_ASSET)
    card: dict[str, Any] = json.loads(CARD_ASSET.read_text(encoding="utf-8"))
    version = fingerprint(seed)
    with staged_dir(out_dir) as tmp:
        fp32, bank = write_artifact(tmp, adapter, card, version, seed, progress)
        checks = verify(fp32, tmp, card, adapter)
        score = heads(adapter)[1]
        bank_scores = None if score is None else score.logits(bank)[:, 0]  # the encoder's, as the graph adds it
        tier = build_tier(tmp, load_items(seed)[0], seed, bank_scores)
        card = json.loads((tmp / "card.json").read_text(encoding="utf-8"))
        card["first_tier"] = tier
        card["composed"] = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - start, 2),
            **checks,
        }
        (tmp / "card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    log.info("classifier artefact %s composed in %s (%.1f s)", version, out_dir, time.monotonic() - start)
    return card


def report(card: Mapping[str, Any]) -> str:
    """The held-out report of an artefact card, as plain text."""
    m = card["metrics"]
    split = card.get("split", {})
    unit = split.get("unit", "MMLU-Pro questions")  # a custom classifier's (`thinkroute train --data`): examples
    lines = [
        f"classifier {card.get('version', '?')}  ({card.get('encoder', '')}; {card.get('head', '')})",
        f"held-out: {split.get('heldout', '?')} {unit}, trained on {split.get('train', '?')}",
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
