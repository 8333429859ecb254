"""What a process of a distributed run may do: Lightning's DDP starts one process per
device (``trainer.strategy: ddp``), by its own launcher or under ``srun`` / ``torchrun``.

Every process runs the same ``eofm fit``; only global rank 0 writes the run dir
(recipe, model manifest, logs, ``metrics.json``, pictures) and Lightning saves the
checkpoints from rank 0 (``Strategy.save_checkpoint``). The commands that score a
trained model on one process (``eofm test``, ``eofm calibrate``) refuse to be started
as several processes, which would write the same files at once. Light: no torch.
"""

from __future__ import annotations

import os

from eofm.errors import EofmError

#: Environment variables that give the process count of a launch: torchrun's (and
#: Lightning's own launcher's) ``WORLD_SIZE``, and srun's task count of the job step
#: (``SLURM_STEP_NUM_TASKS``, set by srun for each task it starts).
WORLD_VARIABLES = ("WORLD_SIZE", "SLURM_STEP_NUM_TASKS")


def launched_processes() -> int:
    """How many processes the launcher started for this command (1 when none did)."""
    counts = [1]
    for name in WORLD_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            counts.append(int(value))
    return max(counts)


def refuse_distributed_launch(command: str) -> None:
    """``command`` runs on one process: refuse a launch of several (one line, exit 2)."""
    count = launched_processes()
    if count > 1:
        found = ", ".join(f"{n}={os.environ[n]}" for n in WORLD_VARIABLES if n in os.environ)
        raise EofmError(
            f"eofm {command} runs on one process, but it was started as one of {count} "
            f"({found}): start it once (srun -n 1, or without torchrun).",
            exit_code=2,
        )


def one_process_trainer(trainer: dict) -> dict:
    """Trainer keywords for a command that runs on one process: one device, one node,
    no DDP, whatever the run's recipe trained with."""
    return {**trainer, "devices": 1, "num_nodes": 1, "strategy": "auto", "sync_batchnorm": False}


def is_global_zero() -> bool:
    """Whether this process is global rank 0: Lightning's ``rank_zero_only.rank``, which
    its DDP strategy sets (from the launcher's environment before that); True when
    Lightning is not loaded."""
    import sys

    module = sys.modules.get("lightning.fabric.utilities.rank_zero")
    return module is None or getattr(module.rank_zero_only, "rank", 0) == 0


def stopped_by_another_rank(rank: int, world: int, error: BaseException) -> EofmError:
    """The one-line error of a DDP process whose collective failed: when a rank dies, the
    others' next all-reduce fails (gloo: "Connection closed by peer"; NCCL times out),
    and the failed rank has printed its own error already. DDP's reducer refuses a
    trainable parameter that no loss used; that error names the recipe key that allows it
    (Lightning's ``ddp_find_unused_parameters_true``)."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    if "not used in producing the loss" in lines[0]:  # torch's DDP reducer, every rank
        return EofmError(
            "DDP needs every trainable parameter in each step's loss, and this model has "
            "some that the loss does not use (a TL backbone fed no time or location "
            "coordinates, for one): set trainer.strategy=ddp_find_unused_parameters_true."
        )
    return EofmError(
        f"DDP process {rank} of {world} stopped: {lines[0][:300]} (when another process of "
        "the run failed, its error is printed above)."
    )
