"""Prithvi WxC as a latent backbone (Schmude et al., "Prithvi WxC: Foundation Model for
Weather and Climate", 2024), through the ``prithviwxc`` package.

The model class and the readers of its scaler files (``musigma_*``, the input means and
standard deviations; ``anomaly_variance_*``, which scale the outputs) are the package's
own; eofm only downloads the release's files from one pinned commit, builds the model
from ``config.yaml`` and loads the weights strictly (``torch.load(weights_only=True)``).

The latent is the encoder's output: the package's forward runs as is (its normalisation,
static and time embeddings, patching) with no input masked and the mask units in their
own order, and stops once the encoder has run (the decoder is never evaluated). It is
returned on the patch grid, ``(B, H/p, W/p, D)``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eofm.backbones.manifest import WxCManifest
from eofm.errors import EofmError

log = logging.getLogger(__name__)

INSTALL_HINT = 'Prithvi WxC backbones need the optional extra: pip install "eofm[wxc]"'
#: Model arguments ``PrithviWxC`` takes from ``config.yaml``.
ARCHITECTURE_KEYS = (
    "in_channels",
    "input_size_time",
    "in_channels_static",
    "input_scalers_epsilon",
    "static_input_scalers_epsilon",
    "n_lats_px",
    "n_lons_px",
    "patch_size_px",
    "mask_unit_size_px",
    "embed_dim",
    "n_blocks_encoder",
    "n_blocks_decoder",
    "mlp_multiplier",
    "n_heads",
    "dropout",
    "drop_path",
    "parameter_dropout",
    "residual",
    "masking_mode",
    "positional_encoding",
    "encoder_shifting",
    "decoder_shifting",
)
VARIABLE_KEYS = ("surface_vars", "static_surface_vars", "vertical_vars", "levels")


def import_wxc() -> Any:
    try:
        import PrithviWxC.dataloaders.merra2 as merra2
        import PrithviWxC.model as model
    except ImportError as exc:
        raise EofmError(f"{INSTALL_HINT} (import failed: {exc}).") from None
    return model, merra2


def read_config(path: Path, where: str) -> dict[str, Any]:
    """``config.yaml``'s ``params`` over the package's own variable lists and settings."""
    import yaml

    try:
        text = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise EofmError(f"Cannot read {where}: {exc}") from None
    params = text.get("params", text) if isinstance(text, dict) else None
    if not isinstance(params, dict):
        raise EofmError(f"{where} holds no 'params' mapping.")
    defaults: dict[str, Any] = {}
    try:
        from importlib import resources

        defaults = yaml.safe_load(
            resources.files("PrithviWxC.config_files").joinpath("config.yaml").read_text()
        )
    except (ImportError, FileNotFoundError, ModuleNotFoundError):
        pass
    config = {**defaults, **params}
    missing = [k for k in (*ARCHITECTURE_KEYS, *VARIABLE_KEYS) if k not in config]
    if missing:
        raise EofmError(f"{where} lacks the model settings {missing}.")
    return config


class WxCLatentBackbone(nn.Module):
    """A Prithvi WxC that returns its encoder's latent on the patch grid."""

    def __init__(
        self,
        manifest: WxCManifest,
        config: dict[str, Any],
        scalers: dict[str, Path],
        *,
        weights: Path | None = None,
        source: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        wxc, merra2 = import_wxc()
        self.manifest, self.config = manifest, config
        surface, vertical = config["surface_vars"], config["vertical_vars"]
        levels, statics = config["levels"], config["static_surface_vars"]
        mu, sigma = merra2.input_scalers(
            surface, vertical, levels, scalers["musigma_surface"], scalers["musigma_vertical"]
        )
        variance = merra2.output_scalers(
            surface,
            vertical,
            levels,
            scalers["anomaly_variance_surface"],
            scalers["anomaly_variance_vertical"],
        )
        static_mu, static_sigma = merra2.static_input_scalers(scalers["musigma_surface"], statics)
        kwargs = {k: config[k] for k in ARCHITECTURE_KEYS}
        kwargs["patch_size_px"] = tuple(kwargs["patch_size_px"])
        kwargs["mask_unit_size_px"] = tuple(kwargs["mask_unit_size_px"])
        self.model = wxc.PrithviWxC(
            **kwargs,
            input_scalers_mu=mu,
            input_scalers_sigma=sigma,
            static_input_scalers_mu=static_mu,
            static_input_scalers_sigma=static_sigma,
            output_scalers=variance**0.5,
            mask_ratio_inputs=0.0,
            mask_ratio_targets=0.0,
            checkpoint_encoder=[],
            checkpoint_decoder=[],
        )
        self.source = None
        if weights is not None:
            self._load(weights, source or {"repo": "?", "revision": "?", "file": str(weights)})
        # no input is masked, and the mask units keep their order: the latent is the
        # whole grid, deterministic (the package shuffles unit order even at ratio 0)
        self.model.generate_mask = self._identity_mask
        self.patch = int(kwargs["patch_size_px"][0])
        self.embed_dim = int(config["embed_dim"])

    def _identity_mask(self, sizes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        batch, units = sizes[0], int(sizes[1])
        order = torch.arange(units).view(1, -1).expand(batch, -1)
        return order[:, :0], order

    def _load(self, path: Path, source: dict[str, str]) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise EofmError(
                f"Prithvi WxC weights {source['file']} from hf://{source['repo']}@"
                f"{source['revision']} could not be read ({type(exc).__name__})."
            ) from None
        if isinstance(state, dict) and "model_state" in state:
            state = state["model_state"]
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise EofmError(
                f"Prithvi WxC weights {source['file']} from hf://{source['repo']}@"
                f"{source['revision']} do not match config.yaml: {first}"
            ) from None
        self.source = source

    @property
    def latent_dim(self) -> int:
        return self.embed_dim

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        captured: dict[str, torch.Tensor] = {}

        def stop(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            captured["latent"] = output
            raise _EncoderDone

        handle = self.model.encoder.register_forward_hook(stop)
        try:
            self.model(batch)
        except _EncoderDone:
            pass
        finally:
            handle.remove()
        tokens = captured["latent"]  # (B, windows, tokens per window, D)
        g0, g1 = self.model.global_shape_mu
        l0, l1 = self.model.local_shape_mu
        b, d = tokens.shape[0], tokens.shape[-1]
        grid = tokens.reshape(b, g0, g1, l0, l1, d).permute(0, 1, 3, 2, 4, 5)
        return grid.reshape(b, g0 * l0, g1 * l1, d)


class _EncoderDone(Exception):
    """Stops the forward pass once the encoder's output is captured."""


def load_wxc_backbone(
    manifest: WxCManifest, *, pretrained: bool = True, allow_random_init: bool = False
) -> WxCLatentBackbone:
    """Download ``config.yaml``, the scaler files and (``pretrained``) the weights from one
    commit of the release's repo, build the model and load it strictly.

    The scaler files are needed to build the model at all, so a repo without them is an
    error naming the missing files, whatever ``allow_random_init`` says.
    """
    from eofm.backbones.fetch import fetch_or_random_init
    from eofm.publishing import hub

    where = f"hf://{manifest.hub_repo}@{manifest.revision}"
    config_path, commit = hub.download_file(
        manifest.hub_repo, manifest.config_file, manifest.revision
    )
    revision = commit or manifest.revision
    files = set(hub.list_files(manifest.hub_repo, revision))
    missing = [f for _, f in manifest.scaler_files if f not in files]
    if missing:
        raise EofmError(
            f"{where} lacks the normalisation files {missing} that Prithvi WxC is built "
            "with (the release keeps them under climatology/)."
        )
    scalers = {
        key: hub.download_file(manifest.hub_repo, file, revision)[0]
        for key, file in manifest.scaler_files
    }
    config = read_config(config_path, f"{manifest.config_file} of {where}")

    def fetch() -> tuple[Path, dict[str, str]]:
        path, _ = hub.download_file(manifest.hub_repo, manifest.hub_file, revision)
        return path, {"repo": manifest.hub_repo, "revision": revision, "file": manifest.hub_file}

    path, source = (None, None)
    if pretrained:
        path, source = fetch_or_random_init(manifest.name, fetch, allow_random_init)
    model = WxCLatentBackbone(manifest, config, scalers, weights=path, source=source)
    if source is not None:
        log.info("Loaded Prithvi WxC %s from hf://%s@%s", source["file"], source["repo"], revision)
    return model
