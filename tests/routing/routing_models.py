"""Real third-party models with tiny configs and random init, for the routing suite.

``MODELS`` maps a name to a builder returning ``(model, example, expected)``: an input for
``param_groups(model, example=...)`` (None: route without a forward) and the hand-written
expectation, pattern -> (algorithm, matrices) where matrices lists the (..., m, n) matrices
Muon dualizes (empty for AdamW). ``docs/routing-reports.md`` is generated from these
(``python tests/routing/write_reports.py``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

Expected = dict[str, tuple[str, tuple[tuple[int, ...], ...]]]
Built = tuple[nn.Module, Any, Expected]

A: tuple[tuple[int, ...], ...] = ()  # an AdamW route: no matrices


def _tokens(vocab: int = 48) -> torch.Tensor:
    return torch.randint(0, vocab, (2, 5), generator=torch.Generator().manual_seed(0))


def _hf(name: str) -> Any:
    import transformers

    transformers.logging.set_verbosity_error()
    return getattr(transformers, name)


def gpt2() -> Built:
    cfg = _hf("GPT2Config")(vocab_size=48, n_embd=32, n_layer=1, n_head=4, n_positions=16)
    model = _hf("GPT2LMHeadModel")(cfg)
    return (
        model,
        None,
        {
            "transformer.w?e.weight": ("adamw", A),  # wte is tied to lm_head
            "transformer.h.0.ln_*": ("adamw", A),
            "transformer.ln_f.*": ("adamw", A),
            "*.bias": ("adamw", A),
            "transformer.h.0.attn.c_attn.weight": ("muon", ((32, 32),) * 3),  # (32, 96) stored
            "transformer.h.0.attn.c_proj.weight": ("muon", ((32, 32),)),
            "transformer.h.0.mlp.c_fc.weight": ("muon", ((128, 32),)),
            "transformer.h.0.mlp.c_proj.weight": ("muon", ((32, 128),)),
        },
    )


def _llama_like(cls: str, config: str, **extra: Any) -> nn.Module:
    sizes = dict(
        vocab_size=48,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return _hf(cls)(_hf(config)(**sizes, **extra))


_ATTENTION: Expected = {
    "model.layers.0.self_attn.q_proj.weight": ("muon", ((32, 32),)),
    "model.layers.0.self_attn.k_proj.weight": ("muon", ((16, 32),)),
    "model.layers.0.self_attn.v_proj.weight": ("muon", ((16, 32),)),
    "model.layers.0.self_attn.o_proj.weight": ("muon", ((32, 32),)),
    "model.embed_tokens.weight": ("adamw", A),
    "lm_head.weight": ("adamw", A),
    "*norm*": ("adamw", A),
}


def llama() -> Built:
    """vocab_size == intermediate_size: gate/up (48, 32) have the head's shape."""
    model = _llama_like("LlamaForCausalLM", "LlamaConfig")
    mlp = "model.layers.0.mlp."
    return (
        model,
        None,
        {
            **_ATTENTION,
            mlp + "gate_proj.weight": ("muon", ((48, 32),)),
            mlp + "up_proj.weight": ("muon", ((48, 32),)),
            mlp + "down_proj.weight": ("muon", ((32, 48),)),
        },
    )


def bert() -> Built:
    cfg = _hf("BertConfig")(
        vocab_size=48,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=16,
    )
    model = _hf("BertForMaskedLM")(cfg)
    layer = "bert.encoder.layer.0."
    return (
        model,
        None,
        {
            "bert.embeddings.*_embeddings.weight": ("adamw", A),  # decoder tied to words
            "*LayerNorm*": ("adamw", A),
            "*bias": ("adamw", A),
            layer + "attention.self.*.weight": ("muon", ((32, 32),)),
            layer + "attention.output.dense.weight": ("muon", ((32, 32),)),
            layer + "intermediate.dense.weight": ("muon", ((64, 32),)),
            layer + "output.dense.weight": ("muon", ((32, 64),)),
            "cls.predictions.transform.dense.weight": ("muon", ((32, 32),)),
        },
    )


