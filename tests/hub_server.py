"""A small Hub-compatible HTTP server for tests: a test double, not a Hub.

No open-source Hub server installs from the package registries and runs offline (`hf-local-hub` needs a Go
binary its wheel does not ship; `olah` is a read-only mirror of the real Hub), so this module implements exactly
the endpoints that the real `huggingface_hub` client (2.x) calls when `transformers` and `huggingface_hub` push
and pull a model over `HF_ENDPOINT`, with the client's Xet transfer turned off (`HF_HUB_DISABLE_XET=1`, which
selects the Git LFS "basic" transfer).

Endpoints (`{repo}` is `namespace/name`; revisions and paths arrive URL-quoted) and the client calls behind them:

- `POST /api/repos/create`: `create_repo`, public or private; 409 (with the repo url) if it exists.
- `GET /api/models/{repo}` and `/api/models/{repo}/revision/{rev}`: `model_info` / `repo_info`.
- `GET /api/models/{repo}/tree/{rev}[/{path}]`: `list_repo_tree`.
- `POST /api/models/{repo}/branch/{branch}` and `/api/models/{repo}/tag/{rev}`: `create_branch`, `create_tag`.
- `POST /api/models/{repo}/preupload/{rev}`: the upload mode of each file: `lfs` for paths matched by the
  repo's `.gitattributes` LFS rules (the Hub's defaults are written by `create_repo`) or over 10 MB, else
  `regular`.
- `POST /{repo}.git/info/lfs/objects/batch`: the LFS batch API: a signed `PUT` URL on the storage origin and a
  verify URL per missing object; then `PUT {storage}/lfs/{oid}?sig=` (sha256 and size checked) and
  `POST /{repo}.git/info/lfs/objects/verify`: the LFS "basic" transfer.
- `POST /api/models/{repo}/commit/{branch}`: the NDJSON commit payload (`header`, `file` in base64, `lfsFile`,
  `deletedFile`, `deletedFolder`; a stale `parentCommit` answers 412).
- `HEAD`/`GET /{repo}/resolve/{rev}/{path}`: downloads, with `ETag` (the git blob id), `X-Repo-Commit` and
  `Content-Length`; an LFS file answers `302` to a signed storage URL with `X-Linked-Etag` (its sha256) and
  `X-Linked-Size`, as the Hub does. `GET {storage}/lfs/{oid}?sig=` serves the object (`Range: bytes=N-` honoured).
- `POST /api/validate-yaml`: called by `create_commit` for a `README.md`; accepted as is (this double does not
  validate card metadata).
- `GET /api/whoami-v2`: `whoami`. `GET /api/agent-harnesses`: the client's user-agent detection (an empty
  registry).

Errors use the Hub's status codes and `X-Error-Code` / `X-Error-Message` headers (`RepoNotFound`,
`RevisionNotFound`, `EntryNotFound`), which the client maps to its exception classes. A private repo is
`RepoNotFound` to anyone but its owner (401 without a token, 404 with another user's). Anything else answers 501
and is recorded in `HubServer.unhandled`, so a test can assert that the client called nothing this double does not
implement; a request the double fails on answers 500 and is recorded in `HubServer.errors`.

The server listens on 127.0.0.1 only (two ephemeral ports: the Hub API and a separate "storage" origin for LFS
objects, so the client sees the cross-origin redirect it sees on the Hub and drops its token there), keeps
everything in memory, and runs in daemon threads of the test process.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub stores files over 10 MB in LFS whatever .gitattributes says
# The LFS rules of the `.gitattributes` the Hub writes into a new model repo (abridged to the model formats).
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.bin",
        "*.ckpt",
        "*.h5",
        "*.msgpack",
        "*.npy",
        "*.onnx",
        "*.pt",
        "*.pth",
        "*.safetensors",
        "*.tar.gz",
        "*.zip",
        "*tfevents*",
    )
)


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a file, which the Hub sends as the `ETag` of a regular (non-LFS) file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer file that git stores in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class FileEntry:
    size: int
    oid: str  # git blob sha1 for regular files, sha256 for LFS files
    lfs: bool
    content: bytes | None = None  # regular files only; LFS content lives in HubState.lfs_objects

    @property
    def git_oid(self) -> str:
        """The git blob id: of the content, or of the LFS pointer for an LFS file."""
        return git_blob_sha1(lfs_pointer(self.oid, self.size)) if self.lfs else self.oid


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, FileEntry]


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # branch name -> commit oid
    tags: dict[str, str] = field(default_factory=dict)  # tag name -> commit oid

    def resolve(self, revision: str) -> Commit | None:
        for prefix, table in (("refs/heads/", self.refs), ("refs/tags/", self.tags)):
            if revision.startswith(prefix) and revision[len(prefix) :] in table:
                return self.commits[table[revision[len(prefix) :]]]
        if revision in self.refs:
            return self.commits[self.refs[revision]]
        if revision in self.tags:
            return self.commits[self.tags[revision]]
        return self.commits.get(revision)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **body):
        super().__init__(message)
        self.status, self.message, self.code, self.body = status, message, code, body


class HubState:
    """Repos, users and LFS objects, shared by the handler threads under one lock."""

    def __init__(self, tokens: dict[str, str]):
        self.tokens = dict(tokens)  # token -> user name
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content
        self.secret = secrets.token_bytes(16)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self.errors: list[str] = []  # requests this double failed on (a bug here or a payload it cannot read)
        self.truncate_downloads: dict[str, list[int]] = {}  # sha256 -> [bytes sent, times left] (fault injection)
        self._counter = 0

    def sign(self, action: str, oid: str) -> str:
        return hmac.new(self.secret, f"{action}:{oid}".encode(), "sha256").hexdigest()

    def new_commit(self, repo: Repo, parent: str | None, message: str, files: dict[str, FileEntry]) -> Commit:
        self._counter += 1
        tree = sorted((path, entry.oid) for path, entry in files.items())
        oid = hashlib.sha1(json.dumps([repo.repo_id, parent, message, tree, self._counter]).encode()).hexdigest()
        commit = Commit(oid, parent, message, files)
        repo.commits[oid] = commit
        return commit


class HubServer:
    """Starts the Hub API and the storage origin on 127.0.0.1 (ephemeral ports) in daemon threads.

    `tokens` maps access tokens to user names; a user may write only to repos in its own namespace.
    Use as a context manager, or call `close()`.
    """

    def __init__(self, tokens: dict[str, str]):
        self.state = HubState(tokens)
        self._api = ThreadingHTTPServer(("127.0.0.1", 0), _ApiHandler)
        self._storage = ThreadingHTTPServer(("127.0.0.1", 0), _StorageHandler)
        for server in (self._api, self._storage):
            server.daemon_threads = True
            server.hub = self  # type: ignore[attr-defined]
        self.endpoint = f"http://127.0.0.1:{self._api.server_address[1]}"
        self.storage_endpoint = f"http://127.0.0.1:{self._storage.server_address[1]}"
        self._threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (self._api, self._storage)]
        for thread in self._threads:
            thread.start()

    @property
    def unhandled(self) -> list[tuple[str, str]]:
        return list(self.state.unhandled)

    @property
    def requests(self) -> list[tuple[str, str]]:
        return list(self.state.requests)

    @property
    def errors(self) -> list[str]:
        return list(self.state.errors)

    def truncate_downloads_of(self, sha256: str, nbytes: int, times: int = 1) -> None:
        """Fault injection: for its next `times` downloads, the storage origin announces the full size of this LFS
        object but sends its first `nbytes` bytes only and closes the connection (a dropped connection)."""
        self.state.truncate_downloads[sha256] = [nbytes, times]

    def close(self) -> None:
        for server in (self._api, self._storage):
            server.shutdown()
            server.server_close()

    def __enter__(self) -> HubServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client expects; every answer carries Content-Length

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr access log
        pass

    @property
    def hub(self) -> HubServer:
        return self.server.hub  # type: ignore[attr-defined]

    @property
    def state(self) -> HubState:
        return self.hub.state

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, length: int | None = None):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, payload, status: int = 200):
        self.send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def send_error_json(self, error: HubError):
        headers = {"Content-Type": "application/json", "X-Error-Message": error.message}
        if error.code:
            headers["X-Error-Code"] = error.code
        self.send(error.status, json.dumps({"error": error.message, **error.body}).encode(), headers)

    def dispatch(self):
        raw_path = urlsplit(self.path).path
        with self.state.lock:
            self.state.requests.append((self.command, raw_path))
        try:
            body = self.read_body() if self.command in ("POST", "PUT") else b""
            with self.state.lock:
                handled = self.route(raw_path, parse_qs(urlsplit(self.path).query), body)
            if handled is False:
                with self.state.lock:
                    self.state.unhandled.append((self.command, raw_path))
                raise HubError(501, f"the hub test server does not implement {self.command} {raw_path}")
        except HubError as error:
            self.send_error_json(error)
        except Exception as error:  # noqa: BLE001 - answer 500 rather than drop the connection, and record it
            with self.state.lock:
                self.state.errors.append(f"{self.command} {raw_path}: {type(error).__name__}: {error}")
            self.send_error_json(HubError(500, f"hub test server error: {type(error).__name__}: {error}"))

    do_GET = do_HEAD = do_POST = do_PUT = dispatch

    def route(self, raw_path: str, query: dict, body: bytes):
        """Answers the request (under the state lock); returns False, having sent nothing, for an unknown one."""
        raise NotImplementedError


class _ApiHandler(_Handler):
    # ---- authentication and lookups -------------------------------------------------------------------------
    def user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth:
            return None
        token = auth.removeprefix("Bearer ").strip()
        if token not in self.state.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.state.tokens[token]

    def repo(self, repo_id: str, write: bool = False) -> Repo:
        repo = self.state.repos.get(repo_id)
        user = self.user()
        if repo is None or (repo.private and user != repo_id.split("/")[0]):
            raise HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        if write and user != repo_id.split("/")[0]:
            raise HubError(403 if user else 401, f"You don't have the rights to write to {repo_id}")
        return repo

    @staticmethod
    def commit(repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # ---- routing ---------------------------------------------------------------------------------------------
    def route(self, raw_path: str, query: dict, body: bytes):
        parts = [unquote(p) for p in raw_path.strip("/").split("/")]
        method = self.command
        if parts == ["api", "repos", "create"] and method == "POST":
            return self.create_repo(json.loads(body))
        if parts == ["api", "whoami-v2"] and method == "GET":
            user = self.user()
            if user is None:
                raise HubError(401, "Invalid credentials in Authorization header")
            return self.send_json({"type": "user", "name": user, "orgs": [], "auth": {"type": "access_token"}})
        if parts == ["api", "agent-harnesses"] and method == "GET":
            return self.send_json({"standardEnvVars": [], "harnesses": {}})
        if parts == ["api", "validate-yaml"] and method == "POST":
            return self.send_json({"errors": [], "warnings": []})
        if len(parts) >= 4 and parts[:2] == ["api", "models"]:
            repo_id, rest = "/".join(parts[2:4]), parts[4:]
            if not rest and method == "GET":
                return self.model_info(repo_id, "main")
            if len(rest) == 2 and rest[0] == "revision" and method == "GET":
                return self.model_info(repo_id, rest[1])
            if len(rest) >= 2 and rest[0] == "tree" and method == "GET":
                return self.tree(repo_id, rest[1], "/".join(rest[2:]), query)
            if len(rest) == 2 and rest[0] == "branch" and method == "POST":
                return self.create_branch(repo_id, rest[1], json.loads(body or b"{}"))
            if len(rest) == 2 and rest[0] == "tag" and method == "POST":
                return self.create_tag(repo_id, rest[1], json.loads(body or b"{}"))
            if len(rest) == 2 and rest[0] == "preupload" and method == "POST":
                return self.preupload(repo_id, rest[1], json.loads(body), query)
            if len(rest) == 2 and rest[0] == "commit" and method == "POST":
                return self.commit_ndjson(repo_id, rest[1], body, query)
            return False
        if len(parts) >= 2 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "batch"]:
            return self.lfs_batch(f"{parts[0]}/{parts[1][:-4]}", json.loads(body)) if method == "POST" else False
        if len(parts) >= 2 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "verify"]:
            return self.lfs_verify(f"{parts[0]}/{parts[1][:-4]}", json.loads(body)) if method == "POST" else False
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            return self.resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]))
        return False

    # ---- repos, branches, tags -------------------------------------------------------------------------------
    def create_repo(self, payload: dict):
        user = self.user()
        if user is None:
            raise HubError(401, "You must be authenticated to create a repo")
        namespace = payload.get("organization") or user
        if namespace != user:
            raise HubError(403, f"You don't have the rights to create a model under the namespace {namespace!r}")
        if payload.get("type", "model") != "model":
            raise HubError(400, "the hub test server only hosts model repos")
        repo_id = f"{namespace}/{payload['name']}"
        if repo_id in self.state.repos:
            # the Hub's 409 carries the url: `create_repo(..., exist_ok=True)` reads it
            raise HubError(409, "You already created this model repo", url=f"{self.hub.endpoint}/{repo_id}")
        private = bool(payload.get("private")) or payload.get("visibility") == "private"
        repo = Repo(repo_id, private)
        attributes = DEFAULT_GITATTRIBUTES.encode()
        first = self.state.new_commit(
            repo,
            None,
            "initial commit",
            {".gitattributes": FileEntry(len(attributes), git_blob_sha1(attributes), False, attributes)},
        )
        repo.refs["main"] = first.oid
        self.state.repos[repo_id] = repo
        return self.send_json({"url": f"{self.hub.endpoint}/{repo_id}", "name": repo_id, "id": repo_id})

    def create_branch(self, repo_id: str, branch: str, payload: dict):
        repo = self.repo(repo_id, write=True)
        if branch in repo.refs:
            raise HubError(409, f"Branch {branch!r} already exists")
        repo.refs[branch] = self.commit(repo, payload.get("startingPoint") or "main").oid
        return self.send_json({})

    def create_tag(self, repo_id: str, revision: str, payload: dict):
        repo = self.repo(repo_id, write=True)
        if payload["tag"] in repo.tags:
            raise HubError(409, f"Tag {payload['tag']!r} already exists")
        repo.tags[payload["tag"]] = self.commit(repo, revision).oid
        return self.send_json({})

    def model_info(self, repo_id: str, revision: str):
        repo = self.repo(repo_id)
        commit = self.commit(repo, revision)
        return self.send_json(
            {
                "_id": repo_id,
                "id": repo_id,
                "modelId": repo_id,
                "author": repo_id.split("/")[0],
                "sha": commit.oid,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": [{"rfilename": path} for path in sorted(commit.files)],
            }
        )

    def tree(self, repo_id: str, revision: str, path: str, query: dict):
        commit = self.commit(self.repo(repo_id), revision)
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        prefix = f"{path.rstrip('/')}/" if path else ""
        if path and not any(p.startswith(prefix) for p in commit.files):
            raise HubError(404, f"{path} does not exist on {revision}", "EntryNotFound")
        entries, folders = [], set()
        for file_path, entry in sorted(commit.files.items()):
            if not file_path.startswith(prefix):
                continue
            rest = file_path[len(prefix) :]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            if recursive:
                folders.update(prefix + "/".join(rest.split("/")[: i + 1]) for i in range(rest.count("/")))
            item = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": file_path}
            if entry.lfs:
                item["lfs"] = {
                    "oid": entry.oid,
                    "size": entry.size,
                    "pointerSize": len(lfs_pointer(entry.oid, entry.size)),
                }
            entries.append(item)
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": folder} for folder in sorted(folders)]
        return self.send_json(entries)

    # ---- upload: preupload, LFS batch and verify, commit ----------------------------------------------------
    def is_lfs(self, commit: Commit, path: str, size: int) -> bool:
        attributes = commit.files.get(".gitattributes")
        patterns = []
        if attributes is not None and attributes.content is not None:
            for line in attributes.content.decode().splitlines():
                fields = line.split()
                if len(fields) > 1 and "filter=lfs" in fields[1:]:
                    patterns.append(fields[0])
        name = path.rsplit("/", 1)[-1]
        return size > LFS_THRESHOLD or any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns)

    def preupload(self, repo_id: str, revision: str, payload: dict, query: dict):
        repo = self.repo(repo_id, write=True)
        commit = repo.resolve(revision) or self.commit(repo, "main")  # a branch created by this commit
        files = []
        for item in payload["files"]:
            existing = commit.files.get(item["path"])
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": "lfs" if self.is_lfs(commit, item["path"], item["size"]) else "regular",
                    "shouldIgnore": False,
                    "oid": existing.oid if existing else None,
                }
            )
        return self.send_json({"files": files, "commitOid": commit.oid})

    def lfs_batch(self, repo_id: str, payload: dict):
        self.repo(repo_id, write=True)
        if payload.get("operation") != "upload":
            raise HubError(400, "the hub test server only implements LFS uploads through the batch API")
        if "basic" not in payload.get("transfers", ["basic"]):
            raise HubError(400, "the hub test server only implements the LFS 'basic' transfer")
        objects = []
        for obj in payload["objects"]:
            oid, size = obj["oid"], obj["size"]
            entry = {"oid": oid, "size": size, "authenticated": True}
            if oid not in self.state.lfs_objects:
                entry["actions"] = {
                    "upload": {
                        "href": f"{self.hub.storage_endpoint}/lfs/{oid}?size={size}&sig={self.state.sign('put', oid)}"
                    },
                    "verify": {"href": f"{self.hub.endpoint}/{repo_id}.git/info/lfs/objects/verify"},
                }
            objects.append(entry)
        return self.send_json({"transfer": "basic", "objects": objects})

    def lfs_verify(self, repo_id: str, payload: dict):
        self.repo(repo_id, write=True)
        content = self.state.lfs_objects.get(payload["oid"])
        if content is None or len(content) != payload["size"]:
            raise HubError(404, f"LFS object {payload['oid']} was not uploaded")
        return self.send_json({})

    def commit_ndjson(self, repo_id: str, revision: str, body: bytes, query: dict):
        repo = self.repo(repo_id, write=True)
        if query.get("create_pr"):
            raise HubError(400, "the hub test server does not implement pull requests (create_pr)")
        if revision not in repo.refs:
            raise HubError(404, f"Invalid rev id: {revision} (commits go to a branch)", "RevisionNotFound")
        head = repo.commits[repo.refs[revision]]
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        if header.get("parentCommit") not in (None, head.oid):
            raise HubError(412, f"A commit has happened since {header['parentCommit']}: the head is {head.oid}")
        files = dict(head.files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, f"unsupported encoding {value.get('encoding')!r}")
                content = base64.b64decode(value["content"])
                files[value["path"]] = FileEntry(len(content), git_blob_sha1(content), False, content)
            elif key == "lfsFile":
                content = self.state.lfs_objects.get(value["oid"])
                if content is None or len(content) != value["size"]:
                    raise HubError(422, f"LFS object {value['oid']} for {value['path']} was not uploaded")
                files[value["path"]] = FileEntry(value["size"], value["oid"], True)
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                for path in [p for p in files if p.startswith(prefix)]:
                    del files[path]
            else:
                raise HubError(400, f"the hub test server does not implement commit operation {key!r}")
        commit = self.state.new_commit(repo, head.oid, header["summary"], files)
        repo.refs[revision] = commit.oid
        return self.send_json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self.hub.endpoint}/{repo_id}/commit/{commit.oid}",
                "pullRequestUrl": None,
            }
        )

    # ---- download --------------------------------------------------------------------------------------------
    def resolve(self, repo_id: str, revision: str, path: str):
        repo = self.repo(repo_id)
        commit = self.commit(repo, revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        headers = {"X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes"}
        if entry.lfs:
            location = f"{self.hub.storage_endpoint}/lfs/{entry.oid}?sig={self.state.sign('get', entry.oid)}"
            headers.update(
                {
                    "Location": location,
                    "X-Linked-Etag": f'"{entry.oid}"',
                    "X-Linked-Size": str(entry.size),
                    "ETag": f'"{entry.git_oid}"',
                }
            )
            return self.send(302, b"", headers)
        headers.update({"ETag": f'"{entry.oid}"', "Content-Type": "application/octet-stream"})
        return self.send(200, entry.content, headers)


class _StorageHandler(_Handler):
    """The LFS object store (a separate origin, like the Hub's CDN): signed URLs only, no token."""

    def route(self, raw_path: str, query: dict, body: bytes):
        parts = raw_path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "lfs":
            return False
        oid, method = parts[1], self.command
        action = "put" if method == "PUT" else "get"
        if not hmac.compare_digest(query.get("sig", [""])[0], self.state.sign(action, oid)):
            raise HubError(403, "bad or missing signature")
        if method == "PUT":
            if hashlib.sha256(body).hexdigest() != oid or len(body) != int(query.get("size", ["-1"])[0]):
                raise HubError(400, f"uploaded content does not match LFS object {oid}")
            self.state.lfs_objects[oid] = body
            return self.send(200, b"", {"ETag": f'"{oid}"'})
        if method not in ("GET", "HEAD"):
            return False
        content = self.state.lfs_objects.get(oid)
        if content is None:
            raise HubError(404, f"no LFS object {oid}")
        start = 0
        range_header = self.headers.get("Range")
        if range_header:
            if not (range_header.startswith("bytes=") and range_header.endswith("-")):
                raise HubError(416, f"the hub test server only implements open ranges 'bytes=N-', not {range_header}")
            start = int(range_header[len("bytes=") : -1])
        status = 206 if range_header else 200
        headers = {"Content-Type": "application/octet-stream", "ETag": f'"{oid}"', "Accept-Ranges": "bytes"}
        if range_header:
            headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
        fault = self.state.truncate_downloads.get(oid)
        if fault and fault[1] > 0 and method == "GET":
            # announce everything, send less, close: what a dropped connection looks like to the client
            fault[1] -= 1
            headers["Connection"] = "close"
            self.close_connection = True
            return self.send(status, content[start : max(start, fault[0])], headers, length=len(content) - start)
        return self.send(status, content[start:], headers)


__all__ = ["HubServer", "git_blob_sha1", "lfs_pointer"]


if __name__ == "__main__":  # try the publishing workflow by hand: HF_ENDPOINT=<printed url> HF_HUB_DISABLE_XET=1
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Run the Hub test double on 127.0.0.1 until interrupted.")
    parser.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="TOKEN:USER",
        help="an access token and its user name (repeatable); default hf_local:alice",
    )
    tokens = dict(item.split(":", 1) for item in parser.parse_args().token or ["hf_local:alice"])
    with HubServer(tokens) as hub:
        print(f"HF_ENDPOINT={hub.endpoint} HF_HUB_DISABLE_XET=1; tokens: {tokens}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
