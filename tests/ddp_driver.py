"""``python -m tests.ddp_driver ARGS``: ``eofm ARGS`` with observers, for the DDP tests.

Lightning's subprocess launcher starts the other ranks as ``python -m tests.ddp_driver
ARGS`` again (``_basic_subprocess_cmd``), so every rank runs this. The observers change
nothing that eofm does; they append JSON lines to ``$EOFM_TEST_RECORD``:

- ``{"rank", "epoch", "chips"}`` for each training batch a rank takes;
- ``{"rank", "wrote"}`` for each run-dir file ``eofm fit`` writes and each checkpoint.

``$EOFM_TEST_UNREADABLE=CHIP`` makes reading chip CHIP's sample (raw, or its cached
latents) fail as an unreadable file does (an ``EofmError`` naming it) in epoch 1, on
whichever rank reads it: eofm reads every chip whole before training (``chip_status``),
so a file damaged beforehand fails every rank up front; this stands for a read that
fails later, on one node.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from eofm.errors import EofmError

RECORD = os.environ.get("EOFM_TEST_RECORD")


def _rank() -> int:
    from lightning.pytorch.utilities import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0))


def _record(entry: dict[str, Any]) -> None:
    if RECORD:
        with open(RECORD, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"pid": os.getpid(), "rank": _rank(), **entry}) + "\n")


def _observe() -> None:
    from lightning.pytorch.callbacks import Callback

    import eofm.commands.fit as fit_module
    import eofm.data.chips as chips_module
    import eofm.train.cache as cache_module
    import eofm.train.checkpointing as checkpointing
    import eofm.train.trainer as trainer_module

    class SeenChips(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            _record({"epoch": trainer.current_epoch, "chips": list(batch["chip"])})

    build = trainer_module.build_trainer

    def build_trainer(recipe, run_dir, *, callbacks=None, **options):
        return build(recipe, run_dir, callbacks=[*(callbacks or []), SeenChips()], **options)

    trainer_module.build_trainer = build_trainer

    def observed(function):
        def wrapped(path, *args, **kwargs):
            _record({"wrote": str(path)})
            return function(path, *args, **kwargs)

        return wrapped

    fit_module.write_json = observed(fit_module.write_json)
    fit_module.write_text_atomic = observed(fit_module.write_text_atomic)
    save = checkpointing.AtomicCheckpointIO.save_checkpoint

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        _record({"wrote": str(path)})
        return save(self, checkpoint, path, storage_options)

    checkpointing.AtomicCheckpointIO.save_checkpoint = save_checkpoint
    curves = fit_module.curves
    fit_module.curves = lambda run_dir, monitor: (
        _record({"wrote": str(Path(run_dir) / "curves.png")}),
        curves(run_dir, monitor),
    )[1]

    unreadable = os.environ.get("EOFM_TEST_UNREADABLE")
    if unreadable:
        read = chips_module.LabelledChips.__getitem__
        epoch = {"now": 0}

        class Epoch(Callback):
            def on_train_epoch_start(self, trainer, pl_module) -> None:
                epoch["now"] = trainer.current_epoch

        def getitem(self, index):
            chip = self.chips[index % len(self.chips)]
            if chip == unreadable and epoch["now"] == 1:
                raise EofmError(f"Cannot read {self.pairs[chip][0]}: read error (injected).")
            return read(self, index)

        chips_module.LabelledChips.__getitem__ = getitem
        read_cached = cache_module.CachedLatentDataset.__getitem__

        def getitem_cached(self, index):
            sample = read_cached(self, index)
            if sample.get("chip") == unreadable and epoch["now"] == 1:
                raise EofmError(f"Cannot read chip {unreadable}'s cached latents (injected).")
            return sample

        cache_module.CachedLatentDataset.__getitem__ = getitem_cached
        inner = trainer_module.build_trainer
        trainer_module.build_trainer = lambda recipe, run_dir, *, callbacks=None, **o: inner(
            recipe, run_dir, callbacks=[*(callbacks or []), Epoch()], **o
        )


if __name__ == "__main__":
    from eofm.cli import main

    _observe()
    sys.exit(main(sys.argv[1:]))
