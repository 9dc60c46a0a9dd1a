"""Synthetic inputs at the papers' sizes (timing needs realistic shapes, not biology)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# Reactome (674 sets) on Kang et al.'s 6,998 genes, size-filtered 5–1,000 as VEGA: median 13
# genes per module, mean 23 (0.33% of genes). A log-normal with that median and mean.
REACTOME_MEDIAN_SIZE = 13.0
REACTOME_MEAN_SIZE = 23.0
CHUNK_CELLS = 10_000


def reactome_like_mask(
    n_genes: int, n_modules: int, rng: np.random.Generator, n_fully_connected: int = 1
) -> np.ndarray:
    """genes × modules 0/1 mask: Reactome-sized modules plus fully connected extra nodes."""
    mu = np.log(REACTOME_MEDIAN_SIZE)
    sigma = np.sqrt(2.0 * np.log(REACTOME_MEAN_SIZE / REACTOME_MEDIAN_SIZE))
    n_sets = n_modules - n_fully_connected
    sizes = np.clip(np.round(rng.lognormal(mu, sigma, size=n_sets)), 5, min(1000, n_genes))
    mask = np.zeros((n_genes, n_modules), dtype=np.float32)
    for column, size in enumerate(sizes.astype(int)):
        mask[rng.choice(n_genes, size=size, replace=False), column] = 1.0
    mask[:, n_sets:] = 1.0
    return mask


def _hits(
    rng: np.random.Generator, n_cells: int, detection: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of the detected entries, drawn in row chunks.

    The same random stream and result as one ``n_cells × n_genes`` draw, without that
    dense matrix in memory (4 GB at 200,000 × 5,000).
    """
    rows, cols = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)]
    for start in range(0, n_cells, CHUNK_CELLS):
        n_rows = min(CHUNK_CELLS, n_cells - start)
        chunk_rows, chunk_cols = np.nonzero(
            rng.random((n_rows, len(detection)), dtype=np.float32) < detection[None, :]
        )
        rows.append(chunk_rows + start)
        cols.append(chunk_cols)
    return np.concatenate(rows), np.concatenate(cols)


def sparse_counts(
    n_cells: int, n_genes: int, density: float, rng: np.random.Generator
) -> sp.csr_matrix:
    """UMI-like CSR counts (float32): per-gene detection rates around ``density``, values ≥ 1."""
    detection = np.clip(rng.lognormal(np.log(density), 1.0, size=n_genes), 0.0, 0.9)
    detection *= density / detection.mean()
    rows, cols = _hits(rng, n_cells, detection.astype(np.float32))
    values = (1 + rng.geometric(0.5, size=rows.size)).astype(np.float32)
    return sp.csr_matrix((values, (rows, cols)), shape=(n_cells, n_genes), dtype=np.float32)


def log_normalise(counts: sp.csr_matrix, target_sum: float = 1e4) -> sp.csr_matrix:
    """log1p(counts scaled to ``target_sum`` per cell), kept sparse."""
    library = np.asarray(counts.sum(axis=1)).ravel()
    scaled = sp.diags((target_sum / np.maximum(library, 1.0)).astype(np.float32)) @ counts
    scaled = sp.csr_matrix(scaled, dtype=np.float32)
    scaled.data = np.log1p(scaled.data)
    return scaled


def tybalt_arrays(n_samples: int, n_genes: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Zero-one scaled bulk expression (what Tybalt reads)."""
    return {"x": rng.random((n_samples, n_genes), dtype=np.float32)}


def vega_arrays(
    n_cells: int, n_genes: int, rng: np.random.Generator, density: float = 0.06
) -> dict[str, sp.csr_matrix]:
    """Log-normalised sparse expression, as the vega pipeline feeds it."""
    return {"x": log_normalise(sparse_counts(n_cells, n_genes, density, rng))}


def gpo_arrays(
    n_cells: int, n_genes: int, n_nodes: int, rng: np.random.Generator, density: float = 0.1
) -> dict[str, np.ndarray | sp.csr_matrix]:
    """Every batch key GPO-VAE's loss reads, shaped like the Adamson model input."""
    counts = sparse_counts(n_cells, n_genes, density, rng)
    perturbed = rng.integers(-1, n_nodes // 5, size=n_cells)  # -1: control cells
    dosage = np.zeros((n_cells, n_nodes), dtype=np.float32)
    dosage[perturbed >= 0, perturbed[perturbed >= 0]] = 1.0
    qc = (rng.random(n_cells) < 0.15).astype(np.float32)
    has_cf = (rng.random(n_cells) < 0.8).astype(np.float32)
    return {
        "counts": counts,
        "cf_x": sparse_counts(n_cells, n_genes, density, rng),
        "library": np.asarray(counts.sum(axis=1), dtype=np.float32).reshape(-1, 1),
        "dosage": dosage,
        "delta_x": rng.random((n_cells, n_nodes), dtype=np.float32),
        "perturbation_weight": np.full((n_cells, 1), 1.0 / 400.0, dtype=np.float32),
        "qc": qc.reshape(-1, 1),
        "qc_weight": (qc / max(qc.sum(), 1.0)).reshape(-1, 1),
        "has_cf": has_cf.reshape(-1, 1),
    }
