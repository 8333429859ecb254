"""A loopback Hugging Face Hub for tests: the real HTTP API, in memory, on 127.0.0.1.

It speaks the routes the real ``huggingface_hub`` client uses (GUIDE §3), so tests drive
the genuine client end to end: repos (model and dataset, public or private), branches and
commits, file trees, regular (non-LFS) uploads as NDJSON commits, and downloads with
``X-Repo-Commit``, ``ETag`` and ``Range``. Errors carry the Hub's ``X-Error-Code``
headers, so the client raises its usual exception types.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse


def git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]
    parent: str | None
    message: str


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)  # commit shas of main, oldest first


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class LoopbackHub:
    """In-memory Hub on a free 127.0.0.1 port; ``start()`` serves it from a daemon thread."""

    def __init__(self, token: str = "hf_test_token") -> None:
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests_seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._counter = 0
        self._server: ThreadingHTTPServer | None = None
        self.endpoint = ""

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> LoopbackHub:
        hub = self

        class Handler(_Handler):
            state = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    # -- state used by tests -----------------------------------------------------------
    def create(self, repo_id: str, *, repo_type: str = "model", private: bool = False) -> Repo:
        with self._lock:
            key = (repo_type, repo_id)
            if key not in self.repos:
                repo = Repo(repo_id, repo_type, private)
                self.repos[key] = repo
                self._commit(repo, "main", {}, set(), "initial commit")
            return self.repos[key]

    def add_commit(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        revision: str = "main",
        private: bool = False,
        message: str = "seed",
        repo_type: str = "model",
    ) -> str:
        repo = self.create(repo_id, repo_type=repo_type, private=private)
        with self._lock:
            return self._commit(repo, revision, files, set(), message)

    def delete_file(self, repo_id: str, path: str, *, revision: str = "main") -> str:
        repo = self.repos[("model", repo_id)]
        with self._lock:
            return self._commit(repo, revision, {}, {path}, f"delete {path}")

    def commits(self, repo_id: str, repo_type: str = "model") -> list[str]:
        return list(self.repos[(repo_type, repo_id)].history)

    def _commit(
        self, repo: Repo, branch: str, files: dict[str, bytes], deleted: set[str], message: str
    ) -> str:
        parent = repo.branches.get(branch) or repo.branches.get("main")
        content = dict(repo.commits[parent].files) if parent else {}
        for path in deleted:
            content.pop(path, None)
        content.update(files)
        self._counter += 1
        sha = hashlib.sha1(
            f"{repo.repo_id}:{branch}:{self._counter}:{message}".encode()
        ).hexdigest()
        repo.commits[sha] = Commit(sha, content, parent, message)
        repo.branches[branch] = sha
        if branch == "main":
            repo.history.append(sha)
        return sha

    # -- lookups ------------------------------------------------------------------------
    def repo(self, repo_type: str, repo_id: str, authorized: bool) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        if repo.private and not authorized:
            raise HubError(401, "Repository not found", "RepoNotFound")
        return repo

    @staticmethod
    def resolve(repo: Repo, revision: str) -> Commit:
        revision = unquote(revision)
        if revision in repo.branches:
            return repo.commits[repo.branches[revision]]
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            matches = [c for sha, c in repo.commits.items() if sha.startswith(revision)]
            if len(matches) == 1:
                return matches[0]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


class _Handler(BaseHTTPRequestHandler):
    state: LoopbackHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # silence the default logging
        pass

    # -- plumbing -----------------------------------------------------------------------
    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.state.token}"

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        head: bool = False,
    ) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, payload: object, *, head: bool = False) -> None:
        self._send(
            status, json.dumps(payload).encode(), {"Content-Type": "application/json"}, head=head
        )

    def _error(self, err: HubError, *, head: bool = False) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": err.message}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._send(err.status, json.dumps({"error": err.message}).encode(), headers, head=head)

    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        path, query = url.path, parse_qs(url.query)  # groups are unquoted by each route
        self.state.requests_seen.append((method, path))
        head = method == "HEAD"
        try:
            for pattern, route_method, handler in ROUTES:
                match = re.fullmatch(pattern, path)
                if match and (route_method == method or (route_method == "GET" and head)):
                    handler(self, match, query, head)
                    return
            raise HubError(404, f"no route for {method} {path}")
        except HubError as err:
            self._error(err, head=head)

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    # -- routes -------------------------------------------------------------------------
    def whoami(self, match: re.Match, query: dict, head: bool) -> None:
        if not self._authorized():
            raise HubError(401, "Invalid credentials in Authorization header")
        self._json(
            200,
            {
                "type": "user",
                "name": "tester",
                "orgs": [],
                "auth": {"accessToken": {"displayName": "test", "role": "write"}},
            },
            head=head,
        )

    def create_repo(self, match: re.Match, query: dict, head: bool) -> None:
        if not self._authorized():
            raise HubError(401, "Invalid credentials in Authorization header")
        body = json.loads(self._body() or b"{}")
        name, org = body.get("name", ""), body.get("organization")
        repo_id = f"{org}/{name}" if org else (name if "/" in name else f"tester/{name}")
        repo_type = body.get("type") or "model"
        if (repo_type, repo_id) in self.state.repos:
            self._json(
                409,
                {
                    "error": "You already created this model repo",
                    "url": f"{self.state.endpoint}/{repo_id}",
                },
            )
            return
        private = bool(body.get("private")) or body.get("visibility") == "private"
        self.state.create(repo_id, repo_type=repo_type, private=private)
        self._json(200, {"url": f"{self.state.endpoint}/{repo_id}", "name": repo_id})

    def repo_info(self, match: re.Match, query: dict, head: bool) -> None:
        repo_type = match["type"].rstrip("s")
        repo = self.state.repo(repo_type, match["repo"], self._authorized())
        commit = self.state.resolve(repo, match["rev"] or "main")
        self._json(
            200,
            {
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": commit.sha,
                "private": repo.private,
                "siblings": [{"rfilename": p} for p in sorted(commit.files)],
                "lastModified": "2026-01-01T00:00:00.000Z",
                "tags": [],
            },
            head=head,
        )

    def tree(self, match: re.Match, query: dict, head: bool) -> None:
        repo = self.state.repo(match["type"].rstrip("s"), match["repo"], self._authorized())
        commit = self.state.resolve(repo, match["rev"])
        prefix = unquote(match["path"] or "").strip("/")
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries, folders = [], set()
        for path in sorted(commit.files):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1 :] if prefix else path
            if not recursive and "/" in rest:
                folders.add((f"{prefix}/" if prefix else "") + rest.split("/", 1)[0])
                continue
            data = commit.files[path]
            entries.append(
                {"type": "file", "path": path, "size": len(data), "oid": git_blob_sha1(data)}
            )
        if recursive:
            for path in commit.files:
                if prefix and not path.startswith(prefix + "/"):
                    continue
                parts = path.split("/")[:-1]
                for i in range(len(prefix.split("/")) if prefix else 0, len(parts)):
                    folders.add("/".join(parts[: i + 1]))
        entries += [
            {"type": "directory", "path": f, "oid": "0" * 40, "size": 0} for f in sorted(folders)
        ]
        if prefix and not entries:
            raise HubError(404, f"{prefix} does not exist", "EntryNotFound")
        self._json(200, entries, head=head)

    def preupload(self, match: re.Match, query: dict, head: bool) -> None:
        if not self._authorized():
            raise HubError(401, "Invalid credentials in Authorization header")
        repo = self.state.repo(match["type"].rstrip("s"), match["repo"], True)
        body = json.loads(self._body() or b"{}")
        commit = repo.commits.get(repo.branches.get(unquote(match["rev"]), ""))
        files = []
        for f in body.get("files", []):
            oid = (
                git_blob_sha1(commit.files[f["path"]])
                if commit and f["path"] in commit.files
                else None
            )
            files.append(
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": oid}
            )
        self._json(200, {"files": files, "commitOid": commit.sha if commit else None})

    def commit(self, match: re.Match, query: dict, head: bool) -> None:
        if not self._authorized():
            raise HubError(401, "Invalid credentials in Authorization header")
        repo = self.state.repo(match["type"].rstrip("s"), match["repo"], True)
        branch = unquote(match["rev"])
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        summary, files, deleted = "commit", {}, set()
        for line in self._body().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value.get("summary", summary)
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                deleted.add(value["path"])
            else:
                raise HubError(400, f"unsupported commit operation {key}")
        with self.state._lock:
            sha = self.state._commit(repo, branch, files, deleted, summary)
        self._json(
            200,
            {
                "commitOid": sha,
                "commitUrl": f"{self.state.endpoint}/{repo.repo_id}/commit/{sha}",
                "pullRequestUrl": None,
            },
        )

    def resolve_file(self, match: re.Match, query: dict, head: bool) -> None:
        repo_type = (match["type"] or "models").rstrip("s")
        repo = self.state.repo(repo_type, match["repo"], self._authorized())
        commit = self.state.resolve(repo, match["rev"])
        path = unquote(match["path"])
        if path not in commit.files:
            raise HubError(404, "Entry not found", "EntryNotFound")
        data = commit.files[path]
        headers = {
            "X-Repo-Commit": commit.sha,
            "ETag": f'"{git_blob_sha1(data)}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        status = 200
        ranged = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if ranged and not head:
            start = int(ranged[1]) if ranged[1] else max(0, len(data) - int(ranged[2]))
            end = int(ranged[2]) if ranged[1] and ranged[2] else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        self._send(status, data, headers, head=head)

    def validate_yaml(self, match: re.Match, query: dict, head: bool) -> None:
        """Check a model card's YAML front matter like the Hub's metadata validation."""
        import yaml

        body = json.loads(self._body() or b"{}")
        content = body.get("content", "")
        front = re.match(r"^---\n(.*?)\n---", content, re.S)
        errors = []
        try:
            meta = yaml.safe_load(front[1]) if front else {}
        except yaml.YAMLError as exc:
            meta, errors = {}, [f"invalid YAML: {exc}"]
        if not isinstance(meta, dict):
            errors.append("metadata must be a mapping")
        else:
            for key in ("license", "library_name", "base_model", "pipeline_tag"):
                if key in meta and not isinstance(meta[key], str):
                    errors.append(f'"{key}" must be a string')
            for key in ("tags", "datasets"):
                if key in meta and not all(isinstance(t, str) for t in meta[key]):
                    errors.append(f'"{key}" must be a list of strings')
            for entry in meta.get("model-index", []) or []:
                for result in entry.get("results", []):
                    for metric in result.get("metrics", []):
                        if not {"type", "value"} <= set(metric):
                            errors.append('"model-index" metrics need "type" and "value"')
        if errors:
            self._send(400, "\n".join(errors).encode(), {"Content-Type": "text/plain"})
            return
        self._json(200, {"errors": [], "warnings": []})

    def create_branch(self, match: re.Match, query: dict, head: bool) -> None:
        if not self._authorized():
            raise HubError(401, "Invalid credentials in Authorization header")
        repo = self.state.repo(match["type"].rstrip("s"), match["repo"], True)
        branch = unquote(match["branch"])
        body = json.loads(self._body() or b"{}")
        if branch in repo.branches:
            self._json(409, {"error": f"Branch {branch} already exists"})
            return
        start = self.state.resolve(repo, body.get("startingPoint") or "main")
        repo.branches[branch] = start.sha
        self._json(200, {})


_REPO = r"(?P<repo>[^/]+/[^/]+)"
ROUTES = [
    (r"/api/whoami-v2", "GET", _Handler.whoami),
    (r"/api/repos/create", "POST", _Handler.create_repo),
    (r"/api/validate-yaml", "POST", _Handler.validate_yaml),
    (
        rf"/api/(?P<type>models|datasets)/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?",
        "GET",
        _Handler.tree,
    ),
    (
        rf"/api/(?P<type>models|datasets)/{_REPO}/preupload/(?P<rev>[^/]+)",
        "POST",
        _Handler.preupload,
    ),
    (rf"/api/(?P<type>models|datasets)/{_REPO}/commit/(?P<rev>[^/]+)", "POST", _Handler.commit),
    (
        rf"/api/(?P<type>models|datasets)/{_REPO}/branch/(?P<branch>[^/]+)",
        "POST",
        _Handler.create_branch,
    ),
    (
        rf"/api/(?P<type>models|datasets)/{_REPO}(?:/revision/(?P<rev>[^/]+))?",
        "GET",
        _Handler.repo_info,
    ),
    (
        rf"/(?:(?P<type>datasets)/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)",
        "GET",
        _Handler.resolve_file,
    ),
]
