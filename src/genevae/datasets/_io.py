"""Shared machinery of the genevae Kedro datasets: fsspec set-up, staging and atomic saves.

Every save is written to a temporary sibling first and moved into place only when complete,
so a crash mid-save never leaves a half-written artifact or damages the previous version.
Remote protocols are staged through a local temporary copy because h5py and safetensors
need real files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import fsspec
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

from genevae.errors import GenevaeInputError

_DI = TypeVar("_DI")
_DO = TypeVar("_DO")


class DatasetInputError(GenevaeInputError, DatasetError):
    """A stored artifact is missing, corrupt or of the wrong kind.

    It is both a `GenevaeInputError` (bad input, message says how to fix it) and a Kedro
    `DatasetError`, so Kedro passes it through unchanged instead of re-wrapping it.
    """


def _temporary_sibling(target: Path, kind: str) -> Path:
    """A hidden, unique name next to ``target`` that the versioning glob never matches."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.{kind}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_local_path(target: Path, *, is_dir: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it onto ``target`` only on success.

    A file is committed with `os.replace`, which is atomic on POSIX and Windows. A directory
    that already exists is first renamed aside, then replaced, then deleted, so at every
    moment either the old or the new complete directory is on disk under a known name.
    On failure the temporary path (and a parent folder this call created) is removed.
    """
    target = Path(target)
    created_parent = not target.parent.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _temporary_sibling(target, "tmp")
    if is_dir:
        staging.mkdir()
    try:
        yield staging
        _commit(staging, target, is_dir=is_dir)
    except BaseException:
        _remove(staging)
        if created_parent and not any(target.parent.iterdir()):
            target.parent.rmdir()
        raise


def _commit(staging: Path, target: Path, *, is_dir: bool) -> None:
    if not is_dir or not target.exists():
        os.replace(staging, target)
        return
    previous = _temporary_sibling(target, "old")
    os.replace(target, previous)
    os.replace(staging, target)
    _remove(previous)


class FsspecVersionedDataset(AbstractVersionedDataset[_DI, _DO]):
    """Common base: one local-or-fsspec path, load/save args, atomic saves, staging.

    Subclasses implement ``load``/``save`` with :meth:`_local_load_path` and
    :meth:`_atomic_save_path`, which hide the difference between local and remote storage.
    """

    DEFAULT_LOAD_ARGS: dict[str, Any] = {}
    DEFAULT_SAVE_ARGS: dict[str, Any] = {}
    IS_DIRECTORY: bool = False

    def __init__(
        self,
        *,
        filepath: str,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **(deepcopy(credentials) or {}), **(fs_args or {}))
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )
        self._load_args = {**deepcopy(self.DEFAULT_LOAD_ARGS), **(load_args or {})}
        self._save_args = {**deepcopy(self.DEFAULT_SAVE_ARGS), **(save_args or {})}

    @property
    def is_local(self) -> bool:
        """True when the data lives on the local file system (no staging needed)."""
        return self._protocol == "file"

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": self._filepath,
            "protocol": self._protocol,
            "load_args": self._load_args,
            "save_args": self._save_args,
            "version": self._version,
        }

    def _exists(self) -> bool:
        try:
            load_path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return self._fs.exists(load_path)

    def _release(self) -> None:
        super()._release()
        self._invalidate_cache()

    def _invalidate_cache(self) -> None:
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))

    def _load_path_str(self) -> str:
        """The (versioned) path to load, raising a clear error when nothing is there."""
        load_path = get_filepath_str(self._get_load_path(), self._protocol)
        if not self._fs.exists(load_path):
            raise DatasetInputError(
                f"'{load_path}' does not exist. Run the pipeline that produces it, or fix "
                f"the filepath of this catalog entry."
            )
        return load_path

    @contextmanager
    def _local_load_path(self, load_path: str) -> Iterator[Path]:
        """Yield a local path holding ``load_path`` (a temporary copy when remote)."""
        if self.is_local:
            yield Path(load_path)
            return
        with tempfile.TemporaryDirectory(prefix="genevae-load-") as tmp:
            local = Path(tmp) / PurePosixPath(load_path).name
            self._fs.get(load_path, str(local), recursive=self.IS_DIRECTORY)
            yield local

    @contextmanager
    def _atomic_save_path(self) -> Iterator[Path]:
        """Yield a local path to write into; it appears at the save path only when complete."""
        save_path = get_filepath_str(self._get_save_path(), self._protocol)
        if self.is_local:
            with atomic_local_path(Path(save_path), is_dir=self.IS_DIRECTORY) as staging:
                yield staging
        else:
            with tempfile.TemporaryDirectory(prefix="genevae-save-") as tmp:
                local = Path(tmp) / PurePosixPath(save_path).name
                if self.IS_DIRECTORY:
                    local.mkdir()
                yield local
                self._upload(local, save_path)
        self._invalidate_cache()

    def _upload(self, local: Path, save_path: str) -> None:
        """Upload beside the target, then move: readers never see a partial object."""
        parent, name = save_path.rsplit("/", 1) if "/" in save_path else ("", save_path)
        staging = f"{parent}/.{name}.{uuid.uuid4().hex[:12]}.tmp"
        try:
            self._fs.put(str(local), staging, recursive=self.IS_DIRECTORY)
            if self._fs.exists(save_path):
                self._fs.rm(save_path, recursive=self.IS_DIRECTORY)
            self._fs.mv(staging, save_path, recursive=self.IS_DIRECTORY)
        except BaseException:
            if self._fs.exists(staging):
                self._fs.rm(staging, recursive=self.IS_DIRECTORY)
            raise
