"""Which scenes one process of a cluster run predicts.

Every process expands the same inputs to the same sorted list, and takes every n-th
scene from the i-th (round robin: neighbouring scenes, often of similar size, land on
different processes). Across the n processes each scene is predicted exactly once.

Where ``i/n`` comes from, first found wins:

1. ``--shard i/n``, given by hand (e.g. to rerun one shard of an array inside an
   allocation whose variables say otherwise);
2. a Slurm job array: ``SLURM_ARRAY_TASK_ID`` among ``SLURM_ARRAY_TASK_COUNT`` tasks,
   counted from ``SLURM_ARRAY_TASK_MIN`` in steps of ``SLURM_ARRAY_TASK_STEP``
   (``--array=1-8`` and ``--array=0-30:2`` both work; Slurm's job-array documentation,
   https://slurm.schedmd.com/job_array.html). When torchrun (or srun) starts several
   processes inside each array task, each array task's share is split again among them;
3. torchrun's ``RANK`` / ``WORLD_SIZE`` (torch.distributed.run's documented variables);
4. srun's ``SLURM_PROCID`` / ``SLURM_NTASKS``;
5. otherwise ``0/1``: one process takes every scene.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from eofm.errors import EofmError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` and where that came from (said in the log)."""

    index: int
    count: int
    source: str

    @property
    def sharded(self) -> bool:
        """Whether a launcher or ``--shard`` split the run (then a manifest is written)."""
        return self.source != "single process"

    def take(self, scenes: Sequence[T]) -> list[T]:
        """This shard's scenes of the sorted ``scenes``: every ``count``-th from ``index``."""
        return list(scenes[self.index :: self.count])

    def __str__(self) -> str:
        return f"shard {self.index}/{self.count} ({self.source})"


def _int(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise EofmError(f"{name}={environ[name]!r} is not a whole number.", exit_code=2) from None


def _array_task(environ: Mapping[str, str]) -> tuple[int, int, str] | None:
    """``(index, count, description)`` of a Slurm job array task, or None outside one."""
    if "SLURM_ARRAY_TASK_ID" not in environ or "SLURM_ARRAY_TASK_COUNT" not in environ:
        return None
    task, count = _int(environ, "SLURM_ARRAY_TASK_ID"), _int(environ, "SLURM_ARRAY_TASK_COUNT")
    first = _int(environ, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in environ else 0
    step = _int(environ, "SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in environ else 1
    index, off_step = divmod(task - first, max(step, 1))
    if off_step or not 0 <= index < count:
        raise EofmError(
            f"Slurm array task {task} is not one of {count} tasks from {first} in steps of "
            f"{step}: submit the array as a range (sbatch --array=0-{count - 1}), or give "
            "--shard i/n.",
            exit_code=2,
        )
    return index, count, f"SLURM_ARRAY_TASK_ID={task} of {count}"


def _ranks(environ: Mapping[str, str]) -> tuple[int, int, str] | None:
    """``(rank, world size, description)`` from torchrun, else srun, or None."""
    for rank, size, launcher in (
        ("RANK", "WORLD_SIZE", "torchrun"),
        ("SLURM_PROCID", "SLURM_NTASKS", "srun"),
    ):
        if rank in environ and size in environ:
            index, count = _int(environ, rank), _int(environ, size)
            return index, count, f"{launcher} {rank}={index} {size}={count}"
    return None


def select_shard(text: str | None, environ: Mapping[str, str] | None = None) -> Shard:
    """This process's shard: ``--shard`` (``text``), else the launcher's variables in
    ``environ`` (default ``os.environ``), in the order of the module's docstring."""
    environ = os.environ if environ is None else environ
    if text:
        try:
            index, count = (int(v) for v in text.split("/"))
        except ValueError:
            raise EofmError(f"--shard must look like i/n (e.g. 0/4), got {text!r}.") from None
        source = "--shard"
    else:
        array, ranks = _array_task(environ), _ranks(environ)
        if array and ranks and ranks[1] > 1:  # several processes in each array task
            index, count = array[0] * ranks[1] + ranks[0], array[1] * ranks[1]
            source = f"{array[2]}, {ranks[2]}"
        elif array or ranks:
            index, count, source = array or ranks  # type: ignore[misc]
        else:
            index, count, source = 0, 1, "single process"
    if count < 1 or not 0 <= index < count:
        raise EofmError(f"Shard {index}/{count} is out of range: need 0 <= i < n.")
    return Shard(index, count, source)
