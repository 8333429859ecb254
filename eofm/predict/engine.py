"""Streaming sliding-window inference over GeoTIFF scenes of any size.

Memory is bounded by a few strips of tiles, never by the scene. Four stages run at
once, each in its own thread, joined by bounded queues (``stages``):

1. read: one rasterio read per strip of tiles (not per tile) into a reused buffer,
   validity and normalisation on the whole strip; batches are views of it (``strips``);
2. model: batches predicted, softmax and the blending weights applied, by the model
   stage: PyTorch on the chosen device (``torch_stage``), or onnxruntime for a graph
   written by ``eofm export`` (``onnx_stage``: this module never imports torch itself);
3. blend: weighted probabilities blended into finished rows, one column band at a time,
   made into the products' blocks (``blending``, ``products``);
4. write: the blocks written into a tiled GeoTIFF per product.

Each product is then finished by GDAL's COG driver (``cog``), on a one-slot background
thread when the caller asks for it, so that one scene's COG tail overlaps the next
scene's stream. Every output is written under a temporary name and renamed when complete
(:mod:`eofm.atomic`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eofm.atomic import (
    atomic_output,
    raise_if_stopped,
    remove_stale_partials,
    signals_deferred,
)
from eofm.errors import EofmError
from eofm.models.trained import TrainedModel
from eofm.predict import grid
from eofm.predict.blending import BandBlender
from eofm.predict.cog import COG_BLOCK, staging_profile, write_cog
from eofm.predict.device import resolve_workers
from eofm.predict.options import PredictOptions
from eofm.predict.plan import ScenePlan, plan_scene
from eofm.predict.products import ProductRows, describe, product_profile, products_for
from eofm.predict.scenes import SceneReader, inspect_scene
from eofm.predict.stages import consumer_thread, ordered_map
from eofm.predict.strips import Recycler, StripBuffer, TileBatch, strip_pool
from eofm.publishing.provenance import output_attributes

log = logging.getLogger(__name__)

GDAL_CACHE_MB = 32  # bounded: GDAL's block cache would otherwise grow with the scene


def _is_io_error(exc: BaseException) -> bool:
    """An error of the file system or of the libraries writing the outputs (GDAL reports a
    full disk as its own error types), not a bug to show with its traceback."""
    module = type(exc).__module__.split(".")[0]
    return isinstance(exc, OSError) or module in ("rasterio", "pyogrio", "fiona", "shapely")


def _check_complete(staging: Path, profile: dict[str, Any]) -> None:
    """GDAL reports a block it failed to write (a full disk) without an exception: an
    uncompressed tiled GeoTIFF holds every block once closed, so a short file is one."""
    tiles = -(-profile["width"] // COG_BLOCK) * -(-profile["height"] // COG_BLOCK)
    itemsize = np.dtype(profile["dtype"]).itemsize
    if staging.stat().st_size < tiles * COG_BLOCK * COG_BLOCK * profile["count"] * itemsize:
        raise OSError(errno.ENOSPC, "No space left on device (a block could not be written)")


def _cannot_write(source: Path, where: Path, exc: BaseException) -> EofmError:
    """One line for a full disk or a vanished folder (GDAL reports them as its own errors)."""
    reason = getattr(exc, "strerror", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    return EofmError(
        f"Cannot write the prediction of {source} to {where}: {reason}. Nothing partial was "
        "left behind."
    )


@dataclass
class _Streamed:
    """A streamed scene's outputs, held (locked, under temporary names) until finished."""

    held: contextlib.ExitStack
    staged: dict[str, tuple[Path, Path]]  # product -> (staging GeoTIFF, temporary output)


@dataclass
class SceneResult:
    source: Path
    outputs: list[Path] = field(default_factory=list)
    skipped: bool = False
    all_nodata: bool = False


def model_stage(
    trained: TrainedModel,
    members: Sequence[TrainedModel],
    options: PredictOptions,
    weights: np.ndarray,
    *,
    values: bool = False,
) -> Any:
    """The stage that turns batches of tiles into weighted probabilities: onnxruntime for
    an exported graph (no torch import), else PyTorch."""
    from eofm.models.onnx_model import is_onnx_model

    if is_onnx_model(trained.source):
        from eofm.predict.onnx_stage import OnnxStage

        return OnnxStage(trained, members, options, weights, values=values)
    from eofm.predict.torch_stage import TorchStage

    return TorchStage(trained, members, options, weights, values=values)


