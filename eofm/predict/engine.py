"""Streaming sliding-window inference over GeoTIFF scenes of any size.

Memory is bounded by a few strips of tiles, never by the scene. Four stages run at
once, each in its own thread, joined by bounded queues (``stages``):

1. read: one rasterio read per strip of tiles (not per tile) into a pooled buffer, the
   rows shared with the strip before copied rather than read again, validity and
   normalisation on the whole strip; batches are views of it (``strips``);
2. model: batches predicted under ``torch.inference_mode`` on the chosen device (pinned
   host memory and non-blocking copies on CUDA, autocast in the chosen precision),
   softmax, and the blending weights applied there;
3. blend: weighted probabilities blended into finished rows, made into the products'
   blocks (``blending``, ``products``);
4. write: a class map's tiles, and its overviews' (``overviews``), compressed as soon as
   their rows are final and laid out as GDAL's Cloud-Optimized GeoTIFF at the end
   (``cog_stream``); other products written into a tiled GeoTIFF and copied by GDAL's
   COG driver at the end, with every core compressing.

Each stage keeps the order of the serial algorithm, so the output is byte for byte the
same. Every output is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eofm.errors import EofmError
from eofm.models.trained import TrainedModel
from eofm.predict import grid
from eofm.predict.batch_buffers import BatchBuffers
from eofm.predict.blending import BandBlender
from eofm.predict.cog_stream import StreamedCog, streamed_cog
from eofm.predict.device import (
    autocast_context,
    resolve_device,
    resolve_precision,
    resolve_workers,
)
from eofm.predict.options import PredictOptions
from eofm.predict.outputs import atomic_output
from eofm.predict.pages import ordinary_pages
from eofm.predict.plan import ScenePlan, plan_scene
from eofm.predict.products import ProductRows, describe, product_profile, products_for
from eofm.predict.scenes import SceneReader, inspect_scene
from eofm.predict.stages import StageTimes, clock, consumer_thread, ordered_map
from eofm.predict.strips import StripBuffer, StripPool, TileBatch

log = logging.getLogger(__name__)

GDAL_CACHE_MB = 32  # bounded: GDAL's block cache would otherwise grow with the scene
COG_BLOCK = 256


def _write_staged(out: Any, pyramid: Any, block: np.ndarray, top: int, left: int) -> None:
    """Write finished rows into a staging GeoTIFF (and its overview levels)."""
    from rasterio.windows import Window

    out.write(block, window=Window(left, top, block.shape[-1], block.shape[-2]))
    if pyramid:
        pyramid.add(block, top, left)


@dataclass
class SceneResult:
    source: Path
    outputs: list[Path] = field(default_factory=list)
    skipped: bool = False
    all_nodata: bool = False


class Predictor:
    """Applies a trained model to scenes; one instance serves many scenes."""

    def __init__(
        self,
        trained: TrainedModel,
        options: PredictOptions,
        members: Sequence[TrainedModel] = (),
    ) -> None:
        """``members``: the other runs of an ensemble (``eofm ensemble``), averaged with
        ``trained``; the outputs then include the mean probabilities and the mutual
        information."""
        from eofm.predict.members import TileModel
        from eofm.predict.options import parse_uncertainty

        self.trained = trained
        self.options = options
        options.validate(trained.patch_size)
        kind, passes = parse_uncertainty(options.uncertainty)
        self.device = resolve_device(options.device)
        self.precision = resolve_precision(options.precision, self.device)
        self.tile_model = TileModel(
            [trained, *members], tta_flip=options.tta_flip, uncertainty=kind, passes=passes
        ).to(self.device)
        self.products = products_for(options, kind, ensemble=bool(members))
        self.weights = grid.blend_weights(options.tile)
        self._weights_on_device = torch.from_numpy(self.weights).to(self.device)
        self.num_classes = len(trained.class_names)
        channels, tile = self.tile_model.channels, options.tile
        self._outputs = BatchBuffers(options.batch_size, channels, tile)
        self._edge_stack: np.ndarray | None = None  # made on first need: `_host_tiles`
        self._strips: StripPool | None = None  # kept for the next scene: `_strip_pool`
        self._zero_tile = np.zeros((channels, tile, tile), np.float32)
        self._zero_tile.flags.writeable = False  # what a tile without valid pixels adds
        self.timings = StageTimes()
        self.workers = resolve_workers(options.workers)
        self.coords = dict((trained.manifest.get("backbone") or {}).get("coords") or {})
        self._warned_undated = False

    def _device_probabilities(
        self, batch: np.ndarray, coords: dict | None = None, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Class probabilities of a batch of tiles (and the members' expected entropy, when
        an uncertainty needs it), on the model's device, in float32 (in ``out`` when the
        model stage can write them there).

        ``coords`` holds the TL model's ``temporal``/``location`` arrays for the batch."""
        x = torch.from_numpy(batch)
        if self.device.type == "cuda":  # batches are staged in pinned memory already
            x = (x if x.is_pinned() else x.pin_memory()).to(self.device, non_blocking=True)
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
        try:
            with autocast_context(self.device, self.precision):
                probs = self.tile_model(x, extra, kwargs, out=out)
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
    def _weighted_probabilities(self, batch: np.ndarray, coords: dict | None = None) -> Any:
        """Probabilities times the blending window (what the accumulators add): on the CPU
        ``(array, buffer to give back once added, or None)``, or on CUDA a pending copy
        into pinned host memory (``_collect`` waits for it), so that the next batch is
        queued on the GPU while this one is still computing."""
        if self.device.type == "cpu":
            buffer = self._outputs.take()
            probs = self._device_probabilities(batch, coords, out=buffer[: len(batch)])
            probs.mul_(self._weights_on_device)
            pooled = probs.data_ptr() == buffer.data_ptr()
            if not pooled:
                self._outputs.give_back(buffer)
            return probs.numpy(), buffer if pooled else None
        probs = self._device_probabilities(batch, coords).mul_(self._weights_on_device)
        if self.device.type != "cuda":
            return probs.cpu().numpy(), None
        host = torch.empty(probs.shape, dtype=probs.dtype, pin_memory=True)
        host.copy_(probs, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return host, done

    @staticmethod
    def _collect(result: Any) -> tuple[np.ndarray, torch.Tensor | None]:
        """``(weighted probabilities, pooled buffer holding them or None)``."""
        first, second = result
        if isinstance(second, torch.cuda.Event):
            second.synchronize()
            return first.numpy(), None
        return first, second

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
                self._gsd_m = self.options.gsd_m or metres_per_pixel(reader.path)
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
            companions=[suffix for _, suffix in self.products[1:]],
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
        cache = self._gdal_cache_bytes(source)
        with rasterio.Env(GDAL_CACHEMAX=cache), ordinary_pages():  # see `pages`
            if plan.write_raster:
                reader = self.open_scene(source)
                paths = [raster_path, *plan.companions]
                try:
                    with contextlib.ExitStack() as stack:
                        temporary = [stack.enter_context(atomic_output(p)) for p in paths]
                        kinds = [kind for kind, _ in self.products]
                        targets = dict(zip(kinds, temporary, strict=True))
                        result.all_nodata = self._stream(reader, targets, on_tiles)
                except RasterioIOError as exc:  # GDAL reports a full disk this way
                    raise OSError(str(exc).splitlines()[0]) from None
                finally:
                    reader.close()
                result.outputs.extend(paths)
                if result.all_nodata:
                    log.warning("%s holds no valid pixel: its prediction is all nodata.", source)
            if plan.quicklook:
                from eofm.predict.outputs import write_quicklook

                with atomic_output(plan.quicklook) as tmp:
                    write_quicklook(
                        raster_path,
                        tmp,
                        self.num_classes,
                        probabilities=False,  # <stem>.tif is always the class map
                        class_names=self.trained.class_names,
                        backdrop=(source, self.backdrop_bands(source)),
                    )
                result.outputs.append(plan.quicklook)
            if plan.vector:
                from eofm.predict.vectors import write_polygons

                with atomic_output(plan.vector) as tmp:
                    write_polygons(
                        raster_path,
                        tmp,
                        self.trained.class_names,
                        self.options.vector,
                        layer=plan.vector.stem,
                    )
                result.outputs.append(plan.vector)

    def _gdal_cache_bytes(self, source: Path) -> int:
        """GDAL's block cache: enough for two rows of the input's blocks across one column
        band, so that each block is read once (bounded by the column band, not the scene)."""
        import rasterio

        with rasterio.open(source) as ds:
            block_height = ds.block_shapes[0][0] if ds.block_shapes else 1
            itemsize = max(np.dtype(d).itemsize for d in ds.dtypes)
            width = min(ds.width, grid.COLUMN_BAND + self.options.tile)
            row_bytes = width * min(block_height, ds.height) * ds.count * itemsize
        return max(GDAL_CACHE_MB << 20, 2 * row_bytes + (16 << 20))

    def backdrop_bands(self, source: Path) -> list[int]:
        """1-based bands of ``source`` that show it: red, green, blue when the model reads
        them, else its first band (e.g. VV)."""
        info = inspect_scene(source, self.trained.bands, self.options.bands)
        by_name = dict(zip(self.trained.bands, info.indexes, strict=True))
        rgb = [by_name.get(name) for name in ("RED", "GREEN", "BLUE")]
        return rgb if all(rgb) else [info.indexes[0]]

    def open_scene(self, source: Path) -> SceneReader:
        """Open a scene, checking it has the model's bands (clear errors). Its values were
        sampled by ``eofm predict`` before anything was written; a broken block found
        while streaming fails the scene with no output left."""
        info = inspect_scene(source, self.trained.bands, self.options.bands, sample=False)
        return SceneReader(
            source, info.indexes, self.trained.mean, self.trained.std, self.options.tile
        )

    def _stream(
        self,
        reader: SceneReader,
        targets: dict[str, Path],
        on_tiles: Callable[[int], None] | None,
    ) -> bool:
        """Predict the whole scene into ``targets`` (a COG per product, in order: the
        primary one first); returns True if it is all nodata."""
        import rasterio
        from rasterio.shutil import copy as raster_copy

        from eofm.predict.overviews import OverviewPyramid

        ds, t = reader.ds, self.options.tile
        stride = t - self.options.overlap
        rows = grid.tile_starts(ds.height, t, stride)
        base = {
            "driver": "GTiff",
            "width": ds.width,
            "height": ds.height,
            "crs": ds.crs,
            "transform": ds.transform,
            "tiled": True,
            "blockxsize": COG_BLOCK,
            "blockysize": COG_BLOCK,  # staging stays uncompressed: the COG copy compresses once
        }
        any_valid = False
        staged: list[tuple[str, Path, Any]] = []
        streamed: list[StreamedCog] = []
        try:
            with contextlib.ExitStack() as writing:
                sinks = {}
                for kind, target in targets.items():
                    profile = base | product_profile(kind, self.num_classes)
                    cog = streamed_cog(target, profile, COG_BLOCK) if kind == "classes" else None
                    if cog:  # compressed tile by tile while it streams (`cog_stream`)
                        streamed.append(writing.enter_context(cog))
                        sinks[kind] = cog.add
                        continue
                    staging = target.with_name(target.name + ".gtiff")
                    # class maps take their (nearest) overviews on the way; floats are
                    # averaged by GDAL from the finished map
                    pyramid = (
                        OverviewPyramid(staging, profile, COG_BLOCK) if kind == "classes" else None
                    )
                    staged.append((kind, staging, pyramid))
                    out = writing.enter_context(rasterio.open(staging, "w", **profile))
                    if pyramid:
                        writing.enter_context(pyramid)
                    describe(
                        out, kind, self.trained.class_names, primary=kind == self.products[0][0]
                    )
                    sinks[kind] = functools.partial(_write_staged, out, pyramid)
                for span, band_cols in grid.column_bands(ds.width, t, stride):
                    blender = BandBlender(
                        rows=rows,
                        cols=band_cols,
                        span=span,
                        tile=t,
                        height=ds.height,
                        width=ds.width,
                        num_classes=self.tile_model.channels,
                        weights=self.weights,
                    )
                    self._stream_band(reader, blender, sinks, on_tiles)
                    any_valid |= blender.any_valid
                started = time.perf_counter()  # the tail: wall seconds
                for cog in streamed:
                    cog.finish()
            for kind, staging, pyramid in staged:  # on GDAL's threads
                vrt = staging.with_name(staging.name + ".vrt")
                source = pyramid.write_vrt(staging, vrt) if pyramid else staging
                raster_copy(
                    source,
                    targets[kind],
                    driver="COG",
                    compress="DEFLATE",
                    blocksize=COG_BLOCK,
                    overview_resampling="nearest" if kind == "classes" else "average",
                    num_threads="ALL_CPUS",  # blocks are compressed independently: same bytes
                )
            self.timings.add_seconds("cog", time.perf_counter() - started)
        finally:
            self._remove_staging(staged)
        return not any_valid

    @staticmethod
    def _remove_staging(staged: list) -> None:
        for _, staging, pyramid in staged:
            staging.unlink(missing_ok=True)
            staging.with_name(staging.name + ".vrt").unlink(missing_ok=True)
            if pyramid:
                pyramid.remove()

    def _stream_band(
        self,
        reader: SceneReader,
        blender: BandBlender,
        sinks: dict[str, tuple[Any, Any]],
        on_tiles: Callable[[int], None] | None,
    ) -> None:
        """Predict one column band of the scene, strip by strip, into every product.

        Tiles come from the scene's global grid, so a tile that straddles two column
        bands is computed in both and every pixel is blended exactly as in one pass.
        """
        timings, x0 = self.timings, blender.left + blender.inner.start
        classes = self.num_classes

        def write(finished: tuple[int, dict[str, np.ndarray]]) -> None:
            top, blocks = finished
            started = clock()
            for kind, block in blocks.items():
                sinks[kind](block, top, x0)
            timings.add("write", started)

        def blend(item) -> None:  # writes behind through `write_behind`, bound below
            row, positions, weighted, strip_mask, buffer = item
            started = clock()
            for position, probs in zip(positions, weighted, strict=True):
                blender.add(position, probs)
            if buffer is not None:
                self._outputs.give_back(buffer)
            if on_tiles:
                on_tiles(len(positions))
            if row is None:
                timings.add("blend", started)
                return
            blender.add_valid(row, strip_mask)
            products = ProductRows(list(sinks), classes)
            finished = blender.end_strip(row, products)
            timings.add("blend", started)
            if finished is not None:
                write_behind((finished[0], products.blocks))

        # blending runs behind the model, and writing behind blending (the blend thread
        # sets the pace otherwise: the model's thread waited a third of a second on it)
        with (
            consumer_thread(write, depth=2) as write_behind,
            consumer_thread(blend) as blend_behind,
        ):
            for item in self._predicted(self._batches(reader, blender.rows, blender.cols)):
                blend_behind(item)

    def _batches(self, reader: SceneReader, rows: list[int], cols: list[int]) -> Iterator:
        """Yield ``(row or None, positions, tiles, coords, strip mask or None)`` per batch,
        in scene order; ``row`` (and a copy of the strip's validity) marks the last batch
        of a strip.

        Strips are read by ``--workers`` threads, each with its own dataset handle, into
        pooled buffers, a few strips ahead of the model.
        """
        t, left = self.options.tile, cols[0]
        date = self._scene_date(reader)
        self._gsd_m = None
        local = threading.local()
        opened: list[SceneReader] = []
        lock = threading.Lock()
        workers = self.workers
        ahead = workers + 2
        # held at once: the strips read ahead, the one being predicted, one in flight
        pool = self._strip_pool(reader.strip_shape(left, cols[-1] + t), capacity=ahead + 3)
        batches = len(rows) * -(-len(cols) // self.options.batch_size)
        making = threading.Thread(
            target=self._make_ahead, args=(pool, len(rows), batches), daemon=True
        )
        making.start()

        def read(row: int) -> list[tuple]:
            started = clock()
            if not hasattr(local, "reader"):  # one reading thread reads through `reader`
                local.reader = reader.reopen() if workers > 1 else reader
                with lock:
                    opened.append(local.reader)
            buffer = pool.take()
            # one reader reads the strips in order: the rows it shares with the one
            # before are copied, not read again (that strip's buffer is only read since)
            carry = getattr(local, "previous", None) if workers == 1 else None
            items = self._strip_batches(local.reader, row, cols, buffer, date, carry)
            local.previous = (buffer.data, buffer.mask, row)
            self.timings.add("read", started)
            return items

        try:
            for items in ordered_map(read, rows, workers=workers, ahead=ahead):
                yield from items
        finally:
            making.join()
            for each in opened:
                if each is not reader:
                    each.close()

    def _strip_pool(self, shape: tuple[int, int, int], capacity: int) -> StripPool:
        """The strip buffers of the last column band when they have this shape and all
        came back, else a new pool (which replaces it: one pool is kept, whatever the
        number of scenes or band widths seen).

        A run over many scenes of one size, like the column bands of a wide scene, then
        reads into buffers already made, as the model stage writes into its kept output
        buffers: each new 8k-wide pool is 44 MB of fresh pages (three strips made ahead),
        about 11k page faults a scene on this project's 2-core VM."""
        kept = self._strips
        if kept is not None and kept.shape == shape and kept.capacity == capacity and kept.idle:
            return kept
        self._strips = StripPool(*shape, capacity=capacity)
        return self._strips

    def _make_ahead(self, pool: StripPool, strips: int, batches: int) -> None:
        """Make the buffers a band needs, and fault in their pages, while the first strip
        is being read: the reading thread, on the pipeline's critical path, then takes
        strip buffers ready made, and the model stage its output buffers (on the CPU).

        A process's first scene otherwise faults them in as it streams; on a VM a fresh
        page costs several microseconds. The other core is otherwise idle until the first
        strip is read (``benchmarks/predict_pipeline.py``: 81.9 against 80.5 MP/s, later
        scenes 86.6 against 80.7, 11 runs side by side)."""
        pool.make_ahead(min(3, strips))
        if self.device.type == "cpu":
            self._outputs.make_ahead(min(3, batches))

    def _strip_batches(
        self,
        reader: SceneReader,
        row: int,
        cols: list[int],
        buffer: StripBuffer,
        date: tuple[int, int] | None,
        carry: tuple[np.ndarray, np.ndarray, int] | None = None,
    ) -> list[tuple]:
        """The batches of strip ``row``, read into ``buffer``: their tiles are views of it."""
        size, t, left = self.options.batch_size, self.options.tile, cols[0]
        reader.read_strip(row, left, cols[-1] + t, out=(buffer.data, buffer.mask), carry=carry)
        buffer.count_valid_columns()
        items = []
        for first in range(0, len(cols), size):
            chunk = cols[first : first + size]
            positions = [(row, col) for col in chunk]
            tiles = TileBatch(buffer, [col - left for col in chunk], t)
            coords = self._tile_coords(reader, positions, date)
            last = first + size >= len(cols)
            mask = buffer.mask.copy() if last else None  # the buffer is reused once predicted
            items.append((row if last else None, positions, tiles, coords, mask))
        return items

    def _predicted(self, batches: Iterator) -> Iterator:
        """Predict each batch; tiles without a single valid pixel skip the model. On CUDA
        one batch is queued on the GPU while the previous one is collected."""
        in_flight: deque = deque()
        depth = 1 if self.device.type == "cuda" else 0
        for row, positions, tiles, coords, mask in batches:
            started = clock()
            useful = tiles.any_valid()
            if len(useful) == len(positions):
                pending = self._weighted_probabilities(self._host_tiles(tiles), coords)
            elif len(useful):
                subset = {k: v[useful] for k, v in coords.items()}
                part = self._host_tiles(tiles.subset(useful))
                pending = self._weighted_probabilities(part, subset)
            else:
                pending = None
            strip = tiles.strip if row is not None else None
            in_flight.append((row, positions, useful, pending, mask, strip))
            self.timings.add("model", started)
            if len(in_flight) > depth:
                yield self._finished_batch(*in_flight.popleft())
        while in_flight:
            yield self._finished_batch(*in_flight.popleft())

    def _host_tiles(self, tiles: TileBatch) -> np.ndarray:
        """What the model reads: views of the strip on the CPU (the edge batch stacked into
        a reused buffer: the model has read it before the next batch), a pinned copy for
        CUDA."""
        if self.device.type == "cuda":
            return tiles.pinned()
        if self._edge_stack is None:
            bands, t = tiles.strip.data.shape[0], tiles.tile
            self._edge_stack = np.empty((self.options.batch_size, bands, t, t), np.float32)
        return tiles.host(scratch=self._edge_stack)

    def _finished_batch(self, row, positions, useful, pending, mask, strip) -> tuple:
        """``(row, positions, weighted tiles, strip mask, buffer to give back)``; tiles
        without a valid pixel add the zero tile."""
        started = clock()
        buffer = None
        if len(useful) == len(positions):
            weighted, buffer = self._collect(pending)
        else:
            weighted = [self._zero_tile] * len(positions)
            if len(useful):
                collected, buffer = self._collect(pending)
                for index, tile in zip(useful, collected, strict=True):
                    weighted[index] = tile
        if strip is not None:
            strip.release()  # the model has read every tile of it
        self.timings.add("model", started)
        return row, positions, weighted, mask, buffer
