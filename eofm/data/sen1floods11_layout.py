"""Where Sen1Floods11's chips and split files lie: file lists only, no pixel is read.

Light (no torch): the recipe's pre-flight checks (``Sen1Floods11Config.check_files``)
and the datamodule (``sen1floods11.py``) share it. Layout of v1.1 as released by
Bonafilia et al. (github.com/cloudtostreet/Sen1Floods11, ``v1.1/data/flood_events/
HandLabeled/``): ``S1Hand/``, ``S2Hand/``, ``LabelHand/`` chips named
``<EVENT>_<ID>_<folder>.tif``, and split CSVs of ``<chip>_S1Hand.tif,<chip>_LabelHand.tif``
rows.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from eofm.bands import SENTINEL1_BANDS, SENTINEL2_L1C_BANDS, band_indices, check_band_names
from eofm.errors import EofmError

SPLITS = ("train", "val", "test")


def chip_event(chip_id: str) -> str:
    """``Sri-Lanka_534068`` -> ``Sri-Lanka``: the event is the part before the last ``_``."""
    return chip_id.rsplit("_", 1)[0]


def split_by_event(
    chip_ids: Iterable[str], fractions: Sequence[float] = (0.6, 0.2, 0.2)
) -> dict[str, list[str]]:
    """Assign whole events to splits, deterministically (independent of input order).

    Events are ordered by the SHA-1 of their name; val and test take events until they
    reach their share of chips, train takes the rest. With three or more events every
    split gets at least one, so no event ever appears in two splits.
    """
    by_event: dict[str, list[str]] = {}
    for chip in sorted(set(chip_ids)):
        by_event.setdefault(chip_event(chip), []).append(chip)
    events = sorted(by_event, key=lambda e: hashlib.sha1(e.encode()).hexdigest())
    total = sum(len(v) for v in by_event.values())
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    queue = list(events)
    for split, fraction in (("test", fractions[2]), ("val", fractions[1])):
        target = fraction * total
        while fraction > 0 and len(queue) > 1 and len(out[split]) < target:
            out[split].extend(by_event[queue.pop(0)])
    for event in queue:
        out["train"].extend(by_event[event])
    return {s: sorted(v) for s, v in out.items()}


def read_split_csv(path: Path) -> list[str]:
    """Chip ids of an official Sen1Floods11 split CSV (``<chip>_S1Hand.tif,<chip>_LabelHand.tif``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EofmError(f"Cannot read split file {path}: {exc.strerror or exc}") from None
    chips = []
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip():
            continue
        first = row[0].strip()
        for suffix in ("_S1Hand.tif", "_S2Hand.tif", "_LabelHand.tif"):
            if first.endswith(suffix):
                chips.append(first[: -len(suffix)])
                break
        else:
            raise EofmError(
                f"Split file {path}, line {lineno}: expected '<chip>_S1Hand.tif,<chip>_LabelHand.tif', got {','.join(row)!r}."
            )
    if not chips:
        raise EofmError(f"Split file {path} lists no chips.")
    return chips


OFFICIAL_SUBPATH = Path("v1.1") / "data" / "flood_events" / "HandLabeled"


def find_sen1floods11_root(root: Path) -> Path:
    """The folder holding ``S1Hand/``/``S2Hand/`` and ``LabelHand/``.

    Accepts that folder itself, or any ancestor along the official
    ``v1.1/data/flood_events/HandLabeled/`` tree.
    """
    root = Path(root)
    if not root.is_dir():
        raise EofmError(f"Data root {root} does not exist or is not a folder (data.root).")
    parts = OFFICIAL_SUBPATH.parts
    candidates = [root] + [root.joinpath(*parts[i:]) for i in range(len(parts))]
    for candidate in candidates:
        if (candidate / "LabelHand").is_dir() and any(
            (candidate / f).is_dir() for f in ("S1Hand", "S2Hand")
        ):
            return candidate
    raise EofmError(
        f"Data root {root} holds no Sen1Floods11 chips: expected S1Hand/ or S2Hand/ with "
        f"LabelHand/ in it, or under {OFFICIAL_SUBPATH}/."
    )


#: Which chip folder holds which bands, in file order (the v1.1 README).
FOLDER_BANDS: dict[str, tuple[str, ...]] = {
    "S1Hand": SENTINEL1_BANDS,
    "S2Hand": SENTINEL2_L1C_BANDS,
}


def band_sources(bands: Sequence[str]) -> list[tuple[str, int]]:
    """The chip folder and 1-based index in its files of each of ``bands``, in order."""
    out = []
    for band in check_band_names(bands, where="data.bands"):
        folder = "S1Hand" if band in SENTINEL1_BANDS else "S2Hand"
        (index,) = band_indices([band], FOLDER_BANDS[folder], where=f"{folder} chips")
        out.append((folder, index + 1))
    return out


def chip_folders(bands: Sequence[str]) -> list[str]:
    """The chip folders ``bands`` are read from: ``S1Hand`` and/or ``S2Hand``. With both
    (multi-modal input, each chip's two rasters stacked), ``S1Hand`` comes first: the
    official split CSVs name chips by their S1Hand file."""
    used = {folder for folder, _ in band_sources(bands)}
    return [folder for folder in FOLDER_BANDS if folder in used]


def source_for_bands(bands: Sequence[str]) -> tuple[str, list[int]]:
    """The one chip folder that holds all of ``bands``, and their 1-based indexes in its
    files (``band_sources`` says where each band of a mixed S1 + S2 list lies)."""
    sources = band_sources(bands)
    folders = chip_folders(bands)
    if len(folders) > 1:
        raise EofmError(
            f"data.bands {list(bands)} mixes Sentinel-1 and Sentinel-2 bands, which "
            "Sen1Floods11 stores in two chips (S1Hand and S2Hand); they are read as one stack."
        )
    return folders[0], [index for _, index in sources]


def chip_image(root: Path, folder: str, chip: str) -> Path:
    """``<root>/<folder>/<chip>_<folder>.tif``, e.g. ``S2Hand/Ghana_97059_S2Hand.tif``."""
    return root / folder / f"{chip}_{folder}.tif"


def chip_paths(root: Path, folder: str, chip: str) -> tuple[Path, Path]:
    """The chip's image in ``folder`` and its label."""
    return chip_image(root, folder, chip), chip_image(root, "LabelHand", chip)


def discover_chips(root: Path, folder: str) -> list[str]:
    suffix = f"_{folder}.tif"
    chips = sorted(p.name[: -len(suffix)] for p in (root / folder).glob(f"*{suffix}"))
    if not chips:
        raise EofmError(f"{root / folder} holds no *{suffix} chips.")
    return chips


#: chip folder -> the chip ids it holds a file of
OnDisk = Mapping[str, set[str]]


def chips_on_disk(root: Path, folders: Sequence[str]) -> dict[str, set[str]]:
    """The chips of each of ``folders`` (a file listing; an empty folder is an error)."""
    return {folder: set(discover_chips(root, folder)) for folder in folders}


def missing_image(root: Path, on_disk: OnDisk, chip: str) -> Path | None:
    """The first of ``chip``'s images (one per folder of ``on_disk``) that does not exist."""
    for folder, chips in on_disk.items():
        if chip not in chips:
            return chip_image(root, folder, chip)
    return None


def complete_chips(root: Path, on_disk: OnDisk) -> list[str]:
    """Every chip found in the folders of ``on_disk``, each of which must hold a file of
    it: a chip read from S1Hand and S2Hand needs both (the release pairs them by name,
    ``<EVENT>_<ID>_S1Hand.tif`` and ``<EVENT>_<ID>_S2Hand.tif``; TerraTorch's
    ``GenericMultimodalDataset`` likewise pairs its modalities' files by this prefix)."""
    chips = sorted(set().union(*on_disk.values()))
    for chip in chips:
        missing = missing_image(root, on_disk, chip)
        if missing is not None:
            present = [str(chip_image(root, f, chip)) for f, c in on_disk.items() if chip in c]
            raise EofmError(
                f"{missing} does not exist, but {present[0]} does: data.bands are read from "
                f"{' and '.join(on_disk)} of each chip. Add the missing file, or remove the "
                "chip's other files."
            )
    return chips


def chip_splits(
    root: Path,
    on_disk: OnDisk,
    split_csv: Mapping[str, str] | None,
    fractions: Sequence[float],
) -> dict[str, list[str]]:
    """train / val / test chip ids: from the official split CSVs (relative to ``root``),
    or by event (:func:`eofm.data.splits.split_by_event`) when none are given. Every chip
    used must have its image in each folder of ``on_disk``."""
    if not split_csv:
        return split_by_event(complete_chips(root, on_disk), fractions)
    unknown = set(split_csv) - set(SPLITS)
    if unknown:
        raise EofmError(
            f"data.split_csv has unknown split(s) {sorted(unknown)}; use {list(SPLITS)}."
        )
    splits = {}
    for split in SPLITS:
        if split not in split_csv:
            raise EofmError(f"data.split_csv lacks the '{split}' split.")
        path = Path(split_csv[split])
        if not path.is_absolute():  # relative split files live under the data root
            path = root / path
        if not path.is_file():
            raise EofmError(
                f"Split file {path} (data.split_csv.{split}) does not exist; set "
                "data.split_csv=null to split the chips by event instead."
            )
        chips = read_split_csv(path)
        for chip in chips:
            missing = missing_image(root, on_disk, chip)
            if missing is not None:
                raise EofmError(
                    f"Split file {path} lists chip {chip}, but {missing} does not exist."
                )
        splits[split] = chips
    return splits
