"""What every eofm model shares: a backbone whose latent a decoder turns into outputs.

``encode`` and ``decode`` are separate so that the latent cache (``eofm.train.cache``)
can run a frozen backbone once and train the decoder from stored latents; ``encode``
runs without gradients when the backbone does not train.
"""

from __future__ import annotations

import torch
from torch import nn


class LatentModel(nn.Module):
    """Backbone ► latent ► decoder. Subclasses say how a batch is encoded and decoded."""

    #: Batch entries the backbone consumes (the cache stores latents in their place).
    INPUT_KEYS: tuple[str, ...] = ()

    def __init__(self, backbone: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.backbone_needs_grad = True

    def backbone_grad(self) -> torch.autograd.grad_mode.set_grad_enabled:
        """Gradients through the backbone only when it trains."""
        return torch.set_grad_enabled(torch.is_grad_enabled() and self.backbone_needs_grad)

    def encode_batch(self, batch: dict) -> dict[str, torch.Tensor]:
        """For the latent cache: what :meth:`decode_batch` needs in place of the inputs."""
        raise NotImplementedError

    def decode_batch(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def predict_batch(self, batch: dict) -> torch.Tensor:
        """Outputs for a batch of raw inputs, or of cached latents."""
        if "latent" in batch:
            return self.decode_batch(batch)
        return self.decode_batch({**batch, **self.encode_batch(batch)})


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
