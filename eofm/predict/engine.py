"""Streaming sliding-window inference over GeoTIFF scenes of any size.

Memory is bounded by one strip of tiles, never by the scene: tiles are read with rasterio
window by window (a reader thread keeps the next batches ready), predicted in batches
under ``torch.inference_mode``, blended with a separable sine-squared (Hann) window whose
weights are normalised where tiles overlap, and written strip by strip into a tiled
GeoTIFF that is finally converted to a Cloud-Optimized GeoTIFF. Every output is written
under a temporary name and renamed when complete.

Blending overlapping tile predictions with smooth weights follows the common practice of
window-weighted stitching (e.g. Huang et al., "Large-scale semantic classification:
outcome of the first year of Inria aerial image labeling benchmark", IGARSS 2018).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from eofm.errors import EofmError
from eofm.models.trained import TrainedModel
from eofm.predict.options import PredictOptions
from eofm.predict.outputs import atomic_output
from eofm.predict.plan import ScenePlan, plan_scene
from eofm.predict.scenes import SceneReader, inspect_scene

log = logging.getLogger(__name__)

CLASS_NODATA = 255
GDAL_CACHE_MB = 32  # bounded: GDAL's block cache would otherwise grow with the scene
#: Scenes are processed in column bands this wide, so memory depends on neither dimension.
COLUMN_BAND = 8192


@dataclass
class SceneResult:
    source: Path
    outputs: list[Path] = field(default_factory=list)
    skipped: bool = False
    all_nodata: bool = False


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Window offsets covering ``length``; the last window is flush with the edge."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def column_bands(width: int, tile: int, stride: int) -> list[tuple[tuple[int, int], list[int]]]:
    """``((x0, x1), tile columns)`` per column band: the global tiles that touch it."""
    cols = tile_starts(width, tile, stride)
    bands = []
    for x0 in range(0, width, COLUMN_BAND):
        x1 = min(width, x0 + COLUMN_BAND)
        bands.append(((x0, x1), [c for c in cols if c < x1 and c + tile > x0]))
    return bands


def count_tiles(height: int, width: int, tile: int, overlap: int) -> int:
    """Tiles predicted for a scene (those straddling column bands count twice)."""
    stride = tile - overlap
    rows = len(tile_starts(height, tile, stride))
    return rows * sum(len(cols) for _, cols in column_bands(width, tile, stride))


def blend_weights(tile: int) -> np.ndarray:
    """A separable sine-squared window, strictly positive so every pixel gets weight."""
    ramp = np.sin(np.pi * (np.arange(tile) + 0.5) / tile) ** 2
    ramp = np.maximum(ramp, 1e-3)
    return np.outer(ramp, ramp).astype(np.float32)


def _prefetch(produce: Callable[[], Iterator], depth: int = 3) -> Iterator:
    """Run a generator in a thread, ``depth`` items ahead; errors re-raise in the caller."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def worker() -> None:
        try:
            for item in produce():
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            items.put(exc)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


