"""Latent cache: run a frozen backbone once, train decoders from stored latents.

Works for every model that exposes ``encode_batch(batch) -> {name: tensor}`` and
``INPUT_KEYS`` (the batch entries the backbone consumes), and every datamodule that
exposes ``dataset(split)``, ``collate``, ``fingerprint(split)`` and ``augmentations()``.

An entry is keyed by the backbone (name, repo, revision, file, latent source), the data
files with their sizes and modification times, the preprocessing, the split and the
eofm version; any change gives a new key. Entries are safetensors shards written to a
temporary folder and renamed when complete, so a killed run never leaves a half entry.
The cache folder is bounded: least recently used entries are evicted past ``max_bytes``.
Under DDP, local rank 0 builds a missing entry under the entry's file lock (filelock)
while the node's other ranks wait for it, then every rank reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from eofm.data.sampling import order_options
from eofm.data.splits import SplitLoaders
from eofm.errors import EofmError
from eofm.jsonfile import json_text

log = logging.getLogger(__name__)

COMPLETE = "entry.json"
SHARD_SAMPLES = 256
#: How often a rank waiting for another's cache entry looks for it.
WAIT_SECONDS = 0.5


def default_cache_dir() -> Path:
    env = os.environ.get("EOFM_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "eofm" / "latents"


def file_stamps(paths: Iterable[str | Path]) -> list[list[Any]]:
    """(path, size, mtime_ns) of each file; folders (zarr stores) are walked."""
    stamps = []
    for path in sorted(Path(p) for p in paths):
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        for f in files:
            st = f.stat()
            stamps.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    return stamps


def cache_key(parts: Mapping[str, Any]) -> str:
    text = json_text(parts, "the latent cache key", sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class LatentCache:
    """A bounded folder of cache entries, one sub-folder per key."""

    def __init__(self, root: str | Path | None = None, *, max_bytes: int = 20 * 2**30) -> None:
        self.root = Path(root) if root else default_cache_dir()
        self.max_bytes = int(max_bytes)

    def entry(self, key: str) -> Path:
        return self.root / key

    def lock(self, key: str) -> Any:
        """The entry's file lock (filelock): one process at a time looks it up or writes it."""
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / f".{key}.lock"))

    def lookup(self, key: str) -> Path | None:
        folder = self.entry(key)
        if (folder / COMPLETE).is_file():
            os.utime(folder / COMPLETE)  # least-recently-used order
            return folder
        return None

    def write(self, key: str, parts: Mapping[str, Any], samples: Iterable[dict]) -> Path:
        """Store ``samples`` (dicts of tensors and plain values) under ``key``, atomically."""
        from safetensors.torch import save_file

        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".{key}.{os.getpid()}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            shard, count, shards, extras = [], 0, [], []
            for sample in samples:
                tensors = {k: v for k, v in sample.items() if isinstance(v, torch.Tensor)}
                extras.append({k: v for k, v in sample.items() if k not in tensors})
                shard.append(tensors)
                count += 1
                if len(shard) == SHARD_SAMPLES:
                    shards.append(self._save_shard(staging, len(shards), shard, save_file))
                    shard = []
            if shard:
                shards.append(self._save_shard(staging, len(shards), shard, save_file))
            meta = {"parts": parts, "samples": count, "shards": shards, "extras": extras}
            meta["created"] = time.time()
            (staging / COMPLETE).write_text(
                json_text(meta, COMPLETE, default=str), encoding="utf-8"
            )
            final = self.entry(key)
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return final

    @staticmethod
    def _save_shard(folder: Path, index: int, shard: list[dict], save_file: Any) -> str:
        name = f"shard-{index:05d}.safetensors"
        stacked = {k: torch.stack([s[k] for s in shard]).contiguous() for k in shard[0]}
        save_file(stacked, str(folder / name))
        return name

    def entries(self) -> list[tuple[Path, int, float]]:
        """(folder, bytes, last use) of each complete entry."""
        if not self.root.is_dir():
            return []
        out = []
        for folder in self.root.iterdir():
            marker = folder / COMPLETE
            if folder.is_dir() and marker.is_file():
                size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
                out.append((folder, size, marker.stat().st_mtime))
        return out

    def evict(self, keep: Iterable[str] = ()) -> list[Path]:
        """Remove least recently used entries until the folder fits ``max_bytes``."""
        keep = set(keep)
        entries = sorted(self.entries(), key=lambda e: e[2])
        total = sum(size for _, size, _ in entries)
        removed = []
        for folder, size, _ in entries:
            if total <= self.max_bytes:
                break
            if folder.name in keep:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            total -= size
            removed.append(folder)
        return removed

    def report(self) -> str:
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        return (
            f"latent cache {self.root}: {len(entries)} entries, {total / 2**20:.1f} MiB "
            f"(limit {self.max_bytes / 2**30:.1f} GiB)"
        )


class CachedLatentDataset(Dataset):
    """The samples of one cache entry, held in memory."""

    def __init__(self, folder: Path) -> None:
        from safetensors.torch import load_file

        meta = json.loads((folder / COMPLETE).read_text(encoding="utf-8"))
        shards = [load_file(str(folder / name)) for name in meta["shards"]]
        self.tensors = {k: torch.cat([s[k] for s in shards]) for k in shards[0]} if shards else {}
        self.extras = meta["extras"]

    def __len__(self) -> int:
        return len(self.extras)

    def __getitem__(self, index: int) -> dict:
        sample = {k: v[index] for k, v in self.tensors.items()}
        sample.update(self.extras[index])
        return sample


