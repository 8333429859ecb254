"""``manifest-<i>-of-<n>.json``: what one shard of a run did with each of its scenes.

Written into the output folder when the shard starts (every scene ``pending``) and
rewritten, atomically (:mod:`eofm.atomic`, strict JSON through :mod:`eofm.jsonfile`), as
scenes finish, at most every few seconds and once at the end; a process that dies
leaves its last account, whose ``pending`` scenes are the ones to rerun. Per scene:
the input, the outputs (named inside the folder, the class map first) with their
SHA-256, the seconds it took, and its status:

- ``done``: predicted by this run;
- ``skipped-existing``: its outputs were there already (an earlier run wrote them);
- ``failed``: it raised an error, recorded on one line; the shard went on;
- ``pending``: not reached (the process stopped before).

The scene's outputs are finished on a background thread while the next scene streams
(``eofm.predict.engine``), so a scene is recorded once its outputs are all in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from eofm.atomic import write_text
from eofm.cluster.shards import Shard
from eofm.errors import EofmError
from eofm.jsonfile import json_text

log = logging.getLogger(__name__)

FORMAT = "eofm-predict-manifest/1"
SAVE_EVERY_S = 5.0
STATUSES = ("pending", "done", "skipped-existing", "failed")


def manifest_name(index: int, count: int) -> str:
    return f"manifest-{index}-of-{count}.json"


def inputs_digest(scenes: Sequence[Path]) -> str:
    """SHA-256 of the run's sorted absolute input paths: shards of one run agree on it."""
    text = "\n".join(os.path.abspath(p) for p in scenes)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ScenePlanLike(Protocol):
    """What the ledger reads of ``eofm.predict.plan.ScenePlan``."""

    source: Path
    raster: Path
    companions: list[Path]
    existing: list[Path]

    def targets(self) -> list[Path]: ...


@dataclass
class SceneRecord:
    input: str
    status: str = "pending"
    outputs: list[dict[str, str]] = field(default_factory=list)  # {"path", "sha256"}
    seconds: float | None = None
    error: str | None = None


@dataclass
class _Unsettled:
    """A scene streamed, whose outputs are being finished in the background."""

    record: SceneRecord
    plan: ScenePlanLike
    started: float


def _error_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class ShardLedger:
    """Keeps one shard's manifest while its scenes are predicted.

    ``wait`` waits for the outputs being finished in the background (``Predictor.wait``).
    """

    def __init__(
        self,
        out_dir: Path,
        shard: Shard,
        scenes: Sequence[Path],
        all_inputs: Sequence[Path],
        *,
        model: str,
        wait: Callable[[], None],
    ) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / manifest_name(shard.index, shard.count)
        self.shard = shard
        self.model = model
        self.wait = wait
        self.total = len(all_inputs)
        self.digest = inputs_digest(all_inputs)
        self.records = {Path(s): SceneRecord(os.path.abspath(s)) for s in scenes}
        self.failures: list[tuple[Path, EofmError]] = []
        self._unsettled: _Unsettled | None = None
        self._saved = 0.0

    # --- writing -----------------------------------------------------------------------
    def save(self, *, force: bool = True) -> None:
        now = time.monotonic()
        if not force and now - self._saved < SAVE_EVERY_S:
            return
        data = {
            "format": FORMAT,
            "shard": {"index": self.shard.index, "count": self.shard.count},
            "shard_source": self.shard.source,
            "model": self.model,
            "inputs": self.total,
            "inputs_sha256": self.digest,
            "updated": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
            "scenes": [asdict(r) for r in self.records.values()],
        }
        write_text(self.path, json_text(data, str(self.path), indent=1) + "\n")
        self._saved = now

    def _outputs(self, plan: ScenePlanLike) -> list[dict[str, str]]:
        paths = [plan.raster, *plan.companions, *plan.existing, *plan.targets()]
        unique = [p for i, p in enumerate(paths) if p not in paths[:i] and p.exists()]
        return [{"path": os.path.relpath(p, self.out_dir), "sha256": sha256_of(p)} for p in unique]

    def _settle(self, error: EofmError | None = None) -> bool:
        """Record the scene finished in the background: done if its outputs are all in
        place, else failed (with ``error``). Returns whether it failed."""
        pending, self._unsettled = self._unsettled, None
        if pending is None:
            return False
        record = pending.record
        record.seconds = round(time.perf_counter() - pending.started, 3)
        if all(p.exists() for p in pending.plan.targets()):
            record.status, record.outputs = "done", self._outputs(pending.plan)
            return False
        error = error or EofmError("its outputs were not written")
        record.status, record.error = "failed", _error_line(error)
        self.failures.append((pending.plan.source, error))
        return True

    def _fail(self, plan: ScenePlanLike, started: float, exc: EofmError) -> None:
        record = self.records[Path(plan.source)]
        record.status, record.error = "failed", _error_line(exc)
        record.seconds = round(time.perf_counter() - started, 3)
        self.failures.append((plan.source, exc))
        log.error("%s failed: %s", plan.source, exc)

    # --- predicting --------------------------------------------------------------------
    def run(self, plan: ScenePlanLike, predict: Callable[[], Any]) -> Any:
        """``predict()`` the scene of ``plan``; its error is recorded, not raised (the
        shard goes on), and then None is returned."""
        started = time.perf_counter()
        try:
            result = predict()
        except EofmError as exc:
            try:
                self.wait()  # the previous scene's outputs, finished or failed now
            except EofmError as previous_error:
                self._settle(previous_error)
                self._fail(plan, started, exc)  # this one's own stream failed
            else:
                if not self._settle(exc):
                    self._fail(plan, started, exc)
                else:  # the error was the previous scene's: this one was dropped with it
                    return self.run(plan, predict)
            self.save(force=False)
            return None
        except BaseException:  # Ctrl-C, SIGTERM, a bug: the account so far is kept
            with contextlib.suppress(Exception):
                self.save()
            raise
        record = self.records[Path(plan.source)]
        if getattr(result, "skipped", False):  # returned at once: the previous may still run
            record.status, record.outputs = "skipped-existing", self._outputs(plan)
            record.seconds = round(time.perf_counter() - started, 3)
        else:
            self._settle()  # predict() waited for the previous scene's outputs
            self._unsettled = _Unsettled(record, plan, started)
        self.save(force=False)
        return result

    def close(self) -> None:
        """Wait for the last scene's outputs, write the manifest, and raise one error if
        any scene failed."""
        try:
            self.wait()
        except EofmError as exc:
            self._settle(exc)
        else:
            self._settle()
        self.save()
        if not self.failures:
            return
        if len(self.records) == 1:
            raise self.failures[0][1]
        source, first = self.failures[0]
        raise EofmError(
            f"{len(self.failures)} of {len(self.records)} scene(s) of {self.shard} failed "
            f"(listed in {self.path}); the first, {source}: {_error_line(first)}",
            exit_code=first.exit_code,
        )