def mixtral() -> Built:
    model = _llama_like(
        "MixtralForCausalLM", "MixtralConfig", num_local_experts=4, num_experts_per_tok=2
    )
    mlp = "model.layers.0.mlp."
    return (
        model,
        None,
        {
            **_ATTENTION,
            mlp + "gate.weight": ("adamw", A),  # the router
            mlp + "experts.gate_up_proj": ("muon", ((4, 48, 32),) * 2),  # (4, 96, 32): gate|up
            mlp + "experts.down_proj": ("muon", ((4, 32, 48),)),
        },
    )


def qwen3_moe() -> Built:
    model = _llama_like(
        "Qwen3MoeForCausalLM",
        "Qwen3MoeConfig",
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=24,
        head_dim=8,
    )
    mlp = "model.layers.0.mlp."
    return (
        model,
        None,
        {
            **_ATTENTION,
            mlp + "gate.weight": ("adamw", A),
            mlp + "experts.gate_up_proj": ("muon", ((4, 24, 32),) * 2),
            mlp + "experts.down_proj": ("muon", ((4, 32, 24),)),
        },
    )


def gpt_oss() -> Built:
    """Experts stored (E, d_in, d_out) with interleaved gate|up columns, per-expert biases."""
    model = _llama_like(
        "GptOssForCausalLM", "GptOssConfig", num_local_experts=4, num_experts_per_tok=2, head_dim=8
    )
    mlp = "model.layers.0.mlp."
    return (
        model,
        None,
        {
            **_ATTENTION,
            "*.bias": ("adamw", A),
            "model.layers.0.self_attn.sinks": ("adamw", A),
            mlp + "router.weight": ("adamw", A),
            mlp + "experts.gate_up_proj": ("muon", ((4, 96, 32),)),  # (4, 32, 96) stored
            mlp + "experts.gate_up_proj_bias": ("adamw", A),
            mlp + "experts.down_proj": ("muon", ((4, 32, 48),)),  # (4, 48, 32) stored
            mlp + "experts.down_proj_bias": ("adamw", A),
        },
    )


def transformer_encoder() -> Built:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    return (
        model,
        None,
        {
            "layers.*.self_attn.in_proj_weight": ("muon", ((32, 32),) * 3),
            "layers.*.self_attn.out_proj.weight": ("muon", ((32, 32),)),
            "layers.*.linear1.weight": ("muon", ((64, 32),)),
            "layers.*.linear2.weight": ("muon", ((32, 64),)),
            "*bias": ("adamw", A),
            "layers.*.norm*.weight": ("adamw", A),
        },
    )


