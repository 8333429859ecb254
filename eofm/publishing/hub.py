"""Hugging Face Hub access: ``hf://`` ids, pinned downloads, and clear failures.

Every download goes through ``huggingface_hub`` (so its cache, ``HF_ENDPOINT``,
``HF_HUB_OFFLINE`` and token handling apply) with an explicit revision. Errors are turned
into one line that names the repo, revision and file, and never contains a token.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from eofm.errors import EofmError

log = logging.getLogger(__name__)

#: Seconds to wait for the Hub to accept a connection before going offline (the client's
#: own retries and back-off take many times longer to give up).
PROBE_SECONDS = 1.5
_PROBED: dict[str, bool] = {}

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


@dataclass(frozen=True)
class HubRef:
    """A parsed ``hf://ORG/REPO[@REVISION][#FILE]``."""

    repo_id: str
    revision: str | None = None
    filename: str | None = None

    def __str__(self) -> str:
        text = f"hf://{self.repo_id}"
        if self.revision:
            text += f"@{self.revision}"
        if self.filename:
            text += f"#{self.filename}"
        return text


def is_hub_uri(spec: str) -> bool:
    return spec.startswith("hf://")


def validate_repo_id(repo_id: str) -> str:
    if not _REPO_ID.match(repo_id) or ".." in repo_id or "--" in repo_id:
        raise EofmError(f"'{repo_id}' is not a valid Hub repo id (expected ORG/NAME).", exit_code=2)
    return repo_id


def parse_hub_uri(spec: str) -> HubRef:
    """``hf://ORG/REPO[@REVISION][#FILE]`` -> :class:`HubRef`."""
    if not is_hub_uri(spec):
        raise EofmError(
            f"'{spec}' is not an hf:// id (expected hf://ORG/REPO[@REVISION][#FILE]).",
            exit_code=2,
        )
    rest = spec[len("hf://") :]
    rest, _, filename = rest.partition("#")
    repo_id, _, revision = rest.partition("@")
    return HubRef(validate_repo_id(repo_id), revision or None, filename or None)


def _describe(repo_id: str, revision: str | None, filename: str | None = None) -> str:
    where = f"hf://{repo_id}@{revision or 'main'}"
    return f"{where}#{filename}" if filename else where


def _hub_error(
    exc: Exception, repo_id: str, revision: str | None, filename: str | None
) -> EofmError:
    """Translate a huggingface_hub / network exception into one clear, token-free line."""
    from huggingface_hub import errors

    where = _describe(repo_id, revision, filename)
    # LocalEntryNotFoundError subclasses EntryNotFoundError: test it first.
    if isinstance(exc, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)):
        return EofmError(
            f"Cannot download {where}: the Hub is unreachable (or HF_HUB_OFFLINE=1) and the "
            "file is not in the local cache."
        )
    if isinstance(exc, errors.RevisionNotFoundError):
        return EofmError(f"Revision '{revision}' does not exist in Hub repo {repo_id} ({where}).")
    if isinstance(exc, errors.EntryNotFoundError):
        return EofmError(f"File '{filename}' does not exist in {where}.")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return EofmError(
            f"Hub repo {repo_id} was not found, or is private and no valid token was given ({where})."
        )
    if isinstance(exc, errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        return EofmError(f"The Hub answered HTTP {status} for {where}.")
    return EofmError(f"Cannot reach the Hub for {where}: {type(exc).__name__}.")


def _commit_of(path: Path) -> str | None:
    """The commit sha of a file in the huggingface_hub cache (``snapshots/<sha>/...``)."""
    parts = Path(path).parts
    if "snapshots" in parts:
        i = parts.index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return None


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"


def hub_offline() -> bool:
    """Whether downloads must come from the local cache only.

    True with ``HF_HUB_OFFLINE`` (or ``eofm --offline``), or when the endpoint does not
    accept a connection within :data:`PROBE_SECONDS` (probed once per process, and said
    once), instead of the client's retries.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    url = endpoint()
    if url not in _PROBED:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname or "", port), timeout=PROBE_SECONDS).close()
            _PROBED[url] = True
        except OSError:
            _PROBED[url] = False
            log.warning(
                "The Hugging Face Hub (%s) is unreachable: using the local cache only "
                "(eofm --offline or HF_HUB_OFFLINE=1 skips this check).",
                url,
            )
    return not _PROBED[url]


def download_file(repo_id: str, filename: str, revision: str | None) -> tuple[Path, str | None]:
    """Download one file at a pinned revision; returns its local path and commit sha."""
    from huggingface_hub import hf_hub_download

    try:
        path = Path(
            hf_hub_download(
                repo_id, filename, revision=revision or "main", local_files_only=hub_offline()
            )
        )
    except Exception as exc:
        raise _hub_error(exc, repo_id, revision, filename) from None
    return path, _commit_of(path)


def list_files(repo_id: str, revision: str | None) -> list[str]:
    """The files of a repo at a revision."""
    from huggingface_hub import HfApi

    if hub_offline():
        raise EofmError(
            f"Cannot list the files of {_describe(repo_id, revision)}: the Hub is unreachable "
            "(or offline mode is on)."
        )
    try:
        return list(HfApi().list_repo_files(repo_id, revision=revision or "main"))
    except Exception as exc:
        raise _hub_error(exc, repo_id, revision, None) from None


def upload_bundle(folder: Path, repo_id: str, *, revision: str | None, private: bool) -> str:
    """Create the repo (and branch) if needed and upload ``folder`` in one commit.

    The token comes only from the environment or huggingface_hub's own login; it never
    appears in a message. The model card is validated by the Hub before anything is sent.
    """
    from huggingface_hub import HfApi, ModelCard
    from huggingface_hub.utils import get_token

    if hub_offline():
        raise EofmError(f"Cannot publish to {repo_id}: the Hub ({endpoint()}) is unreachable.")
    if not get_token():
        raise EofmError(
            "No Hugging Face token: set HF_TOKEN or run 'hf auth login' before 'eofm publish'."
        )
    api = HfApi()
    try:
        api.whoami()
        ModelCard((folder / "README.md").read_text(encoding="utf-8")).validate()
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            revision=revision,
            commit_message=f"eofm publish ({', '.join(sorted(p.name for p in folder.iterdir()))})",
        )
    except EofmError:
        raise
    except ValueError as exc:  # ModelCard.validate
        raise EofmError(f"The Hub rejected the model card metadata: {exc}") from None
    except Exception as exc:
        raise _hub_error(exc, repo_id, revision, None) from None
    return info.oid
