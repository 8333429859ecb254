"""The ``data`` keys of multi-temporal crop classification (``data.name: multi_temporal_crop``);
see ``multi_temporal_crop.py``."""

from __future__ import annotations

from dataclasses import dataclass

from eofm.bands import HLS_PRITHVI_BANDS
from eofm.data.config import ChipDataConfig, check_bands_known
from eofm.errors import EofmError, RecipeError
from eofm.typed_config import option

#: The release's three observations through the 2022 growing season, in file order.
RELEASE_FRAMES = ("first", "middle", "last")


@dataclass
class MultiTemporalCropConfig(ChipDataConfig):
    """HLS chips of 3 dates x 6 bands (one 18-band ``_merged.tif``) with CDL crop masks.

    ``frames`` names the time steps in file order, each with an optional date
    (``YYYY-MM-DD``): TL backbones get it as the step's temporal coordinate."""

    bands: list[str] = option(
        help="bands of each frame by name, of BLUE, GREEN, RED, NIR_NARROW, SWIR_1, SWIR_2",
        factory=lambda: list(HLS_PRITHVI_BANDS),
    )
    frames: list[dict[str, str]] = option(
        help="the time steps in file order: [{name: first, date: 2022-04-15}, ...] (date optional)",
        factory=lambda: [{"name": name} for name in RELEASE_FRAMES],
    )

    def split_description(self) -> str:
        if self.split:
            return super().split_description()
        return (
            "the release's training_data.txt chips train; validation_data.txt chips are divided "
            "into val and test in the ratio of data.split_fractions' last two numbers."
        )

    def frame_dates(self) -> list[tuple[int, int] | None]:
        """(year, day of year) of each frame, or None where ``data.frames`` gives no date."""
        from eofm.data.coords import parse_date

        return [parse_date(f["date"]) if f.get("date") else None for f in self.frames]

    def frame_list(self) -> list[dict[str, str]]:
        return [dict(frame) for frame in self.frames]

    def validate(self, where: str) -> None:
        check_bands_known(self, where, HLS_PRITHVI_BANDS, "the crop chips'")
        if len(self.frames) != len(RELEASE_FRAMES):
            raise RecipeError(
                f"data.frames in {where} names {len(self.frames)} frames; the chips hold "
                f"{len(RELEASE_FRAMES)} time steps x 6 bands (18 bands)."
            )
        names = []
        for i, frame in enumerate(self.frames):
            unknown = sorted(set(frame) - {"name", "date"})
            if unknown or not frame.get("name"):
                raise RecipeError(
                    f"data.frames[{i}] in {where} must be {{name: NAME, date: YYYY-MM-DD}} "
                    f"(date optional), got {frame}."
                )
            names.append(frame["name"])
            if frame.get("date"):
                try:
                    self.frame_dates()
                except EofmError as exc:
                    raise RecipeError(f"data.frames[{i}].date in {where}: {exc}") from None
        if len(set(names)) != len(names):
            raise RecipeError(f"data.frames in {where} repeats a frame name: {names}.")
        super().validate(where)

    def check_files(self, where: str) -> None:
        super().check_files(where)
        from eofm.data.multi_temporal_crop_layout import check_release_layout

        check_release_layout(self.root, where)