def multihead_attention() -> Built:
    """Separate q/k/v projections (kdim, vdim != embed_dim) next to a fused one."""

    class TwoAttentions(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fused = nn.MultiheadAttention(32, 4, batch_first=True)
            self.cross = nn.MultiheadAttention(32, 4, kdim=16, vdim=24, batch_first=True)

    torch.manual_seed(0)
    return (
        TwoAttentions(),
        None,
        {
            "fused.in_proj_weight": ("muon", ((32, 32),) * 3),
            "*.out_proj.weight": ("muon", ((32, 32),)),
            "cross.q_proj_weight": ("muon", ((32, 32),)),
            "cross.k_proj_weight": ("muon", ((32, 16),)),
            "cross.v_proj_weight": ("muon", ((32, 24),)),
            "*bias": ("adamw", A),
        },
    )


class EmbeddingHeadLM(nn.Module):
    """An LM whose logits are F.linear(h, embedding weight): no nn.Linear head."""

    def __init__(self, vocab: int = 48, d: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.emb(idx)
        h = h + self.fc2(F.gelu(self.fc1(h)))
        return F.linear(self.norm(h), self.emb.weight)


def embedding_head_lm() -> Built:
    torch.manual_seed(0)
    return (
        EmbeddingHeadLM(),
        _tokens(),
        {
            "emb.weight": ("adamw", A),
            "fc1.weight": ("muon", ((64, 16),)),
            "fc2.weight": ("muon", ((16, 64),)),  # the last Linear, not the head
            "fc*.bias": ("adamw", A),
            "norm.*": ("adamw", A),
        },
    )


def _timm(name: str, **kw: Any) -> nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **kw)


def timm_vit_tiny() -> Built:
    model = _timm("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=10)
    return (
        model,
        None,
        {
            "cls_token": ("adamw", A),  # 1x1x192
            "pos_embed": ("adamw", A),  # 1x17x192
            "patch_embed.proj.weight": ("muon", ((192, 192),)),  # (192, 3, 8, 8)
            "blocks.0.attn.qkv.weight": ("muon", ((192, 192),) * 3),
            "blocks.0.attn.proj.weight": ("muon", ((192, 192),)),
            "blocks.0.mlp.fc1.weight": ("muon", ((768, 192),)),
            "blocks.0.mlp.fc2.weight": ("muon", ((192, 768),)),
            "head.weight": ("adamw", A),
            "*norm*": ("adamw", A),
            "*bias": ("adamw", A),
        },
    )


def timm_resnet18() -> Built:
    model = _timm("resnet18", num_classes=10)
    expected: Expected = {"fc.weight": ("adamw", A), "*bn*": ("adamw", A), "*.bias": ("adamw", A)}
    expected["*downsample.1.*"] = ("adamw", A)  # BatchNorm of the shortcut
    for name, p in model.named_parameters():
        if p.ndim == 4:
            expected[name] = ("muon", ((p.shape[0], p[0].numel()),))
    return model, None, expected


def timm_efficientnet() -> Built:
    model = _timm("efficientnet_b0", num_classes=10)
    expected: Expected = {"classifier.weight": ("adamw", A), "*bn*": ("adamw", A)}
    expected["*.bias"] = ("adamw", A)
    for mod_name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            g, out = m.groups, m.out_channels
            shape = (g, out // g, m.weight[0].numel()) if g > 1 else (out, m.weight[0].numel())
            expected[f"{mod_name}.weight"] = ("muon", (shape,))
    return model, None, expected


def timm_convnext() -> Built:
    model = _timm("convnext_atto", num_classes=10)
    expected: Expected = {"head.fc.weight": ("adamw", A), "*norm*": ("adamw", A)}
    expected.update({"*.bias": ("adamw", A), "*.gamma": ("adamw", A)})
    for mod_name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            g, out = m.groups, m.out_channels
            shape = (g, out // g, m.weight[0].numel()) if g > 1 else (out, m.weight[0].numel())
            expected[f"{mod_name}.weight"] = ("muon", (shape,))
        elif isinstance(m, nn.Linear) and mod_name != "head.fc":
            expected[f"{mod_name}.weight"] = ("muon", (tuple(m.weight.shape),))
        elif isinstance(m, nn.LayerNorm):  # LayerNorm2d in the stem and the downsamplers
            expected[f"{mod_name}.weight"] = ("adamw", A)
    return model, None, expected


def _available(module: str) -> bool:
    if importlib.util.find_spec(module) is None:
        return False
    try:
        importlib.import_module(module)
    except Exception:  # e.g. timm without a torchvision built for this torch
        return False
    return True


#: name -> (builder, the package it needs or None)
MODELS: dict[str, tuple[Callable[[], Built], str | None]] = {
    "GPT-2 (transformers)": (gpt2, "transformers"),
    "Llama, vocab_size == intermediate_size (transformers)": (llama, "transformers"),
    "BERT (transformers)": (bert, "transformers"),
    "Mixtral (transformers)": (mixtral, "transformers"),
    "Qwen3-MoE (transformers)": (qwen3_moe, "transformers"),
    "GPT-OSS (transformers)": (gpt_oss, "transformers"),
    "nn.TransformerEncoder (torch)": (transformer_encoder, None),
    "nn.MultiheadAttention (torch)": (multihead_attention, None),
    "LM with F.linear(h, embedding) logits (example= given)": (embedding_head_lm, None),
    "ViT-Tiny (timm)": (timm_vit_tiny, "timm"),
    "ResNet-18 (timm)": (timm_resnet18, "timm"),
    "EfficientNet-B0 (timm)": (timm_efficientnet, "timm"),
    "ConvNeXt-Atto (timm)": (timm_convnext, "timm"),
}


def available(name: str) -> bool:
    """Whether MODELS[name]'s package imports here."""
    package = MODELS[name][1]
    return package is None or _available(package)
