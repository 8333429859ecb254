"""MERRA-2 downscaling with Prithvi WxC: the backbone sees a coarsened atmosphere on its
own grid, the decoders predict the fine fields.

Samples come from the ``prithviwxc`` package's own dataset (``Merra2Dataset``) and
collation (``preproc``), in the official input layout, with the variables and levels of
the backbone's ``config.yaml``. Each input field is averaged over ``factor x factor``
blocks and spread back over them (the coarse atmosphere, on the model's grid, as in IBM's
granite-wxc downscaling); the targets are the named surface variables at the sample's
time on the native grid, and their block means are the coarse values hard constraints
conserve. Splits are chronological; targets are standardised on the training split.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from eofm.data.era5 import chronological_splits
from eofm.data.splits import SplitLoaders
from eofm.errors import EofmError

log = logging.getLogger(__name__)


def coarsen(values: torch.Tensor, factor: int) -> torch.Tensor:
    """Block means over the last two axes, spread back over each block."""
    shape = values.shape
    flat = values.reshape(-1, 1, *shape[-2:])
    means = torch.nn.functional.avg_pool2d(flat, factor)
    spread = means.repeat_interleave(factor, -2).repeat_interleave(factor, -1)
    return spread.reshape(shape)


class _Samples(Dataset):
    def __init__(self, module: MERRA2DownscalingDataModule, indexes: Sequence[int]) -> None:
        self.module, self.indexes = module, list(indexes)

    def __len__(self) -> int:
        return len(self.indexes)

    def __getitem__(self, index: int) -> dict:
        m = self.module
        raw = m.wxc_dataset[self.indexes[index]]
        batch = m.preproc([raw], m.padding)
        fine = batch["y"][0, m.target_channels]  # (V, H, W) physical
        wxc = {
            "x": coarsen(batch["x"][0], m.factor),
            "y": batch["y"][0],
            "static": batch["static"][0],
            "climate": batch["climate"][0],
            "input_time": batch["input_time"][0],
            "lead_time": batch["lead_time"][0],
        }
        coarse = torch.nn.functional.avg_pool2d(fine[None], m.factor)[0]
        return {
            "wxc": wxc,
            "target": fine,
            "coarse_target": coarse,
            "valid": torch.isfinite(fine),
        }


class MERRA2DownscalingDataModule(SplitLoaders, L.LightningDataModule):
    """Chronological splits of MERRA-2 samples for a Prithvi WxC downscaling model."""

    name = "merra2_downscaling"

    def __init__(
        self,
        root: str | Path,
        *,
        variables: dict[str, Any],
        targets: Sequence[str],
        factor: int = 6,
        climatology: str | Path = "",
        input_hours: int = 3,
        time_range: Sequence[str] | None = None,
        split_fractions: Sequence[float] = (0.6, 0.2, 0.2),
        target_mean: Sequence[float] | None = None,
        target_std: Sequence[float] | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        seed: int = 0,
        **_: Any,
    ) -> None:
        super().__init__()
        try:
            from PrithviWxC.dataloaders.merra2 import Merra2Dataset, preproc
        except ImportError as exc:
            raise EofmError(f'MERRA-2 data needs: pip install "eofm[wxc]" ({exc}).') from None
        self.root = Path(root)
        if not self.root.is_dir():
            raise EofmError(f"data.root {self.root} is not a folder of MERRA-2 files.")
        clim = Path(climatology) if climatology else self.root
        surface = list(variables["surface_vars"])
        unknown = [t for t in targets if t not in surface]
        if unknown:
            raise EofmError(
                f"Targets {unknown} are not surface variables of the backbone ({surface})."
            )
        self.targets, self.factor = list(targets), factor
        self.target_channels = [surface.index(t) for t in targets]
        self.preproc = preproc
        self.padding = {"level": [0, 0], "lat": [0, 0], "lon": [0, 0]}
        start, end = time_range or ("1900-01-01", "2100-01-01")
        try:
            self.wxc_dataset = Merra2Dataset(
                time_range=(start, end),
                lead_times=[0],
                input_times=[-input_hours],
                data_path_surface=self.root,
                data_path_vertical=self.root,
                climatology_path_surface=clim,
                climatology_path_vertical=clim,
                surface_vars=surface,
                static_surface_vars=list(variables["static_surface_vars"]),
                vertical_vars=list(variables["vertical_vars"]),
                levels=list(variables["levels"]),
                positional_encoding=variables.get("positional_encoding", "absolute"),
            )
            count = len(self.wxc_dataset)
        except (OSError, KeyError, ValueError) as exc:
            raise EofmError(f"Cannot read MERRA-2 data under {self.root}: {exc}") from None
        if count == 0:
            raise EofmError(
                f"No MERRA-2 sample under {self.root} (MERRA2_sfc_YYYYMMDD.nc and "
                f"MERRA_pres_YYYYMMDD.nc with climatology under {clim})."
            )
        self.splits = chronological_splits(list(range(count)), split_fractions, self.root)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        first = _Samples(self, [0])[0]
        h, w = first["target"].shape[-2:]
        if h % factor or w % factor:
            raise EofmError(
                f"The grid ({h} x {w}) of {self.root} is not a multiple of data.factor {factor}."
            )
        if target_mean is None or target_std is None:
            values = torch.stack([s["target"] for s in self.dataset("train")])
            target_mean = values.mean(dim=(0, 2, 3)).tolist()
            target_std = [v or 1.0 for v in values.std(dim=(0, 2, 3)).tolist()]
        self.mean, self.std = [float(v) for v in target_mean], [float(v) for v in target_std]
        self.regions: dict = {}
        self.lat = torch.from_numpy(np.asarray(self.wxc_dataset.lats, np.float32))
        self.lon = torch.from_numpy(np.asarray(self.wxc_dataset.lons, np.float32))
        log.info(
            "MERRA-2 downscaling %s: %s", self.root, {s: len(v) for s, v in self.splits.items()}
        )

    def dataset(self, split: str) -> _Samples:
        return _Samples(self, self.splits[split])

    @staticmethod
    def collate(samples: list[dict]) -> dict:
        wxc = {k: torch.stack([s["wxc"][k] for s in samples]) for k in samples[0]["wxc"]}
        out = {
            k: torch.stack([s[k] for s in samples]) for k in ("target", "coarse_target", "valid")
        }
        return {"wxc": wxc, **out}

    def augmentations(self) -> list[str]:
        return []
