"""Fine-tune the encoder (LoRA on every Linear, plus biases and norms) and the heads, with torch.

Needs the ``train`` extra (``pip install -e '.[train]'``). Deterministic for a given seed on one machine
(fixed seeds, fixed thread count, single process).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from workers.classifier.corpus import Item
from workers.classifier.graph import load_encoder
from workers.classifier.head import Hyper
from workers.classifier.tokens import TextEncoder
from workers.classifier.weights import base_weights
from workers.training.torch_model import EMBED_SCALE, Encoder

log = logging.getLogger(__name__)


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (sort inside chunks of 50 batches), in shuffled order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 50
    out: list[list[int]] = []
    for s in range(0, len(order), chunk):
        part = sorted(order[s : s + chunk], key=lambda i: lengths[i])
        out += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    rng.shuffle(out)
    return out


def train(
    items: Sequence[Item],
    labels: Sequence[str],
    tokenizer: TextEncoder,
    seed: int,
    hp: Hyper,
    aux_norm: tuple[tuple[float, float], ...],
    on_step: Callable[[int, int, float], None] | None = None,
    model: Encoder | None = None,
) -> Encoder:
    """Train on ``items`` (their random renderings, re-drawn each epoch); returns the model.

    ``model``: continue training it (a second stage) instead of starting from the base encoder.
    """
    torch.manual_seed(seed)
    torch.set_num_threads(hp.threads)
    rng = random.Random(seed)
    if model is None:
        model = Encoder(base_weights(load_encoder()), hp.rank, hp.alpha, len(labels), len(aux_norm))
    index = {c: i for i, c in enumerate(labels)}
    y = torch.tensor([index[it.label] for it in items])
    aux = torch.zeros(len(items), len(aux_norm))
    has_aux = torch.zeros(len(items), dtype=torch.bool)
    for i, it in enumerate(items):
        if it.aux is not None:
            has_aux[i] = True
            aux[i] = torch.tensor([(v - m) / s for v, (m, s) in zip(it.aux, aux_norm, strict=True)])
    groups: dict[str, list[torch.nn.Parameter]] = {"lora": [], "other": [], "head": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        groups["lora" if "lora_" in name else "head" if name.startswith(("head.", "aux.")) else "other"].append(p)
    opt = torch.optim.AdamW(
        [
            {"params": groups["lora"], "lr": hp.lr_lora, "weight_decay": hp.weight_decay},
            {"params": groups["other"], "lr": hp.lr_other, "weight_decay": 0.0},
            {"params": groups["head"], "lr": hp.lr_head, "weight_decay": hp.weight_decay},
        ]
    )
    base_lr = [g["lr"] for g in opt.param_groups]
    tok = TextEncoder(tokenizer.tokenizer, hp.max_length)
    steps_per_epoch = math.ceil(len(items) / hp.batch_size)
    total = max(1, int(steps_per_epoch * hp.epochs))
    step = 0
    start = time.monotonic()
    model.train()
    while step < total:
        texts = [it.random_text(rng) for it in items]
        seqs, _, _ = tok.tokenize(texts)
        for batch in _batches([len(s) for s in seqs], hp.batch_size, rng):
            if step >= total:
                break
            frac = step / total
            scale = frac / hp.warmup if frac < hp.warmup else 0.5 * (1 + math.cos(math.pi * frac))
            for g, lr in zip(opt.param_groups, base_lr, strict=True):
                g["lr"] = lr * scale
            ids, mask = tok.pad([seqs[i] for i in batch])
            logits, pred_aux = model(torch.from_numpy(ids), torch.from_numpy(mask))
            idx = torch.tensor(batch)
            loss = torch.nn.functional.cross_entropy(logits, y[idx], label_smoothing=hp.label_smoothing)
            sel = has_aux[idx]
            if bool(sel.any()):
                loss = loss + hp.aux_weight * torch.nn.functional.mse_loss(pred_aux[sel], aux[idx][sel])
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            step += 1
            if on_step is not None:
                on_step(step, total, float(loss))
            if step % 50 == 0:
                rate = step * hp.batch_size / (time.monotonic() - start)
                log.info("step %d/%d loss %.4f (%.1f samples/s)", step, total, float(loss), rate)
    model.eval()
    return model


def export_heads(model: Encoder) -> dict[str, npt.NDArray[np.float32]]:
    """Heads on the unit embedding, EMBED_SCALE folded in: W [D, K] (x @ W + b)."""
    with torch.no_grad():
        return {
            "head/W": (model.head.weight.T * EMBED_SCALE).numpy().astype(np.float32),
            "head/b": model.head.bias.numpy().astype(np.float32),
            "aux/W": (model.aux.weight.T * EMBED_SCALE).numpy().astype(np.float32),
            "aux/b": model.aux.bias.numpy().astype(np.float32),
        }


def predict(model: Encoder, tokenizer: TextEncoder, texts: Sequence[str], batch_size: int = 64) -> dict[str, Any]:
    """Torch-side class probabilities and aux outputs (for checks against the composed ONNX)."""
    seqs, _, _ = tokenizer.tokenize(texts)
    probs = np.zeros((len(texts), model.head.out_features), dtype=np.float32)
    aux = np.zeros((len(texts), model.aux.out_features), dtype=np.float32)
    order = np.argsort([len(s) for s in seqs], kind="stable")
    with torch.no_grad():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            ids, mask = tokenizer.pad([seqs[i] for i in idx])
            logits, a = model(torch.from_numpy(ids), torch.from_numpy(mask))
            probs[idx] = torch.softmax(logits, -1).numpy()
            aux[idx] = a.numpy()
    return {"probs": probs, "aux": aux}
