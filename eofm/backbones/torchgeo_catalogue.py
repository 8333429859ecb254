"""The torchgeo weights eofm takes, listed without importing torch or torchgeo.

``torchgeo_catalogue.json`` is :func:`eofm.backbones.torchgeo_backbone.catalogue` written
for the installed torchgeo (0.8.1, pinned in ``constraints.txt``); a test checks that it
still equals what torchgeo's enums say. Regenerate it with
``python -m eofm.backbones.torchgeo_catalogue``.
"""

from __future__ import annotations

import json
from pathlib import Path

CATALOGUE_FILE = Path(__file__).with_name("torchgeo_catalogue.json")


def catalogue_rows() -> list[tuple[str, str, str, str]]:
    """``(name, file@revision, bands, licence)`` for ``eofm backbones``."""
    rows = json.loads(CATALOGUE_FILE.read_text(encoding="utf-8"))["weights"]
    return [tuple(row) for row in rows]


def write_catalogue() -> None:
    import torchgeo

    from eofm.backbones.torchgeo_backbone import catalogue
    from eofm.jsonfile import json_text

    body = {"torchgeo": torchgeo.__version__, "weights": [list(r) for r in catalogue()]}
    CATALOGUE_FILE.write_text(
        json_text(body, CATALOGUE_FILE.name, indent=1) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    write_catalogue()
