"""Mini-batches from memory or from disk: the training hot path.

Per-cell arrays are turned into tensors once; each batch is one fancy-index per array (sparse
rows are densified per batch, never the whole matrix). This avoids a per-item Dataset and a
collate loop, which dominate the cost of small models on CPU. Train/validation splits are
row-index views over the same arrays (:meth:`TensorData.subset`), so splitting a data set
copies no rows. A matrix of an ``.h5ad`` opened backed (``adata.X`` of
``read_h5ad(..., backed="r")``) stays on disk: each batch reads its rows
(:mod:`genevae.training.disk`), one batch ahead in a thread, and the batches are the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist

from genevae.errors import GenevaeInputError
from genevae.training.disk import BackedRows, is_backed, prefetched

ArrayLike = np.ndarray | sp.spmatrix | sp.sparray
"""Also accepted: a backed matrix (anndata's ``CSRDataset`` or an ``h5py.Dataset``)."""


class _CheckedArrays(dict):
    """float32 arrays converted from a TensorData that passed its checks (shared by views)."""


@dataclass(frozen=True)
class TensorData:
    """Per-cell arrays with the same number of rows, keyed by the batch key models expect.

    ``rows`` (optional) makes this a view: the data set is rows ``rows`` of ``arrays``, in
    that order, without copying them (what :meth:`subset` returns). Use :meth:`array` for the
    rows of one array as a new array.
    """

    arrays: Mapping[str, ArrayLike]
    rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        lengths = {key: value.shape[0] for key, value in self.arrays.items()}
        if len(set(lengths.values())) > 1:
            raise GenevaeInputError(f"Batch arrays have different numbers of rows: {lengths}")
        checked = isinstance(self.arrays, _CheckedArrays)  # a view: its parent checked them
        for key, value in ({} if checked else self.arrays).items():
            if is_backed(value):
                _check_backed(key, value)
                continue
            data = value.data if sp.issparse(value) else value
            dtype = np.asarray(data).dtype
            if not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)):
                raise GenevaeInputError(
                    f"Batch array '{key}' has dtype {dtype}, not numbers; convert it to numeric "
                    "values (e.g. counts or log-normalised expression) first."
                )
            if np.issubdtype(dtype, np.floating) and not np.isfinite(data).all():
                raise GenevaeInputError(
                    f"Batch array '{key}' contains NaN or infinite values; clean the input first."
                )
        if self.rows is not None:
            n_rows = next(iter(lengths.values()), 0)
            rows = np.asarray(self.rows)
            if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
                raise GenevaeInputError(
                    f"rows must be a 1-D array of integer row indices, got {rows.dtype} "
                    f"with shape {rows.shape}."
                )
            if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
                raise GenevaeInputError(
                    f"rows must index the {n_rows} rows of the arrays (0 to {n_rows - 1}), got "
                    f"values from {rows.min()} to {rows.max()}."
                )

    def __len__(self) -> int:
        if self.rows is not None:
            return len(self.rows)
        return next(iter(self.arrays.values())).shape[0] if self.arrays else 0

    @cached_property
    def _float32_arrays(self) -> dict[str, ArrayLike]:
        """``arrays`` as float32 CSR / C-contiguous arrays (no copy when they already are).

        Cached, so every view made by :meth:`subset` shares the same arrays: a dtype
        conversion, if one is needed, happens once rather than once per split.
        """
        return _CheckedArrays({key: _as_float32(value) for key, value in self.arrays.items()})

    def subset(self, index: np.ndarray) -> TensorData:
        """Rows ``index`` (positions or a boolean mask) as a view: no rows are copied.

        Used for train/validation splits; the batches are the same as from copied rows.
        """
        n_rows = len(self)
        positions = np.arange(n_rows)[index] if self.rows is None else self.rows[index]
        return TensorData(self._float32_arrays, np.asarray(positions, dtype=np.int64))

    def array(self, key: str) -> ArrayLike:
        """The data set's rows of ``arrays[key]`` (a copy if this is a view)."""
        value = self.arrays[key]
        return value if self.rows is None else value[self.rows]


