"""What the ViT encoders (Prithvi, Scale-MAE) share: timm blocks and the tapped forward.

Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021; blocks from timm with the
released layout (qkv with bias, LayerNorm eps from the config).
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from eofm.backbones.manifest import ViTConfig


def transformer_blocks(config: ViTConfig) -> nn.ModuleList:
    """``config.depth`` timm blocks (initialise them with :func:`init_linear_weights`)."""
    blocks = nn.ModuleList(
        Block(
            config.embed_dim,
            config.num_heads,
            mlp_ratio=config.mlp_ratio,
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=config.norm_eps),
        )
        for _ in range(config.depth)
    )
    return blocks


def init_linear_weights(blocks: nn.Module) -> None:
    """Truncated-normal linear weights (std 0.02) and zero biases, as MAE initialises."""
    for module in blocks.modules():
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)


def tapped_tokens(
    blocks: nn.ModuleList, norm: nn.Module, tokens: torch.Tensor, taps: tuple[int, ...]
) -> list[torch.Tensor]:
    """The tokens after each tapped block; the last block's output is normed. Blocks after
    the deepest tap are not run."""
    last = len(blocks) - 1
    out = []
    for i, block in enumerate(blocks):
        tokens = block(tokens)
        if i in taps:
            out.append(norm(tokens) if i == last else tokens)
        if i >= max(taps):
            break
    return out