def encoded_samples(model: torch.nn.Module, loader: DataLoader) -> Iterable[dict]:
    """Run ``model.encode_batch`` over ``loader`` (inference mode); yield one dict per sample."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                encoded = model.encode_batch(batch)
                kept = {k: v for k, v in batch.items() if k not in model.INPUT_KEYS}
                kept.update(encoded)
                n = len(next(iter(encoded.values())))
                for i in range(n):
                    sample = {}
                    for k, v in kept.items():
                        if isinstance(v, torch.Tensor):
                            sample[k] = v[i].detach().cpu().clone()
                        elif isinstance(v, (list, tuple)):
                            sample[k] = v[i]
                    yield sample
    finally:
        model.train(was_training)


def cache_refusal(recipe: Any, datamodule: Any, model: torch.nn.Module) -> str | None:
    """Why latents of this set-up cannot be cached, or ``None`` when they can."""
    if not getattr(model, "cacheable", True):
        return "this model's latents cannot be cached (no ViT backbone encodes its inputs)"
    if recipe.adapter.mode != "frozen" or getattr(model, "backbone_needs_grad", True):
        return (
            f"the backbone is not frozen (adapter.mode={recipe.adapter.mode}"
            + (
                ", and the patch embedding trains for new bands"
                if recipe.adapter.mode == "frozen"
                else ""
            )
            + "), so its latents change while training"
        )
    augmentations = datamodule.augmentations()
    if augmentations:
        return (
            f"random augmentation ({', '.join(augmentations)}) is configured, so every epoch "
            "sees different inputs and cached latents would be wrong"
        )
    if not hasattr(model, "encode_batch"):
        return "the model cannot encode a batch on its own"

    return None


class CachedDataModule(SplitLoaders):
    """Wraps a datamodule: the loaders serve cached latents instead of raw inputs."""

    def __init__(
        self,
        inner: Any,
        model: torch.nn.Module,
        cache: LatentCache,
        backbone_key: Mapping[str, Any],
        *,
        splits: Iterable[str] = ("train", "val"),
        builds: bool = True,
    ) -> None:
        """``builds``: this process writes the entries that are missing (local rank 0 of a
        distributed run; the other ranks wait for them, then read them)."""
        self.builds = builds
        self.inner = inner
        self.model = model
        self.cache = cache
        self.backbone_key = dict(backbone_key)
        self.datasets: dict[str, CachedLatentDataset] = {}
        self.hits: dict[str, bool] = {}
        self.build_seconds: dict[str, float] = {}
        for split in splits:
            self.datasets[split] = self._prepare(split)
        if builds:  # one process per node evicts
            self.cache.evict(keep={self.key(s) for s in self.datasets})
        log.info(self.cache.report())

    def key_parts(self, split: str) -> dict[str, Any]:
        from eofm import __version__

        data = dict(self.inner.fingerprint(split))
        data["files"] = file_stamps(data.get("files", []))
        return {"eofm": __version__, "backbone": self.backbone_key, "data": data}

    def key(self, split: str) -> str:
        return cache_key(self.key_parts(split))

    def _prepare(self, split: str) -> CachedLatentDataset:
        parts = self.key_parts(split)
        key = cache_key(parts)
        with self.cache.lock(key):
            folder = self.cache.lookup(key)
            self.hits[split] = folder is not None
            if folder is not None:
                log.info("Latent cache hit for %s: %s", split, folder)
            elif self.builds:
                folder = self._build(split, key, parts)
        if folder is None:  # another process of the run builds it: read it when complete
            folder = self._wait_for(split, key)
        return CachedLatentDataset(folder)

    def _build(self, split: str, key: str, parts: dict[str, Any]) -> Path:
        started = time.perf_counter()
        loader = DataLoader(
            self.inner.dataset(split),
            batch_size=getattr(self.inner, "batch_size", 1),
            shuffle=False,
            num_workers=getattr(self.inner, "num_workers", 0),
            collate_fn=self.inner.collate,
        )
        try:
            folder = self.cache.write(key, parts, encoded_samples(self.model, loader))
        except OSError as exc:
            raise EofmError(
                f"Cannot write the latent cache under {self.cache.root}: {exc}"
            ) from None
        self.build_seconds[split] = time.perf_counter() - started
        log.info("Cached %s latents in %.1f s: %s", split, self.build_seconds[split], folder)
        return folder

    def _wait_for(self, split: str, key: str) -> Path:
        """The entry that local rank 0 is building; its launcher (Lightning's, srun with
        ``--kill-on-bad-exit``, torchrun) ends this process if that rank fails."""
        log.info(
            "Waiting for local rank 0 to cache the %s latents under %s", split, self.cache.root
        )
        while True:
            time.sleep(WAIT_SECONDS)
            with self.cache.lock(key):
                folder = self.cache.lookup(key)
            if folder is not None:
                log.info("Latent cache read for %s (built by local rank 0): %s", split, folder)
                self.hits[split] = True
                return folder

    def _loader(self, split: str) -> DataLoader:
        dataset = self.datasets[split]
        train = split == "train"
        inner = getattr(self.inner, f"{split}_dataloader")()  # same batching as uncached
        return DataLoader(
            dataset,
            batch_size=inner.batch_size,
            drop_last=inner.drop_last,
            **order_options(
                len(dataset),
                getattr(self.inner, "seed", 0),
                shuffle=train,
                batch_size=inner.batch_size or 1,
            ),
        )
