"""Streaming sliding-window inference over GeoTIFF scenes of any size.

Memory is bounded by one strip of tiles, never by the scene. Three stages run at once,
each in its own thread, joined by bounded queues:

1. read: one rasterio read per strip of tiles (not per tile), validity and normalisation
   on the whole strip, tiles cut from it into batches;
2. model: batches predicted under ``torch.inference_mode`` on the chosen device (pinned
   host memory and non-blocking copies on CUDA, autocast in the chosen precision),
   softmax, and the blending weights applied there;
3. blend and write: weighted probabilities added into the strip accumulators, finished
   rows turned into classes (or probabilities) and written into a tiled GeoTIFF, which is
   finally converted to a Cloud-Optimized GeoTIFF with every core compressing.

Each stage keeps the order of the serial algorithm, so the output is byte for byte the
same. Every output is written under a temporary name and renamed when complete.

Blending overlapping tile predictions with smooth weights follows the common practice of
window-weighted stitching (e.g. Huang et al., "Large-scale semantic classification:
outcome of the first year of Inria aerial image labeling benchmark", IGARSS 2018).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from eofm.errors import EofmError
from eofm.models.trained import TrainedModel
from eofm.predict.device import autocast_context, resolve_device, resolve_precision
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


class StageTimes:
    """Seconds each pipeline stage was busy (each stage adds only to its own key)."""

    STAGES = ("read", "model", "blend", "write", "cog")

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(self.STAGES, 0.0)

    def add(self, stage: str, started: float) -> None:
        self.seconds[stage] += time.perf_counter() - started


def _in_thread(consume: Callable[[object], None], depth: int = 4):
    """A context that runs ``consume`` on every item put into it, in one thread, in order.

    ``put(item)`` blocks when ``depth`` items wait; an error in ``consume`` is raised in
    the caller at the next ``put`` or at exit.
    """
    import contextlib

    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    failure: list[BaseException] = []

    def worker() -> None:
        while True:
            item = items.get()
            if item is done:
                return
            if failure:
                continue  # drain after an error
            try:
                consume(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the producer
                failure.append(exc)

    @contextlib.contextmanager
    def running():
        thread = threading.Thread(target=worker, daemon=True)
        thread.start()

        def put(item: object) -> None:
            if failure:
                raise failure[0]
            items.put(item)

        try:
            yield put
        finally:
            items.put(done)
            thread.join()
        if failure:
            raise failure[0]

    return running()


class Predictor:
    """Applies a trained model to scenes; one instance serves many scenes."""

    def __init__(self, trained: TrainedModel, options: PredictOptions) -> None:
        self.trained = trained
        self.options = options
        options.validate(trained.patch_size)
        self.device = resolve_device(options.device)
        self.precision = resolve_precision(options.precision, self.device)
        if self.device.type != "cpu":
            trained.model.to(self.device)
        self.weights = blend_weights(options.tile)
        self._weights_on_device = torch.from_numpy(self.weights).to(self.device)
        self.num_classes = len(trained.class_names)
        self.timings = StageTimes()
        self.coords = dict((trained.manifest.get("backbone") or {}).get("coords") or {})
        self._warned_undated = False

    def _device_probabilities(self, batch: np.ndarray, coords: dict | None = None) -> torch.Tensor:
        """Class probabilities of a batch of tiles, on the model's device, in float32.

        ``coords`` holds the TL model's ``temporal``/``location`` arrays for the batch."""
        x = torch.from_numpy(batch)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        elif self.device.type != "cpu":
            x = x.to(self.device)
        given = {
            k: torch.from_numpy(v).to(self.device)
            for k, v in (coords or {}).items()
            if v is not None
        }
        extra = [given.get("temporal"), given.get("location")]
        extra = extra if any(e is not None for e in extra) else []
        kwargs = {"gsd_m": given["gsd_m"]} if "gsd_m" in given else {}
        model = self.trained.model
        try:
            with autocast_context(self.device, self.precision):
                probs = model(x, *extra, **kwargs).float().softmax(dim=1)
                if self.options.tta_flip:
                    flipped = model(torch.flip(x, dims=[-1]), *extra, **kwargs)
                    flipped = flipped.float().softmax(dim=1)
                    probs = (probs + torch.flip(flipped, dims=[-1])) / 2
        except torch.OutOfMemoryError:
            raise EofmError(
                f"The {self.device} ran out of memory on a batch of {len(batch)} tiles of "
                f"{self.options.tile} px; lower --batch-size (or --tile)."
            ) from None
        return probs

    @torch.inference_mode()
    def _probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch of tiles, on the host."""
        return self._device_probabilities(batch).cpu().numpy()

    @torch.inference_mode()
    def _weighted_probabilities(self, batch: np.ndarray, coords: dict | None = None) -> np.ndarray:
        """Probabilities times the blending window (what the accumulators add)."""
        probs = self._device_probabilities(batch, coords)
        return (probs * self._weights_on_device).cpu().numpy()

    def _scene_date(self, reader: SceneReader) -> tuple[int, int] | None:
        """The acquisition date a TL model gets: ``--date``, else the scene's tags."""
        if not self.coords.get("time"):
            return None
        from eofm.data.coords import acquisition_date, parse_date

        if self.options.date:
            return parse_date(self.options.date)
        date = acquisition_date(reader.ds.tags())
        if date is None and not self._warned_undated:
            log.warning(
                "The model was trained with acquisition dates, but %s records none: predicting "
                "without temporal coordinates (give --date YYYY-MM-DD).",
                reader.path,
            )
            self._warned_undated = True
        return date

    def _tile_coords(
        self, reader: SceneReader, positions: list, date: tuple[int, int] | None
    ) -> dict[str, np.ndarray]:
        """TL coordinates of tiles: the date, and each tile's centre as (lat, lon)."""
        coords: dict[str, np.ndarray] = {}
        if self.coords.get("gsd") and positions:
            from eofm.data.coords import metres_per_pixel

            if self._gsd_m is None:
                self._gsd_m = metres_per_pixel(reader.path)
            coords["gsd_m"] = np.full(len(positions), self._gsd_m, np.float32)
        if date is not None:
            coords["temporal"] = np.tile(np.float32(date), (len(positions), 1, 1))
        if self.coords.get("location") and positions:
            from eofm.data.coords import to_latlon

            t, ds = self.options.tile, reader.ds
            centres = [
                ds.xy(r + (min(t, ds.height - r) - 1) / 2, c + (min(t, ds.width - c) - 1) / 2)
                for r, c in positions
            ]
            latlon = to_latlon(ds.crs, [x for x, _ in centres], [y for _, y in centres])
            coords["location"] = np.asarray(latlon, np.float32)
        return coords

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
        with rasterio.Env(GDAL_CACHEMAX=self._gdal_cache_bytes(source)):
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

    def _gdal_cache_bytes(self, source: Path) -> int:
        """GDAL's block cache: enough for two rows of the input's blocks across one column
        band, so that each block is read once (bounded by the column band, not the scene)."""
        import rasterio

        with rasterio.open(source) as ds:
            block_height = ds.block_shapes[0][0] if ds.block_shapes else 1
            itemsize = max(np.dtype(d).itemsize for d in ds.dtypes)
            width = min(ds.width, COLUMN_BAND + self.options.tile)
            row_bytes = width * min(block_height, ds.height) * ds.count * itemsize
        return max(GDAL_CACHE_MB << 20, 2 * row_bytes + (16 << 20))

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
            started = time.perf_counter()
            raster_copy(
                staging,
                target,
                driver="COG",
                compress="DEFLATE",
                blocksize=256,
                overview_resampling="nearest" if not probabilities else "average",
                num_threads="ALL_CPUS",  # blocks are compressed independently: same bytes
            )
            self.timings.add("cog", started)
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

        t, height, width = self.options.tile, reader.ds.height, reader.ds.width
        left, right = cols[0], min(width, cols[-1] + t)
        x0, x1 = span
        k, band_height, band_width = self.num_classes, min(t, height), right - left
        acc = np.zeros((k, band_height, band_width), np.float32)
        wsum = np.zeros((band_height, band_width), np.float32)
        valid = np.zeros((band_height, band_width), bool)
        state = {"top": 0, "any_valid": False}  # first scene row held in the buffers
        pending = list(rows)
        timings = self.timings

        def blend_and_write(item) -> None:
            row, positions, weighted, masks = item
            started = time.perf_counter()
            top = state["top"]
            for (r, c), probs, mask in zip(positions, weighted, masks, strict=True):
                h, w = min(t, height - r), min(t, width - c)
                y, x = r - top, c - left
                acc[:, y : y + h, x : x + w] += probs[:, :h, :w]
                wsum[y : y + h, x : x + w] += self.weights[:h, :w]
                valid[y : y + h, x : x + w] |= mask[:h, :w]
            if on_tiles:
                on_tiles(len(positions))
            if row is None:
                timings.add("blend", started)
                return
            pending.remove(row)  # strip `row` is complete: rows before the next strip are final
            done_until = pending[0] if pending else height
            n = done_until - top
            if n <= 0:
                timings.add("blend", started)
                return
            inner = slice(x0 - left, x1 - left)
            state["any_valid"] |= bool(valid[:n, inner].any())
            block = self._finalise(acc[:, :n, inner], wsum[:n, inner], valid[:n, inner])
            timings.add("blend", started)
            started = time.perf_counter()
            out.write(block, window=Window(x0, top, x1 - x0, n))
            timings.add("write", started)
            keep = band_height - n
            acc[:, :keep], wsum[:keep], valid[:keep] = acc[:, n:], wsum[n:], valid[n:]
            acc[:, keep:], wsum[keep:], valid[keep:] = 0, 0, False
            state["top"] = done_until

        with _in_thread(blend_and_write) as blend:
            for item in self._predicted(_prefetch(lambda: self._batches(reader, rows, cols))):
                blend(item)
        return state["any_valid"]

    def _finalise(self, acc: np.ndarray, wsum: np.ndarray, valid: np.ndarray) -> np.ndarray:
        probs = acc / np.maximum(wsum, 1e-12)
        if self.options.probabilities:
            return np.where(valid, probs, np.nan).astype(np.float32)
        classes = first_argmax(probs)
        return np.where(valid, classes, CLASS_NODATA)[None].astype(np.uint8)

    def _batches(self, reader: SceneReader, rows: list[int], cols: list[int]) -> Iterator:
        """Yield (strip row or None, positions, tiles, masks); the row marks a strip's end.

        Each strip is read once; its tiles are cut from it.
        """
        size, t, left = self.options.batch_size, self.options.tile, cols[0]
        right = cols[-1] + t
        date = self._scene_date(reader)
        self._gsd_m = None
        for row in rows:
            started = time.perf_counter()
            strip, strip_mask = reader.read_strip(row, left, right)
            positions, tiles, masks = [], [], []
            for col in cols:
                x = col - left
                positions.append((row, col))
                tiles.append(strip[:, :, x : x + t])
                masks.append(strip_mask[:, x : x + t])
                if len(positions) == size:
                    batch = np.stack(tiles)
                    coords = self._tile_coords(reader, positions, date)
                    self.timings.add("read", started)
                    yield None, positions, batch, masks, coords
                    started = time.perf_counter()
                    positions, tiles, masks = [], [], []
            batch = np.stack(tiles) if tiles else None
            coords = self._tile_coords(reader, positions, date)
            self.timings.add("read", started)
            yield row, positions, batch, masks, coords

    def _predicted(self, batches: Iterator) -> Iterator:
        """Predict each batch; tiles without a single valid pixel skip the model."""
        for row, positions, tiles, masks, coords in batches:
            if tiles is None:
                yield row, positions, [], masks
                continue
            started = time.perf_counter()
            useful = [i for i, mask in enumerate(masks) if mask.any()]
            if len(useful) == len(positions):
                weighted = self._weighted_probabilities(tiles, coords)
            else:
                shape = (len(positions), self.num_classes, *tiles.shape[-2:])
                weighted = np.zeros(shape, np.float32)
                if useful:
                    subset = {k: v[useful] for k, v in coords.items()}
                    weighted[useful] = self._weighted_probabilities(tiles[useful], subset)
            self.timings.add("model", started)
            yield row, positions, weighted, masks


def first_argmax(values: np.ndarray) -> np.ndarray:
    """``values.argmax(axis=0)`` as uint8 (the first index on ties), by comparisons: a few
    passes over contiguous planes instead of numpy's strided reduction over classes."""
    best = values[0]
    index = np.zeros(best.shape, np.uint8)
    for c in range(1, values.shape[0]):
        better = values[c] > best
        index[better] = c
        best = np.where(better, values[c], best)
    return index
