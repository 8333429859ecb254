"""``eofm prepare``: raw downloads -> a model's input layout (MERRA-2 for Prithvi WxC)."""

from __future__ import annotations

from pathlib import Path


def prepare(dataset: str, raw_dir: Path, out_dir: Path) -> list[Path]:
    """Convert ``raw_dir``; the files written (see ``eofm.data.merra2_prepare``)."""
    from eofm.data.merra2_prepare import prepare_merra2

    if dataset != "merra2":  # argparse's choices keep others out
        raise ValueError(dataset)
    return prepare_merra2(raw_dir, out_dir)