class Predictor:
    """Applies a trained model to scenes; one instance serves many scenes."""

    def __init__(self, trained: TrainedModel, options: PredictOptions) -> None:
        self.trained = trained
        self.options = options
        options.validate(trained.patch_size)
        self.weights = blend_weights(options.tile)
        self.num_classes = len(trained.class_names)

    @torch.inference_mode()
    def _probabilities(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch)
        probs = self.trained.model(x).softmax(dim=1)
        if self.options.tta_flip:
            flipped = self.trained.model(torch.flip(x, dims=[-1])).softmax(dim=1)
            probs = (probs + torch.flip(flipped, dims=[-1])) / 2
        return probs.numpy()

    def plan(self, source: Path, out_dir: Path, inputs: Sequence[Path] = ()) -> ScenePlan:
        """What predicting ``source`` into ``out_dir`` writes (raises if it would harm a file)."""
        o = self.options
        return plan_scene(
            Path(source),
            Path(out_dir),
            quicklook=o.quicklook,
            vector=o.vector,
            overwrite=o.overwrite,
            inputs=inputs,
        )

    def predict(
        self,
        source: Path,
        out_dir: Path,
        *,
        on_tiles: Callable[[int], None] | None = None,
        plan: ScenePlan | None = None,
    ) -> SceneResult:
        """Predict one scene into ``out_dir`` following ``plan`` (made here if not given)."""
        from eofm.predict.outputs import check_output_dir

        plan = plan or self.plan(source, out_dir)
        result = SceneResult(Path(source))
        if plan.done:
            result.skipped = True
            return result
        check_output_dir(plan.raster.parent)
        try:
            self._write(plan, result, on_tiles)
        except OSError as exc:
            raise EofmError(
                f"Cannot write the prediction of {source} to {plan.raster.parent}: "
                f"{exc.strerror or exc}. Nothing partial was left behind."
            ) from None
        return result

    def _write(
        self, plan: ScenePlan, result: SceneResult, on_tiles: Callable[[int], None] | None
    ) -> None:
        import rasterio
        from rasterio.errors import RasterioIOError

        source, raster_path = plan.source, plan.raster
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024 * 1024):
            if plan.write_raster:
                reader = self.open_scene(source)
                try:
                    with atomic_output(raster_path) as tmp_cog:
                        result.all_nodata = self._stream(reader, tmp_cog, on_tiles)
                except RasterioIOError as exc:  # GDAL reports a full disk this way
                    raise OSError(str(exc).splitlines()[0]) from None
                finally:
                    reader.close()
                result.outputs.append(raster_path)
                if result.all_nodata:
                    log.warning("%s holds no valid pixel: its prediction is all nodata.", source)
            if plan.quicklook:
                from eofm.predict.outputs import write_quicklook

                with atomic_output(plan.quicklook) as tmp:
                    write_quicklook(
                        raster_path, tmp, self.num_classes, probabilities=self.options.probabilities
                    )
                result.outputs.append(plan.quicklook)
            if plan.vector:
                from eofm.predict.vectors import write_polygons

                with atomic_output(plan.vector) as tmp:
                    write_polygons(raster_path, tmp, self.trained.class_names, self.options.vector)
                result.outputs.append(plan.vector)

    def open_scene(self, source: Path) -> SceneReader:
        """Open a scene, checking it is readable and has the model's bands (clear errors)."""
        info = inspect_scene(source, self.trained.bands, self.options.bands)
        return SceneReader(
            source, info.indexes, self.trained.mean, self.trained.std, self.options.tile
        )

    def _stream(
        self, reader: SceneReader, target: Path, on_tiles: Callable[[int], None] | None
    ) -> bool:
        """Predict the whole scene into ``target`` (a COG); returns True if all nodata."""
        import rasterio
        from rasterio.shutil import copy as raster_copy

        ds, t = reader.ds, self.options.tile
        height, width = ds.height, ds.width
        stride = t - self.options.overlap
        rows = tile_starts(height, t, stride)
        k = self.num_classes
        probabilities = self.options.probabilities
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": k if probabilities else 1,
            "dtype": "float32" if probabilities else "uint8",
            "nodata": float("nan") if probabilities else CLASS_NODATA,
            "crs": ds.crs,
            "transform": ds.transform,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,  # staging stays uncompressed: the COG copy compresses once
        }
        staging = target.with_name(target.name + ".gtiff")
        any_valid = False
        try:
            with rasterio.open(staging, "w", **profile) as out:
                for span, band_cols in column_bands(width, t, stride):
                    any_valid |= self._stream_band(reader, out, rows, band_cols, span, on_tiles)
            raster_copy(
                staging,
                target,
                driver="COG",
                compress="DEFLATE",
                blocksize=256,
                overview_resampling="nearest" if not probabilities else "average",
            )
        finally:
            staging.unlink(missing_ok=True)
        return not any_valid

    def _stream_band(
        self,
        reader: SceneReader,
        out,
        rows: list[int],
        cols: list[int],
        span: tuple[int, int],
        on_tiles: Callable[[int], None] | None,
    ) -> bool:
        """Predict the columns ``span`` of the scene, strip by strip; True if any valid.

        Tiles come from the scene's global grid, so a tile that straddles two column
        bands is computed in both and every pixel is blended exactly as in one pass.
        """
        from rasterio.windows import Window

        t, height = self.options.tile, reader.ds.height
        left, right = cols[0], min(reader.ds.width, cols[-1] + t)
        x0, x1 = span
        k, band_height, band_width = self.num_classes, min(t, height), right - left
        acc = np.zeros((k, band_height, band_width), np.float32)
        wsum = np.zeros((band_height, band_width), np.float32)
        valid = np.zeros((band_height, band_width), bool)
        any_valid = False
        top = 0  # first scene row held in the buffers
        pending = list(rows)
        for row, positions, probs_batch, masks in self._by_strip(
            _prefetch(lambda: self._batches(reader, rows, cols))
        ):
            for (r, c), probs, mask in zip(positions, probs_batch, masks, strict=True):
                h, w = min(t, height - r), min(t, reader.ds.width - c)
                y, x = r - top, c - left
                acc[:, y : y + h, x : x + w] += probs[:, :h, :w] * self.weights[:h, :w]
                wsum[y : y + h, x : x + w] += self.weights[:h, :w]
                valid[y : y + h, x : x + w] |= mask[:h, :w]
            if on_tiles:
                on_tiles(len(positions))
            if row is None:
                continue
            pending.remove(row)  # strip `row` is complete: rows before the next strip are final
            done_until = pending[0] if pending else height
            n = done_until - top
            if n <= 0:
                continue
            inner = slice(x0 - left, x1 - left)
            any_valid |= bool(valid[:n, inner].any())
            block = self._finalise(acc[:, :n, inner], wsum[:n, inner], valid[:n, inner])
            out.write(block, window=Window(x0, top, x1 - x0, n))
            keep = band_height - n
            acc[:, :keep], wsum[:keep], valid[:keep] = acc[:, n:], wsum[n:], valid[n:]
            acc[:, keep:], wsum[keep:], valid[keep:] = 0, 0, False
            top = done_until
        return any_valid

    def _finalise(self, acc: np.ndarray, wsum: np.ndarray, valid: np.ndarray) -> np.ndarray:
        probs = acc / np.maximum(wsum, 1e-12)
        if self.options.probabilities:
            return np.where(valid, probs, np.nan).astype(np.float32)
        classes = probs.argmax(axis=0).astype(np.uint8)
        return np.where(valid, classes, CLASS_NODATA)[None].astype(np.uint8)

    def _batches(self, reader: SceneReader, rows: list[int], cols: list[int]) -> Iterator:
        """Yield (strip row or None, positions, tiles, masks); the row marks a strip's end."""
        size = self.options.batch_size
        for row in rows:
            positions, tiles, masks = [], [], []
            for col in cols:
                tile, mask = reader.read(row, col)
                positions.append((row, col))
                tiles.append(tile)
                masks.append(mask)
                if len(positions) == size:
                    yield None, positions, np.stack(tiles), masks
                    positions, tiles, masks = [], [], []
            yield row, positions, np.stack(tiles) if tiles else None, masks

    def _by_strip(self, batches: Iterator) -> Iterator:
        """Predict each batch; tiles without a single valid pixel skip the model."""
        for row, positions, tiles, masks in batches:
            if tiles is None:
                yield row, positions, [], masks
                continue
            probs = np.zeros((len(positions), self.num_classes, *tiles.shape[-2:]), np.float32)
            useful = [i for i, mask in enumerate(masks) if mask.any()]
            if useful:
                probs[useful] = self._probabilities(tiles[useful])
            yield row, positions, probs, masks
