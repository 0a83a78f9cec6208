"""The encoder graph with plain-op LayerNorms (the CPU model) computes what the fused graph computes."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from workers.classifier.fused_graph import encoder_graph

H, LAYERS, HEADS, VOCAB, FF = 32, 2, 4, 50, 64


def tiny_bert(seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    weights = {
        "embeddings.word_embeddings.weight": w(VOCAB, H),
        "embeddings.position_embeddings.weight": w(16, H),
        "embeddings.token_type_embeddings.weight": w(2, H),
        "embeddings.LayerNorm.weight": 1 + w(H),
        "embeddings.LayerNorm.bias": w(H),
    }
    for k in range(LAYERS):
        p = f"encoder.layer.{k}."
        for m in ("query", "key", "value"):
            weights[p + f"attention.self.{m}.weight"], weights[p + f"attention.self.{m}.bias"] = w(H, H), w(H)
        weights[p + "attention.output.dense.weight"], weights[p + "attention.output.dense.bias"] = w(H, H), w(H)
        weights[p + "attention.output.LayerNorm.weight"] = 1 + w(H)
        weights[p + "attention.output.LayerNorm.bias"] = w(H)
        weights[p + "intermediate.dense.weight"], weights[p + "intermediate.dense.bias"] = w(H, FF), w(FF)
        weights[p + "output.dense.weight"], weights[p + "output.dense.bias"] = w(FF, H), w(H)
        weights[p + "output.LayerNorm.weight"], weights[p + "output.LayerNorm.bias"] = 1 + w(H), w(H)
    return weights


def run(fused: bool, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, list[str]]:
    model = encoder_graph(tiny_bert(), n_layers=LAYERS, num_heads=HEADS, fused_norm=fused)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return session.run(None, feed)[0], [n.op_type for n in model.graph.node]


def test_plain_layer_norms_match_the_fused_kernels() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(1, VOCAB, size=(3, 12)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 8:] = 0  # right padding, as the classifier feeds it
    mask[2, 5:] = 0
    fused, fused_ops = run(True, ids, mask)
    plain, plain_ops = run(False, ids, mask)
    assert fused_ops.count("SkipLayerNormalization") == 2 * LAYERS
    assert "SkipLayerNormalization" not in plain_ops and "LayerNormalization" not in plain_ops
    assert plain_ops.count("ReduceMean") == 4 * LAYERS  # mean and variance of each residual LayerNorm
    assert fused.shape == plain.shape == (3, 12, H)
    for row, n in ((0, 12), (1, 8), (2, 5)):  # the positions the pooling reads
        np.testing.assert_allclose(plain[row, :n], fused[row, :n], atol=2e-5)
    # and the values are a real transformation, not a pass-through of the embeddings
    assert float(np.abs(plain[0]).mean()) > 0.1
    assert not np.allclose(plain[0, 0], plain[0, 1])
