"""``--inputs-from FILE``: the inputs of a run too long for a command line.

One path per line, as ``gdalbuildvrt -input_file_list`` reads them: blank lines and
lines starting with ``#`` are skipped, surrounding spaces are dropped, and a relative
path is relative to the current folder (as on the command line). A line may be a glob
pattern, expanded by eofm (``**`` descends folders). Every line is checked before
anything runs: the lines that name nothing are one error, with their line numbers.
"""

from __future__ import annotations

import glob
from pathlib import Path

from eofm.errors import EofmError

_SHOWN = 5  # missing lines named in the error; the rest are counted


def read_input_list(path: Path) -> list[str]:
    """The inputs listed in ``path``, in file order; an error names the lines that
    match no file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EofmError(f"--inputs-from {path}: no such file.", exit_code=2) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EofmError(f"--inputs-from {path} cannot be read: {exc}.", exit_code=2) from None
    entries: list[str] = []
    missing: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if not Path(entry).exists() and not glob.glob(entry, recursive=True):
            missing.append(f"line {number}: {entry}")
        entries.append(entry)
    if missing:
        more = f" (and {len(missing) - _SHOWN} more)" if len(missing) > _SHOWN else ""
        raise EofmError(
            f"--inputs-from {path} lists {len(missing)} input(s) that do not exist (nor match "
            f"a file as a glob): {'; '.join(missing[:_SHOWN])}{more}.",
            exit_code=2,
        )
    if not entries:
        raise EofmError(
            f"--inputs-from {path} lists no input (only blank lines and # comments).",
            exit_code=2,
        )
    return entries
