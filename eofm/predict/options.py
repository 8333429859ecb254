"""The options of ``eofm predict``, checked before anything heavy is imported."""

from __future__ import annotations

from dataclasses import dataclass

from eofm.errors import EofmError

#: The ``--vector`` formats: ``parquet`` (GeoParquet, written as ``<stem>.parquet``, the
#: usual GeoParquet extension) and ``geojson`` (``<stem>.geojson``).
VECTOR_FORMATS = ("parquet", "geojson")
#: Other names accepted for them.
VECTOR_ALIASES = {"geoparquet": "parquet"}


@dataclass
class PredictOptions:
    tile: int = 224
    overlap: int = 32
    batch_size: int = 8
    probabilities: bool = False
    tta_flip: bool = False
    vector: str | None = None  # "parquet" (alias "geoparquet") | "geojson"
    quicklook: bool = True
    overwrite: bool = False
    bands: list[str] | None = None
    strict: bool = False  # refuse scenes unlike the training data instead of warning
    date: str | None = None  # YYYY-MM-DD: acquisition date for TL models (else the tags)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto | bf16 | fp16 | fp32
    workers: int | str = "auto"  # reading threads: auto | N >= 1
    uncertainty: str | None = None  # entropy | mc-dropout:N | tta
    resolution_m: float | None = None  # grid of multi-file products (default 10 m)
    gsd_m: float | None = None  # Scale-MAE: metres per pixel of the inputs (else each CRS's)

    def validate(self, patch_size: int | None = None) -> None:
        """One error naming the option, exit code 2 like any argument error."""

        def bad(message: str) -> EofmError:
            return EofmError(message, exit_code=2)

        if self.tile <= 0:
            raise bad(f"--tile must be a positive number of pixels, got {self.tile}.")
        if self.batch_size <= 0:
            raise bad(f"--batch-size must be at least 1, got {self.batch_size}.")
        if not 0 <= self.overlap < self.tile:
            raise bad(f"--overlap must be in [0, {self.tile}), got {self.overlap}.")
        if self.resolution_m is not None and not 0 < self.resolution_m < float("inf"):
            raise bad(f"--resolution must be a positive number of metres, got {self.resolution_m}.")
        if self.gsd_m is not None and not (self.gsd_m > 0 and self.gsd_m < float("inf")):
            raise bad(f"--gsd must be a positive number of metres per pixel, got {self.gsd_m}.")
        self.vector = VECTOR_ALIASES.get(self.vector or "", self.vector)
        if self.vector not in (None, *VECTOR_FORMATS):
            raise bad(
                f"--vector must be parquet (also spelled geoparquet) or geojson, got {self.vector!r}."
            )
        from eofm.predict.device import (
            check_device_spec,
            check_precision_spec,
            check_workers_spec,
            nvidia_driver_present,
        )

        if self.date is not None:
            from eofm.data.coords import parse_date

            try:
                parse_date(self.date)
            except EofmError as exc:
                raise bad(f"--date: {exc}") from None

        check_workers_spec(self.workers)
        parse_uncertainty(self.uncertainty)
        check_device_spec(self.device)
        check_precision_spec(self.precision)
        on_cpu = self.device == "cpu" or (self.device == "auto" and not nvidia_driver_present())
        if self.precision == "fp16" and on_cpu:
            raise bad("--precision fp16 is not supported on the CPU; use fp32 or bf16.")
        if patch_size and self.tile % patch_size:
            raise bad(
                f"--tile {self.tile} must be a multiple of the model's patch size {patch_size}."
            )


UNCERTAINTIES = ("entropy", "mc-dropout:N", "tta")


def parse_uncertainty(spec: str | None) -> tuple[str | None, int]:
    """``entropy`` / ``tta`` / ``mc-dropout:N`` -> (kind, passes); exit-2 errors otherwise."""
    if spec is None:
        return None, 1
    if spec in ("entropy", "tta"):
        return spec, 4 if spec == "tta" else 1
    if spec.startswith("mc-dropout:"):
        try:
            passes = int(spec.split(":", 1)[1])
        except ValueError:
            passes = 0
        if passes >= 2:
            return "mc-dropout", passes
    raise EofmError(
        f"--uncertainty must be entropy, tta or mc-dropout:N with N >= 2, got {spec!r}.",
        exit_code=2,
    )
