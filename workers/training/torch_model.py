"""The MiniLM encoder in plain torch (training only: needs the ``train`` extra), with LoRA on every Linear.

The base weights are the packaged int8 encoder's, dequantized (``weights.base_weights``), so training sees
the weights the router runs; the trained adapter is merged back with ``weights.merged_weights``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from workers.classifier.weights import LAYER_NORMS, LINEAR_MODULES, N_LAYERS

HIDDEN = 384
HEADS = 12
LN_EPS = 1e-12
EMBED_SCALE = 20.0  # logits = (EMBED_SCALE * unit embedding) @ W + b; folded into W at export


class LoraLinear(nn.Module):
    """y = x @ W + b + scaling * (x @ A) @ B with W frozen; b trainable."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, rank: int, alpha: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)  # [in, out]
        self.bias = nn.Parameter(bias)
        self.lora_a = nn.Parameter(torch.randn(weight.shape[0], rank) / math.sqrt(weight.shape[0]))
        self.lora_b = nn.Parameter(torch.zeros(rank, weight.shape[1]))
        self.scaling = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias + self.scaling * ((x @ self.lora_a) @ self.lora_b)


class Encoder(nn.Module):
    def __init__(
        self, weights: Mapping[str, npt.NDArray[np.float32]], rank: int, alpha: float, n_labels: int, n_aux: int
    ) -> None:
        super().__init__()

        def t(name: str) -> torch.Tensor:
            return torch.from_numpy(np.array(weights[name], dtype=np.float32))

        self.word = nn.Parameter(t("embeddings.word_embeddings.weight"), requires_grad=False)
        self.pos = nn.Parameter(t("embeddings.position_embeddings.weight"), requires_grad=False)
        self.tok = nn.Parameter(t("embeddings.token_type_embeddings.weight")[0].clone(), requires_grad=False)
        self.norms = nn.ParameterDict()
        self.linears = nn.ModuleDict()
        self.norms[_key("embeddings.LayerNorm.weight")] = nn.Parameter(t("embeddings.LayerNorm.weight"))
        self.norms[_key("embeddings.LayerNorm.bias")] = nn.Parameter(t("embeddings.LayerNorm.bias"))
        for k in range(N_LAYERS):
            for m in LINEAR_MODULES:
                name = f"encoder.layer.{k}.{m}"
                self.linears[_key(name)] = LoraLinear(t(name + ".weight"), t(name + ".bias"), rank, alpha)
            for m in LAYER_NORMS:
                for p in ("weight", "bias"):
                    name = f"encoder.layer.{k}.{m}.{p}"
                    self.norms[_key(name)] = nn.Parameter(t(name))
        self.head = nn.Linear(HIDDEN, n_labels)
        self.aux = nn.Linear(HIDDEN, n_aux)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        nn.init.zeros_(self.aux.weight)
        nn.init.zeros_(self.aux.bias)

    def _ln(self, x: torch.Tensor, name: str) -> torch.Tensor:
        w, b = self.norms[_key(name + ".weight")], self.norms[_key(name + ".bias")]
        return nn.functional.layer_norm(x, (HIDDEN,), w, b, LN_EPS)

    def _lin(self, x: torch.Tensor, name: str) -> torch.Tensor:
        out: torch.Tensor = self.linears[_key(name)](x)
        return out

    def embed(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unit-norm mean-pooled sentence embeddings [B, HIDDEN]."""
        b, t = ids.shape
        x = self.word[ids] + self.pos[:t][None] + self.tok
        x = self._ln(x, "embeddings.LayerNorm")
        keep = mask[:, None, None, :].bool()
        d = HIDDEN // HEADS
        for k in range(N_LAYERS):
            p = f"encoder.layer.{k}."
            q, kk, v = (
                self._lin(x, p + f"attention.self.{n}").view(b, t, HEADS, d).transpose(1, 2)
                for n in ("query", "key", "value")
            )
            ctx = nn.functional.scaled_dot_product_attention(q, kk, v, attn_mask=keep)
            ctx = ctx.transpose(1, 2).reshape(b, t, HIDDEN)
            x = self._ln(x + self._lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = nn.functional.gelu(self._lin(x, p + "intermediate.dense"))
            x = self._ln(x + self._lin(h, p + "output.dense"), p + "output.LayerNorm")
        m = mask[..., None].to(x.dtype)
        mean = (x * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return nn.functional.normalize(mean, dim=-1, eps=1e-12)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.embed(ids, mask) * EMBED_SCALE
        return self.head(e), self.aux(e)

    def load_adapter(self, adapter: Mapping[str, npt.NDArray[np.generic]]) -> None:
        """Set the trainable tensors from a saved adapter (``adapter()`` plus ``export_heads`` output)."""
        with torch.no_grad():
            for key, lin in self.linears.items():
                assert isinstance(lin, LoraLinear)
                name = _name(key)
                lin.lora_a.copy_(torch.from_numpy(np.asarray(adapter[f"lora_a/{name}.weight"])))
                lin.lora_b.copy_(torch.from_numpy(np.asarray(adapter[f"lora_b/{name}.weight"])))
                lin.bias.copy_(torch.from_numpy(np.asarray(adapter[f"full/{name}.bias"])))
            for key, param in self.norms.items():
                param.copy_(torch.from_numpy(np.asarray(adapter[f"full/{_name(key)}"])))
            for head, prefix in ((self.head, "head"), (self.aux, "aux")):
                head.weight.copy_(torch.from_numpy(np.asarray(adapter[f"{prefix}/W"])).T / EMBED_SCALE)
                head.bias.copy_(torch.from_numpy(np.asarray(adapter[f"{prefix}/b"])))

    def adapter(self) -> dict[str, npt.NDArray[np.generic]]:
        """What ``weights.merged_weights`` merges: LoRA factors, biases and norms (float32)."""
        out: dict[str, npt.NDArray[np.generic]] = {}
        scaling = 0.0
        for key, lin in self.linears.items():
            assert isinstance(lin, LoraLinear)
            name = _name(key)
            out[f"lora_a/{name}.weight"] = lin.lora_a.detach().numpy().astype(np.float32)
            out[f"lora_b/{name}.weight"] = lin.lora_b.detach().numpy().astype(np.float32)
            out[f"full/{name}.bias"] = lin.bias.detach().numpy().astype(np.float32)
            scaling = lin.scaling
        for key, param in self.norms.items():
            out[f"full/{_name(key)}"] = param.detach().numpy().astype(np.float32)
        out["lora_scaling"] = np.array(scaling, dtype=np.float32)
        return out


def _key(name: str) -> str:
    return name.replace(".", "__")


def _name(key: str) -> str:
    return key.replace("__", ".")
