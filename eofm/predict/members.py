"""What the model stage of ``eofm predict`` computes for a batch of tiles: class
probabilities, averaged over the members of an ensemble, test-time views or Monte Carlo
dropout passes, and (when an uncertainty needs it) the members' expected entropy.

- deep ensembles: several trained runs, each normalising the tiles its own way
  (Lakshminarayanan et al., "Simple and Scalable Predictive Uncertainty Estimation using
  Deep Ensembles", NeurIPS 2017);
- Monte Carlo dropout: the dropout layers kept active, N passes (Gal and Ghahramani,
  "Dropout as a Bayesian Approximation", ICML 2016);
- test-time augmentation: the four flips of each tile, undone on the outputs.

From the mean probabilities ``p`` and the expected entropy ``E[H]`` the engine derives the
predictive entropy ``H(p)`` and the mutual information ``H(p) - E[H]`` (Houlsby et al.,
"Bayesian Active Learning for Classification and Preference Learning", 2011): the part of
the uncertainty on which the members disagree. A regression model's values (``values``)
are averaged the same way, with their second moment in place of the entropy: the spread
of the members, views or passes is ``sqrt(E[x^2] - E[x]^2)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from eofm.errors import EofmError


def _flips(x: torch.Tensor, index: int) -> torch.Tensor:
    dims = [[], [-1], [-2], [-2, -1]][index]
    return torch.flip(x, dims=dims) if dims else x


def _fits(out: torch.Tensor | None, values: torch.Tensor) -> bool:
    return (
        out is not None
        and out.shape == values.shape
        and out.dtype == values.dtype
        and out.device == values.device
    )


def _dropouts(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]


class TileModel:
    """Probabilities ``(B, C, H, W)`` of a batch: ``K`` classes, then the expected entropy
    of the members when ``expected_entropy`` (``C = K + 1``)."""

    def __init__(
        self,
        members: Sequence[Any],
        *,
        tta_flip: bool = False,
        uncertainty: str | None = None,
        passes: int = 1,
        values: bool = False,
    ) -> None:
        self.members = list(members)
        self.values = values  # raw outputs (regression), not softmax probabilities
        first = self.members[0]
        for other in self.members[1:]:
            if list(other.class_names) != list(first.class_names):
                raise EofmError(
                    f"Ensemble members predict different classes: {first.source} "
                    f"{first.class_names} vs {other.source} {other.class_names}."
                )
            if list(other.bands) != list(first.bands):
                raise EofmError(
                    f"Ensemble members read different bands: {first.source} {first.bands} vs "
                    f"{other.source} {other.bands}."
                )
        if uncertainty == "mc-dropout":
            for member in self.members:
                if not _dropouts(member.model):
                    raise EofmError(
                        f"--uncertainty mc-dropout needs dropout layers; {member.source} has "
                        "none with p > 0 (train with decoder.dropout > 0, or use tta or entropy).",
                        exit_code=2,
                    )
        self.num_classes = len(first.class_names)
        self.tta_flip, self.uncertainty, self.passes = tta_flip, uncertainty, passes
        self.expected_entropy = len(self.members) > 1 or uncertainty in ("mc-dropout", "tta")
        self.channels = self.num_classes + (1 if self.expected_entropy else 0)
        self._shift: list[tuple[torch.Tensor, torch.Tensor] | None] = []

    def to(self, device: Any) -> TileModel:
        """Move the members to ``device`` and prepare each one's renormalisation."""
        import numpy as np

        first = self.members[0]
        for member in self.members:
            if device.type != "cpu":
                member.model.to(device)
            same = np.allclose(member.mean, first.mean) and np.allclose(member.std, first.std)
            if same:
                self._shift.append(None)
                continue
            # x_m = (x * std_0 + mean_0 - mean_m) / std_m, per band
            mean0, std0 = (
                torch.tensor(v, device=device)[:, None, None] for v in (first.mean, first.std)
            )
            mean, std = (
                torch.tensor(v, device=device)[:, None, None] for v in (member.mean, member.std)
            )
            self._shift.append((std0 / std, (mean0 - mean) / std))
        return self

    def _views(self) -> list[int]:
        if self.uncertainty == "tta":
            return [0, 1, 2, 3]
        return [0, 1] if self.tta_flip else [0]

    def __call__(
        self, x: torch.Tensor, extra: list, kwargs: dict, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``out``: where the probabilities of a single prediction (one member, one view)
        may be written, when it has their shape; other cases return a new tensor."""
        outputs: list[torch.Tensor] = []
        single = len(self.members) == 1 and len(self._views()) == 1
        for member, shift in zip(self.members, self._shift, strict=True):
            inputs = x if shift is None else x * shift[0] + shift[1]
            temperature = member.temperature
            dropouts = _dropouts(member.model) if self.uncertainty == "mc-dropout" else []
            for layer in dropouts:
                layer.train()
            try:
                views = []
                for _ in range(self.passes if dropouts else 1):
                    for view in self._views():
                        logits = member.model(_flips(inputs, view), *extra, **kwargs).float()
                        if self.values:
                            views.append(_flips(logits, view))
                            continue
                        if temperature != 1.0:
                            logits = logits / temperature
                        if single and not dropouts and _fits(out, logits):
                            views.append(torch.softmax(logits, dim=1, out=out))
                        else:
                            views.append(_flips(logits.softmax(dim=1), view))
            finally:
                for layer in dropouts:
                    layer.eval()
            if self.tta_flip and self.uncertainty != "tta" and not dropouts:
                views = [(views[0] + views[1]) / 2]  # --tta flip: one averaged prediction
            outputs.extend(views)
        if len(outputs) == 1:
            return outputs[0]
        mean = torch.stack(outputs).mean(dim=0)
        if not self.expected_entropy:
            return mean
        if self.values:  # the second moment, from which the products take the spread
            return torch.cat([mean, torch.stack(outputs).square().mean(dim=0)], dim=1)
        entropy = torch.stack([-torch.special.xlogy(p, p).sum(dim=1) for p in outputs]).mean(0)
        return torch.cat([mean, entropy[:, None]], dim=1)