class Predictor:
    """Applies a trained model to scenes; one instance serves many scenes."""

    def __init__(
        self,
        trained: TrainedModel,
        options: PredictOptions,
        members: Sequence[TrainedModel] = (),
        *,
        values: bool = False,
    ) -> None:
        """``members``: the other runs of an ensemble (``eofm ensemble``), averaged with
        ``trained``; the outputs then include the mean probabilities and the mutual
        information. ``values``: the model regresses a value per pixel (its one output
        channel, named by ``class_names``), written as a float map, with its spread."""
        from eofm.predict.options import parse_uncertainty

        self.trained = trained
        self.options = options
        options.validate(trained.patch_size)
        kind = parse_uncertainty(options.uncertainty)[0]
        self.weights = grid.blend_weights(options.tile)
        self.stage = model_stage(trained, members, options, self.weights, values=values)
        self.products = products_for(options, kind, ensemble=bool(members), values=values)
        self.num_classes = len(trained.class_names)
        #: tags every output carries (the random-initialisation flag, when it applies)
        self.tags = output_attributes(trained.manifest)
        channels, tile = self.stage.channels, options.tile
        self._strips: Recycler[StripBuffer] | None = None  # kept for the next scene
        self._strip_shape: tuple[int, int, int] | None = None
        self._tail: Future | None = None  # the previous scene's COG step
        self._tails: ThreadPoolExecutor | None = None
        self._finishing: set[Path] = set()  # its outputs
        self._swept: set[Path] = set()  # folders cleared of killed runs' partial files
        self._zero_tile = np.zeros((channels, tile, tile), np.float32)
        self._zero_tile.flags.writeable = False  # what a tile without valid pixels adds
        self.workers = resolve_workers(options.workers)
        self.coords = dict((trained.manifest.get("backbone") or {}).get("coords") or {})
        self._warned_undated = False

    def _scene_date(self, reader: SceneReader) -> Any:
        """The acquisition date a TL model gets: ``--date``, else the scene's tags (a
        stack's ``FRAME_DATES``: one ``(year, doy)`` per frame)."""
        if not self.coords.get("time"):
            return None
        from eofm.data.coords import acquisition_date, parse_date

        if self.options.date:
            return parse_date(self.options.date)
        tags = reader.ds.tags()
        if tags.get("FRAME_DATES"):  # a stack of dated frames, one date each
            return [parse_date(d) for d in tags["FRAME_DATES"].split(",")]
        date = acquisition_date(tags)
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
        background: bool = False,
    ) -> SceneResult:
        """Predict one scene into ``out_dir`` following ``plan`` (made here if not given).

        With ``background``, the outputs are finished (COG, quicklook, vectors) on a
        one-slot thread while the caller goes on to the next scene: :meth:`wait` returns
        once they are written, and raises the error of one that failed."""
        from eofm.atomic import check_output_dir

        plan = plan or self.plan(source, out_dir)
        result = SceneResult(Path(source))
        if plan.done:
            result.skipped = True
            return result
        check_output_dir(plan.raster.parent)
        if plan.raster.parent not in self._swept:
            remove_stale_partials(plan.raster.parent)  # of runs killed before
            self._swept.add(plan.raster.parent)
        if set(plan.targets()) & self._finishing:
            self.wait()  # the same outputs again: once the earlier ones are written
        streamed = self._stream_scene(plan, result, on_tiles)
        result.outputs.extend(plan.targets())
        try:
            self.wait()  # one finishing step at a time
        except BaseException as exc:  # the previous scene's: this one's partial files go
            if streamed is not None:
                streamed.held.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if not background:
            self._finish(plan, result, streamed)
            return result
        if self._tails is None:
            self._tails = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eofm-cog")
        self._tail = self._tails.submit(self._finish, plan, result, streamed, 1)
        self._finishing = set(plan.targets())
        return result

    def wait(self) -> None:
        """Wait for the outputs of the scene being finished in the background, if any."""
        tail, self._tail, self._finishing = self._tail, None, set()
        if tail is not None:
            tail.result()

    def _stream_scene(
        self, plan: ScenePlan, result: SceneResult, on_tiles: Callable[[int], None] | None
    ) -> _Streamed | None:
        """Stream the scene into a staging GeoTIFF per product; returns its outputs, held
        (locked, under temporary names) for :meth:`_finish`, or None without a raster."""
        import rasterio

        if not plan.write_raster:
            return None
        source, paths = plan.source, [plan.raster, *plan.companions]
        streamed = _Streamed(contextlib.ExitStack(), {})
        try:
            for (kind, _), path in zip(self.products, paths, strict=True):
                tmp = streamed.held.enter_context(atomic_output(path))
                staging = tmp.with_name(tmp.name + ".gtiff")
                streamed.held.callback(staging.unlink, missing_ok=True)
                streamed.staged[kind] = (staging, tmp)
            reader = self.open_scene(source)
            try:
                with rasterio.Env(GDAL_CACHEMAX=self._gdal_cache_bytes(source)):
                    result.all_nodata = self._stream(reader, streamed.staged, on_tiles)
            finally:
                reader.close()
        except BaseException as exc:
            streamed.held.__exit__(type(exc), exc, exc.__traceback__)  # partial files go
            if _is_io_error(exc):
                raise _cannot_write(source, plan.raster.parent, exc) from None
            raise
        return streamed

    def _finish(
        self,
        plan: ScenePlan,
        result: SceneResult,
        streamed: _Streamed | None,
        threads: int | str = "ALL_CPUS",
    ) -> None:
        """Finish each streamed product with GDAL's COG driver and rename it into place,
        then write the quicklook and the polygons, which read the finished map."""

        try:
            if streamed is not None:
                with streamed.held:
                    for kind, (staging, tmp) in streamed.staged.items():
                        write_cog(staging, tmp, kind, threads)
                if result.all_nodata:
                    log.warning(
                        "%s holds no valid pixel: its prediction is all nodata.", plan.source
                    )
            self._write_extras(plan)
        except Exception as exc:
            if not _is_io_error(exc):
                raise
            raise _cannot_write(plan.source, plan.raster.parent, exc) from None

    def _write_extras(self, plan: ScenePlan) -> None:
        if plan.quicklook:
            from eofm.predict.outputs import write_quicklook

            with atomic_output(plan.quicklook) as tmp:
                write_quicklook(
                    plan.raster,
                    tmp,
                    self.num_classes,
                    probabilities=False,  # <stem>.tif is always the class map
                    class_names=self.trained.class_names,
                    backdrop=(plan.source, self.backdrop_bands(plan.source)),
                )
        if plan.vector:
            from eofm.predict.vectors import write_polygons

            with atomic_output(plan.vector) as tmp:
                write_polygons(
                    plan.raster,
                    tmp,
                    self.trained.class_names,
                    self.options.vector,
                    layer=plan.vector.stem,
                )

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
        staged: dict[str, tuple[Path, Path]],
        on_tiles: Callable[[int], None] | None,
    ) -> bool:
        """Predict the whole scene into a staging GeoTIFF per product; returns True if it
        is all nodata."""
        import rasterio

        ds, t = reader.ds, self.options.tile
        stride = t - self.options.overlap
        rows = grid.tile_starts(ds.height, t, stride)
        any_valid = False
        profiles = {}
        with contextlib.ExitStack() as writing:
            sinks = {}
            for kind, (staging, _) in staged.items():
                profile = staging_profile(ds) | product_profile(kind, self.num_classes)
                profiles[kind] = profile
                out = writing.enter_context(rasterio.open(staging, "w", **profile))
                out.update_tags(**self.tags)
                describe(out, kind, self.trained.class_names, primary=kind == self.products[0][0])
                sinks[kind] = out
            for span, band_cols in grid.column_bands(ds.width, t, stride):
                blender = BandBlender(
                    rows=rows,
                    cols=band_cols,
                    span=span,
                    tile=t,
                    height=ds.height,
                    width=ds.width,
                    num_classes=self.stage.channels,
                    weights=self.weights,
                )
                self._stream_band(reader, blender, sinks, on_tiles)
                any_valid |= blender.any_valid
        for kind, (staging, _) in staged.items():
            _check_complete(staging, profiles[kind])
        return not any_valid

    def _stream_band(
        self,
        reader: SceneReader,
        blender: BandBlender,
        sinks: dict[str, Any],
        on_tiles: Callable[[int], None] | None,
    ) -> None:
        """Predict one column band of the scene, strip by strip, into every product's
        open staging dataset (``sinks``).

        Tiles come from the scene's global grid, so a tile that straddles two column
        bands is computed in both and every pixel is blended exactly as in one pass.
        """
        from rasterio.windows import Window

        x0 = blender.left + blender.inner.start
        classes = self.num_classes

        def write(finished: tuple[int, dict[str, np.ndarray]]) -> None:
            top, blocks = finished
            for kind, block in blocks.items():
                window = Window(x0, top, block.shape[-1], block.shape[-2])
                sinks[kind].write(block, window=window)

        def blend(item) -> None:  # writes behind through `write_behind`, bound below
            row, positions, weighted, strip_mask, buffer = item
            for position, probs in zip(positions, weighted, strict=True):
                blender.add(position, probs)
            if buffer is not None:
                self.stage.give_back(buffer)
            if on_tiles:
                on_tiles(len(positions))
            if row is None:
                return
            blender.add_valid(row, strip_mask)
            products = ProductRows(list(sinks), classes)
            finished = blender.end_strip(row, products)
            if finished is not None:
                write_behind((finished[0], products.blocks))

        # blending runs behind the model, and writing behind blending (the blend thread
        # sets the pace otherwise: the model's thread waited a third of a second on it)
        with (
            signals_deferred(),  # Ctrl-C and SIGTERM stop between batches, not in a lock
            consumer_thread(write, depth=2) as write_behind,
            consumer_thread(blend) as blend_behind,
        ):
            for item in self._predicted(self._batches(reader, blender.rows, blender.cols)):
                raise_if_stopped()
                blend_behind(item)

    def _batches(self, reader: SceneReader, rows: list[int], cols: list[int]) -> Iterator:
        """Yield ``(row or None, positions, tiles, coords, strip mask or None)`` per batch,
        in scene order; ``row`` (and a copy of the strip's validity) marks the last batch
        of a strip.

        Strips are read by ``--workers`` threads, each with its own dataset handle, into
        reused buffers, a few strips ahead of the model.
        """
        t, left = self.options.tile, cols[0]
        date = self._scene_date(reader)
        self._gsd_m = None
        local = threading.local()
        opened: list[SceneReader] = []
        lock = threading.Lock()
        workers = self.workers
        pool = self._strip_pool(reader.strip_shape(left, cols[-1] + t))

        def read(row: int) -> list[tuple]:
            if not hasattr(local, "reader"):  # one reading thread reads through `reader`
                local.reader = reader.reopen() if workers > 1 else reader
                with lock:
                    opened.append(local.reader)
            return self._strip_batches(local.reader, row, cols, pool.take(), date)

        try:
            for items in ordered_map(read, rows, workers=workers, ahead=workers + 2):
                yield from items
        finally:
            for each in opened:
                if each is not reader:
                    each.close()

    def _strip_pool(self, shape: tuple[int, int, int]) -> Recycler[StripBuffer]:
        """The strip buffers of the last column band when they have this shape, else a
        new pool (which replaces it: one pool is kept, whatever the scenes seen)."""
        if self._strips is None or self._strip_shape != shape:
            self._strips, self._strip_shape = strip_pool(shape), shape
        return self._strips

    def _strip_batches(
        self,
        reader: SceneReader,
        row: int,
        cols: list[int],
        buffer: StripBuffer,
        date: tuple[int, int] | None,
    ) -> list[tuple]:
        """The batches of strip ``row``, read into ``buffer``: their tiles are views of it."""
        size, t, left = self.options.batch_size, self.options.tile, cols[0]
        reader.read_strip(row, left, cols[-1] + t, out=(buffer.data, buffer.mask))
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
        depth = self.stage.depth
        for row, positions, tiles, coords, mask in batches:
            useful = tiles.any_valid()
            if len(useful) == len(positions):
                pending = self.stage.weighted(self.stage.host_tiles(tiles), coords)
            elif len(useful):
                subset = {k: v[useful] for k, v in coords.items()}
                part = self.stage.host_tiles(tiles.subset(useful))
                pending = self.stage.weighted(part, subset)
            else:
                pending = None
            strip = tiles.strip if row is not None else None
            in_flight.append((row, positions, useful, pending, mask, strip))
            if len(in_flight) > depth:
                yield self._finished_batch(*in_flight.popleft())
        while in_flight:
            yield self._finished_batch(*in_flight.popleft())

    def _finished_batch(self, row, positions, useful, pending, mask, strip) -> tuple:
        """``(row, positions, weighted tiles, strip mask, buffer to give back)``; tiles
        without a valid pixel add the zero tile."""
        buffer = None
        if len(useful) == len(positions):
            weighted, buffer = self.stage.collect(pending)
        else:
            weighted = [self._zero_tile] * len(positions)
            if len(useful):
                collected, buffer = self.stage.collect(pending)
                for index, tile in zip(useful, collected, strict=True):
                    weighted[index] = tile
        if strip is not None:
            strip.release()  # the model has read every tile of it
        return row, positions, weighted, mask, buffer
