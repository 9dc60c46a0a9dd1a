"""Save a large AnnData through AnnDataDataset; a test SIGKILLs this process mid-write.

Run as ``python -m tests.reliability.save_until_killed FILEPATH [--save-version V]``.
"""

from __future__ import annotations

import argparse

import numpy as np
from anndata import AnnData
from kedro.io.core import Version

from genevae.datasets.anndata_dataset import AnnDataDataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("filepath")
    parser.add_argument("--save-version")
    parser.add_argument("--n-obs", type=int, default=40_000)
    args = parser.parse_args()
    # ~160 MB of incompressible float32, gzip-compressed: the write takes seconds.
    adata = AnnData(X=np.random.default_rng(0).random((args.n_obs, 1000), dtype=np.float32))
    version = Version(None, args.save_version) if args.save_version else None
    dataset = AnnDataDataset(
        filepath=args.filepath, version=version, save_args={"compression": "gzip"}
    )
    dataset.save(adata)


if __name__ == "__main__":
    main()