def _check_backed(key: str, value: ArrayLike) -> None:
    """The dtype and finiteness checks of in-memory arrays, reading the file in chunks."""
    if not np.issubdtype(value.dtype, np.number):
        raise GenevaeInputError(
            f"Batch array '{key}' (on disk) has dtype {value.dtype}, not numbers; convert it "
            "to numeric values first."
        )
    BackedRows(value).check_finite(key)


def _as_float32(value: ArrayLike) -> ArrayLike:
    if is_backed(value):
        return value  # converted per batch when read
    if sp.issparse(value):
        return sp.csr_matrix(value, dtype=np.float32)
    return np.ascontiguousarray(value, dtype=np.float32)


RowSource = torch.Tensor | sp.csr_matrix | BackedRows


def _as_row_source(value: ArrayLike) -> RowSource:
    if is_backed(value):
        return BackedRows(value)
    value = _as_float32(value)
    return value if sp.issparse(value) else torch.as_tensor(value)


def _rows(source: RowSource, index: np.ndarray) -> torch.Tensor:
    if isinstance(source, torch.Tensor):
        return source[torch.from_numpy(index)]
    rows = source[index]
    return torch.from_numpy(rows.toarray() if sp.issparse(rows) else rows)


class InMemoryBatches:
    """Iterable of ``dict[str, Tensor]`` batches over :class:`TensorData`.

    Shuffles with its own generator seeded by ``(seed, epoch)``; the trainer sets the epoch
    (:meth:`set_epoch`, as for a distributed sampler), so a resumed run replays exactly the
    orders of an uninterrupted one. Under DDP each process takes an interleaved shard of the
    permutation, so no sampler needs replacing. Despite the name, a backed matrix stays on
    disk: its rows are read per batch (:attr:`reads_from_disk`).
    """

    def __init__(
        self,
        data: TensorData,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise GenevaeInputError(f"batch_size must be at least 1, got {batch_size}")
        if len(data) == 0:
            raise GenevaeInputError("Cannot make batches from an empty data set (0 rows).")
        self.sources = {key: _as_row_source(value) for key, value in data.arrays.items()}
        self.rows = data.rows  # a view's rows in the shared arrays (None: all rows)
        self.n_rows = len(data)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the shuffle of ``epoch`` (the training loop calls this before each epoch)."""
        self.epoch = epoch

    def _shard(self, order: np.ndarray) -> np.ndarray:
        """This process's rows under DDP, the same number for every process.

        As torch's DistributedSampler, the order wraps around to fill the last round, so
        every process takes the same number of steps (collectives stay matched) and none is
        left with an empty split (one validation cell on two devices).
        """
        if not (dist.is_available() and dist.is_initialized()):
            return order
        world = dist.get_world_size()
        padded = np.resize(order, -(-len(order) // world) * world)
        return padded[dist.get_rank() :: world]

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return self._shard(np.arange(self.n_rows))
        rng = np.random.default_rng((self.seed, self.epoch))
        return self._shard(rng.permutation(self.n_rows))

    def _bounds(self) -> list[tuple[int, int]]:
        """Batch (start, stop) offsets; a trailing single row joins the previous batch.

        BatchNorm cannot normalise one cell in training mode, so a data set of
        ``k · batch_size + 1`` rows yields ``k`` batches, the last one row larger.
        """
        n = len(self._shard(np.arange(self.n_rows)))
        stops = list(range(self.batch_size, n + 1, self.batch_size))
        if not self.drop_last and (not stops or stops[-1] < n):
            stops.append(n)
        if len(stops) > 1 and stops[-1] - stops[-2] == 1:
            stops.pop(-2)
        starts = [0, *stops[:-1]]
        return list(zip(starts, stops, strict=True))

    def __len__(self) -> int:
        return len(self._bounds())

    @property
    def reads_from_disk(self) -> bool:
        """Whether some array is read from a backed file batch by batch."""
        return any(isinstance(source, BackedRows) for source in self.sources.values())

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        batches = self._batches()
        return prefetched(batches) if self.reads_from_disk else batches

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        order = self._order()
        for start, stop in self._bounds():
            index = np.sort(order[start:stop])
            if self.rows is not None:
                index = self.rows[index]
            yield {key: _rows(source, index) for key, source in self.sources.items()}
