"""Execution file storage on the local filesystem, addressed by ``kestra:///`` URIs.

A URI's path mirrors the storage layout: ``kestra:///<namespace path>/<flow>/executions/
<execution id>/tasks/<task id>/<name>``. Resolving a URI never leaves the storage root.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path, PurePosixPath

from flowhawk.errors import FlowhawkError

SCHEME = "kestra://"


class StorageError(FlowhawkError):
    pass


class FileStorage:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def execution_prefix(self, namespace: str, flow_id: str, execution_id: str) -> str:
        return "/".join([*namespace.split("."), flow_id, "executions", execution_id])

    def path_for(self, uri: str) -> Path:
        if not uri.startswith(SCHEME):
            raise StorageError(f"not a storage URI: {uri!r} (expected kestra:///...)")
        rel = PurePosixPath(uri[len(SCHEME) :].lstrip("/"))
        if any(part in ("..", "") for part in rel.parts) or rel.is_absolute():
            raise StorageError(f"storage URI leaves the storage root: {uri!r}")
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root):
            raise StorageError(f"storage URI leaves the storage root: {uri!r}")
        return path

    def uri_for(self, path: Path) -> str:
        rel = Path(path).resolve().relative_to(self.root)
        return SCHEME + "/" + rel.as_posix()

    def new_path(self, prefix: str, name: str) -> tuple[Path, str]:
        """A fresh, unused path under ``prefix`` keeping ``name`` as the file name."""
        safe = PurePosixPath(name).name or "file"
        if safe in (".", ".."):
            safe = "file"
        directory = self.root / prefix / uuid.uuid4().hex[:12]
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / safe
        return path, self.uri_for(path)

    def put(self, prefix: str, local: Path, name: str | None = None) -> str:
        path, uri = self.new_path(prefix, name or Path(local).name)
        shutil.copyfile(local, path)
        return uri

    def delete_prefix(self, prefix: str) -> int:
        directory = (self.root / prefix).resolve()
        if not directory.is_relative_to(self.root) or not directory.exists():
            return 0
        count = sum(1 for p in directory.rglob("*") if p.is_file())
        shutil.rmtree(directory, ignore_errors=True)
        return count

    def list_prefix(self, prefix: str) -> list[str]:
        directory = (self.root / prefix).resolve()
        if not directory.exists():
            return []
        return sorted(self.uri_for(p) for p in directory.rglob("*") if p.is_file())
