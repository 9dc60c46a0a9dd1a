"""Synthetic data sets with planted ground truth, the first line of tests for every model.

Two generators:

- :func:`make_module_dataset`: single-cell counts from gene modules, where a known subset of
  modules is up-regulated in stimulated cells (what VEGA's differential activity must find).
- :func:`make_perturbseq_from_grn`: a CRISPRi Perturb-seq screen drawn from a known signed
  gene regulatory network (what GPO-VAE's GRN inference must recover).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from genevae.errors import GenevaeInputError

CONTROL_LABEL = "non-targeting"
_NB_DISPERSION = 5.0  # inverse overdispersion of the negative binomial; UMI-like noise


@dataclass(frozen=True)
class SyntheticModules:
    """Counts with planted modules: ``differential_modules`` are up in stimulated cells."""

    adata: ad.AnnData
    gene_sets: dict[str, list[str]]
    differential_modules: list[str]


@dataclass(frozen=True)
class SyntheticPerturbseq:
    """A Perturb-seq screen with its true regulator → target edges (signed weights)."""

    adata: ad.AnnData
    edges: pd.DataFrame
    control_label: str


def _negative_binomial(rng: np.random.Generator, mean: np.ndarray) -> np.ndarray:
    """Draw NB counts with the given mean and a fixed dispersion (gamma-Poisson mixture)."""
    rate = rng.gamma(shape=_NB_DISPERSION, scale=mean / _NB_DISPERSION)
    return rng.poisson(rate).astype(np.float32)


def _log_normalise(counts: np.ndarray, target_sum: float = 1e4) -> np.ndarray:
    """log1p(counts scaled to ``target_sum`` per cell), as scanpy's normalize_total + log1p."""
    library = counts.sum(axis=1, keepdims=True)
    scaled = counts / np.maximum(library, 1.0) * target_sum
    return np.log1p(scaled).astype(np.float32)


def _draw_module_membership(
    rng: np.random.Generator,
    n_genes: int,
    n_modules: int,
    n_differential: int,
    genes_per_module: tuple[int, int],
    log_uniform_sizes: bool = False,
) -> list[np.ndarray]:
    """Gene indices per module: differential modules get disjoint cores, null modules share genes.

    Differential modules are the first ``n_differential`` and draw their cores from a reserved
    block of genes no null module touches; each also borrows about 10% of its genes from the
    null pool, so modules overlap a little while the planted signal stays clean. Sizes are
    uniform in ``genes_per_module``, or log-uniform (many small modules, a few large ones, as
    in Reactome) with ``log_uniform_sizes``.
    """
    low, high = genes_per_module
    if not 1 <= low <= high:
        raise GenevaeInputError(
            f"genes_per_module={genes_per_module!r} must be (low, high) with 1 <= low <= high."
        )
    if not 0 <= n_differential <= n_modules:
        raise GenevaeInputError(
            f"n_differential={n_differential} must be between 0 and n_modules={n_modules}."
        )
    if log_uniform_sizes:
        sizes = np.exp(rng.uniform(np.log(low), np.log(high + 1), size=n_modules)).astype(int)
    else:
        sizes = rng.integers(low, high + 1, size=n_modules)
    n_borrowed = np.maximum(sizes[:n_differential] // 10, 0)
    n_reserved = int((sizes[:n_differential] - n_borrowed).sum())
    if n_reserved + high > n_genes:
        raise GenevaeInputError(
            f"n_genes={n_genes} is too small for {n_differential} differential modules of up to "
            f"{high} genes plus a null pool; increase n_genes or lower genes_per_module."
        )
    order = rng.permutation(n_genes)
    reserved, null_pool = order[:n_reserved], order[n_reserved:]
    modules, start = [], 0
    for size, borrowed in zip(sizes[:n_differential], n_borrowed, strict=True):
        core = reserved[start : start + size - borrowed]
        start += size - borrowed
        extra = rng.choice(null_pool, size=borrowed, replace=False)
        modules.append(np.sort(np.concatenate([core, extra])))
    for size in sizes[n_differential:]:
        modules.append(np.sort(rng.choice(null_pool, size=size, replace=False)))
    return modules


def _membership_matrix(modules: list[np.ndarray], n_genes: int) -> sp.csr_matrix:
    """Modules × genes 0/1 matrix (CSR): module activities @ it = each gene's summed shift."""
    rows = np.repeat(np.arange(len(modules)), [len(genes) for genes in modules])
    columns = np.concatenate(modules) if modules else np.zeros(0, dtype=np.int64)
    values = np.ones(rows.size, dtype=np.float32)
    return sp.csr_matrix((values, (rows, columns)), shape=(len(modules), n_genes))


@dataclass(frozen=True)
class _CellDesign:
    """Per cell: stimulated or not, cell type index, and module activities."""

    stimulated: np.ndarray
    cell_type: np.ndarray
    activity: np.ndarray

    def obs(self, n_cell_types: int, start: int) -> pd.DataFrame:
        """``condition`` and ``cell_type`` columns; cells named from index ``start`` on."""
        n_cells = self.stimulated.size
        types = [f"type_{k}" for k in range(n_cell_types)]
        return pd.DataFrame(
            {
                "condition": pd.Categorical(
                    np.where(self.stimulated, "stimulated", "control"),
                    categories=["control", "stimulated"],
                ),
                "cell_type": pd.Categorical.from_codes(self.cell_type, categories=types),
            },
            index=[f"cell_{i:05d}" for i in range(start, start + n_cells)],
        )


def _draw_cells(
    rng: np.random.Generator,
    n_cells: int,
    n_modules: int,
    n_differential: int,
    n_cell_types: int,
    effect: float,
) -> _CellDesign:
    """Half the cells stimulated (``effect`` added to the first ``n_differential`` modules'
    activity); cell type ``k`` adds 1.0 to null module ``n_differential + k``."""
    stimulated = rng.permutation(np.arange(n_cells) % 2 == 1)
    cell_type = rng.integers(0, n_cell_types, size=n_cells)
    activity = rng.normal(0.0, 0.3, size=(n_cells, n_modules))
    activity[:, :n_differential] += effect * stimulated[:, None]
    for k in range(n_cell_types):
        if n_differential + k < n_modules:
            activity[cell_type == k, n_differential + k] += 1.0
    return _CellDesign(stimulated, cell_type, activity)


def make_module_dataset(
    n_cells: int = 600,
    n_genes: int = 300,
    n_modules: int = 20,
    n_differential: int = 4,
    genes_per_module: tuple[int, int] = (10, 30),
    effect: float = 2.0,
    n_cell_types: int = 3,
    seed: int = 0,
) -> SyntheticModules:
    """Simulate control/stimulated single cells whose expression is driven by gene modules.

    Each cell has a random activity per module (N(0, 0.3²)); a gene's log-mean is its baseline
    plus the summed activities of the modules it belongs to. Stimulated cells add ``effect``
    (natural-log units) to the activity of the first ``n_differential`` modules; cell type
    ``type_k`` adds 1.0 to null module ``n_differential + k`` (so cell identity is structured
    but independent of condition). Counts are negative binomial with a log-normal size factor.

    Returns counts in ``layers["counts"]`` and ``X = log1p(normalize_total(counts, 1e4))``.
    Because stimulated cells put more of their library into the differential genes, size
    normalisation moves every other gene down a little (a compositional effect, as in real
    stimulation data): null modules drift by roughly a third of the planted shift, in the
    opposite direction, so tests should compare shifts rather than expect exact zeros.
    """
    if n_cells < 2 or n_cell_types < 1:
        raise GenevaeInputError(
            f"n_cells={n_cells} must be >= 2 and n_cell_types={n_cell_types} >= 1."
        )
    rng = np.random.default_rng(seed)
    modules = _draw_module_membership(rng, n_genes, n_modules, n_differential, genes_per_module)
    membership = _membership_matrix(modules, n_genes).toarray()
    design = _draw_cells(rng, n_cells, n_modules, n_differential, n_cell_types, effect)
    baseline = rng.normal(0.0, 0.8, size=n_genes)
    size_factor = rng.lognormal(0.0, 0.3, size=(n_cells, 1))
    mean = size_factor * np.exp(baseline[None, :] + design.activity @ membership)
    counts = _negative_binomial(rng, mean)

    gene_names = [f"GENE_{i:04d}" for i in range(n_genes)]
    module_names = [f"MODULE_{j:02d}" for j in range(n_modules)]
    adata = ad.AnnData(
        X=_log_normalise(counts),
        obs=design.obs(n_cell_types, start=0),
        var=pd.DataFrame(index=gene_names),
        layers={"counts": counts},
    )
    gene_sets = {
        name: [gene_names[i] for i in genes]
        for name, genes in zip(module_names, modules, strict=True)
    }
    return SyntheticModules(
        adata=adata, gene_sets=gene_sets, differential_modules=module_names[:n_differential]
    )


@dataclass(frozen=True)
class SyntheticModuleFile:
    """What :func:`write_module_dataset_h5ad` planted and wrote (the file holds it too)."""

    path: Path
    gene_sets: dict[str, list[str]]
    differential_modules: list[str]
    nnz: int
    density: float


def _negative_binomial_sparse(
    rng: np.random.Generator, mean: np.ndarray, dispersion: float = _NB_DISPERSION
) -> sp.csr_matrix:
    """NB counts with the given (dense, float32) means as CSR, by inversion of the NB CDF.

    One uniform per entry: entries at or below P(0) are zeros and never stored; the others
    walk the CDF up from 1 (the pmf recursion p(k+1) = p(k)·(k+θ)/(k+1)·μ/(θ+μ)). Exact NB
    draws (up to float32 uniforms), with work and memory in the nonzeros beyond one
    chunk-sized pass. ``mean`` is overwritten.
    """
    uniform = rng.random(mean.shape, dtype=np.float32)
    np.divide(mean, dispersion, out=mean)
    np.log1p(mean, out=mean)
    mean *= -dispersion  # log P(0) = -θ·log1p(μ/θ)
    rows, columns = np.nonzero(uniform > np.exp(mean))
    log_p0 = mean[rows, columns].astype(np.float64)
    target = uniform[rows, columns].astype(np.float64)
    mu = dispersion * np.expm1(-log_p0 / dispersion)
    ratio = mu / (dispersion + mu)
    pmf = np.exp(log_p0)
    cdf = pmf.copy()
    values = np.zeros(rows.size, dtype=np.float32)
    active = np.arange(rows.size)
    k = 0
    while active.size:
        pmf[active] *= (k + dispersion) / (k + 1) * ratio[active]
        cdf[active] += pmf[active]
        k += 1
        done = (cdf[active] >= target[active]) | (pmf[active] < 1e-300)
        values[active[done]] = k
        active = active[~done]
    return sp.csr_matrix((values, (rows, columns)), shape=mean.shape)


def _baseline_for_density(shifts: np.ndarray, density: float, dispersion: float) -> float:
    """The log-mean offset at which a fraction ``density`` of entries is nonzero on average.

    ``shifts`` are pilot cells' log-means without the offset; the NB's P(count > 0) rises with
    the offset, so bisection finds it.
    """
    low, high = -30.0, 30.0
    for _ in range(30):
        offset = (low + high) / 2
        nonzero = 1.0 - np.exp(-dispersion * np.log1p(np.exp(shifts + offset) / dispersion))
        low, high = (offset, high) if nonzero.mean() < density else (low, offset)
    return (low + high) / 2


def write_module_dataset_h5ad(
    path: str | Path,
    n_cells: int,
    n_genes: int,
    n_modules: int,
    *,
    n_differential: int = 10,
    genes_per_module: tuple[int, int] = (5, 500),
    density: float = 0.07,
    effect: float = 2.0,
    n_cell_types: int = 8,
    chunk_cells: int = 1000,
    seed: int = 0,
) -> SyntheticModuleFile:
    """Write a large scRNA count matrix with planted modules to ``path``, ``chunk_cells`` rows
    at a time: peak memory is a few chunk × genes arrays, never cells × genes dense.

    The model is :func:`make_module_dataset`'s (module activities, stimulated cells shift the
    first ``n_differential`` modules by ``effect``, cell types a null module each, a log-normal
    size factor, NB counts) with Reactome-like module sizes (log-uniform in
    ``genes_per_module``), per-gene baselines N(0, 1.5²) plus an offset chosen so about
    ``density`` of the entries are nonzero (UMI data: 5–10%). Raw counts go in ``X`` (CSR);
    the truth in ``uns["planted"]`` (differential modules, effect) and
    ``var["planted_differential"]`` (genes of differential modules).
    """
    import h5py
    from anndata.io import sparse_dataset, write_elem

    if n_cells < 2 or chunk_cells < 1 or n_cell_types < 1:
        raise GenevaeInputError(
            f"n_cells={n_cells} must be >= 2, chunk_cells={chunk_cells} and "
            f"n_cell_types={n_cell_types} >= 1."
        )
    if not 0.0 < density < 1.0:
        raise GenevaeInputError(f"density={density} must be in (0, 1): fraction of nonzeros.")
    rng = np.random.default_rng(seed)
    modules = _draw_module_membership(
        rng, n_genes, n_modules, n_differential, genes_per_module, log_uniform_sizes=True
    )
    membership = _membership_matrix(modules, n_genes)
    baseline = rng.normal(0.0, 1.5, size=n_genes).astype(np.float32)
    pilot = _chunk_log_mean(
        rng, min(n_cells, 100), membership, baseline, n_differential, n_cell_types, effect
    )[1]
    baseline += _baseline_for_density(pilot, density, _NB_DISPERSION)

    gene_names = [f"GENE_{i:05d}" for i in range(n_genes)]
    module_names = [f"MODULE_{j:04d}" for j in range(n_modules)]
    differential_genes = np.zeros(n_genes, dtype=bool)
    differential_genes[np.concatenate(modules[:n_differential] or [np.zeros(0, int)])] = True
    obs_chunks, nnz = [], 0
    with h5py.File(path, "w") as store:
        store.attrs["encoding-type"] = "anndata"
        store.attrs["encoding-version"] = "0.1.0"
        for start in range(0, n_cells, chunk_cells):
            n = min(chunk_cells, n_cells - start)
            design, log_mean = _chunk_log_mean(
                rng, n, membership, baseline, n_differential, n_cell_types, effect
            )
            counts = _negative_binomial_sparse(rng, np.exp(log_mean, out=log_mean))
            nnz += counts.nnz
            obs_chunks.append(design.obs(n_cell_types, start))
            if start == 0:
                write_elem(store, "X", counts)  # anndata makes sparse datasets resizable
            else:
                sparse_dataset(store["X"]).append(counts)
        write_elem(store, "obs", pd.concat(obs_chunks))
        write_elem(
            store,
            "var",
            pd.DataFrame({"planted_differential": differential_genes}, index=gene_names),
        )
        planted = {"differential_modules": module_names[:n_differential], "effect": effect}
        write_elem(store, "uns", {"planted": planted})
        for key in ("layers", "obsm", "varm", "obsp", "varp"):
            write_elem(store, key, {})
    gene_sets = {
        name: [gene_names[i] for i in genes]
        for name, genes in zip(module_names, modules, strict=True)
    }
    return SyntheticModuleFile(
        path=Path(path),
        gene_sets=gene_sets,
        differential_modules=module_names[:n_differential],
        nnz=nnz,
        density=nnz / (n_cells * n_genes),
    )


def _chunk_log_mean(
    rng: np.random.Generator,
    n_cells: int,
    membership: sp.csr_matrix,
    baseline: np.ndarray,
    n_differential: int,
    n_cell_types: int,
    effect: float,
) -> tuple[_CellDesign, np.ndarray]:
    """``n_cells`` new cells and their cells × genes log-means (float32, one chunk)."""
    design = _draw_cells(rng, n_cells, membership.shape[0], n_differential, n_cell_types, effect)
    log_size = rng.normal(0.0, 0.3, size=(n_cells, 1)).astype(np.float32)
    shift = np.asarray((membership.T @ design.activity.T.astype(np.float32)).T)
    shift += baseline[None, :]
    shift += log_size
    return design, shift


def _draw_grn(
    rng: np.random.Generator, n_genes: int, n_regulators: int, n_targets_per_regulator: int
) -> pd.DataFrame:
    """Regulator → target edges with disjoint target sets and signed weights |w| in [0.5, 1]."""
    n_targets = n_regulators * n_targets_per_regulator
    if n_regulators < 1 or n_targets_per_regulator < 1 or n_regulators + n_targets > n_genes:
        raise GenevaeInputError(
            f"n_genes={n_genes} must exceed n_regulators={n_regulators} × (1 + "
            f"n_targets_per_regulator={n_targets_per_regulator}); both counts must be >= 1."
        )
    targets = rng.choice(np.arange(n_regulators, n_genes), size=n_targets, replace=False)
    weights = rng.uniform(0.5, 1.0, size=n_targets) * rng.choice([-1.0, 1.0], size=n_targets)
    return pd.DataFrame(
        {
            "regulator": np.repeat(np.arange(n_regulators), n_targets_per_regulator),
            "target": targets,
            "weight": weights,
        }
    )


def _group_shifts(
    edges: pd.DataFrame, n_genes: int, n_regulators: int, knockdown: float, effect: float
) -> np.ndarray:
    """Log-mean shift per group (row 0: controls, row r + 1: regulator r knocked down).

    Each entry of a group's row receives at most one term (targets are disjoint and never
    regulators), so ``baseline + shifts[group]`` equals adding the terms one by one.
    """
    shifts = np.zeros((n_regulators + 1, n_genes))
    shifts[np.arange(1, n_regulators + 1), np.arange(n_regulators)] = np.log(max(knockdown, 1e-3))
    shift = -effect * edges["weight"].to_numpy() * (1.0 - knockdown)
    shifts[edges["regulator"].to_numpy() + 1, edges["target"].to_numpy()] = shift
    return shifts


def _screen_counts(
    rng: np.random.Generator,
    log_mean: np.ndarray,
    library_scale: float,
    size_factor: np.ndarray | None = None,
) -> np.ndarray:
    """NB counts of one block of cells (cells × genes log-means); size factors drawn if absent."""
    if size_factor is None:
        size_factor = rng.lognormal(0.0, 0.3, size=(log_mean.shape[0], 1))
    return _negative_binomial(rng, library_scale * size_factor * np.exp(log_mean))


def _sparse_screen_counts(
    seed: int,
    baseline: np.ndarray,
    shifts: np.ndarray,
    groups: np.ndarray,
    chunk_cells: int,
    library_scale: float,
) -> sp.csr_matrix:
    """Counts drawn ``chunk_cells`` rows at a time, each block from its own seeded generator.

    Memory stays at one dense block plus the growing CSR; the result depends on
    ``chunk_cells`` (the block boundaries pick the generators), not on anything else.
    """
    blocks = []
    for index, start in enumerate(range(0, groups.size, chunk_cells)):
        block = groups[start : start + chunk_cells]
        rng = np.random.default_rng([seed, index])
        counts = _screen_counts(rng, baseline[None, :] + shifts[block], library_scale)
        blocks.append(sp.csr_matrix(counts))
    return sp.vstack(blocks, format="csr")


def make_perturbseq_from_grn(
    n_cells_per_group: int = 80,
    n_genes: int = 200,
    n_regulators: int = 8,
    n_targets_per_regulator: int = 6,
    knockdown: float = 0.1,
    effect: float = 1.5,
    seed: int = 0,
    *,
    n_control_cells: int | None = None,
    library_scale: float = 1.0,
    chunk_cells: int | None = None,
) -> SyntheticPerturbseq:
    """Simulate a CRISPRi screen: one group per regulator plus non-targeting controls.

    Genes ``REG0..`` are regulators; the others are ``GENE_0000..``. Each regulator has
    ``n_targets_per_regulator`` targets (disjoint across regulators) with signed weight w.
    Knocking a regulator down leaves ``knockdown`` of its mRNA (its log-mean drops by
    ``log(knockdown)``), and each target's log-mean moves by ``-effect · w · (1 - knockdown)``:
    targets of an activating edge (w > 0) go down, targets of a repressing edge go up.
    ``n_control_cells`` (default ``n_cells_per_group``) sizes the control group;
    ``library_scale`` multiplies every mean (sequencing depth; < 1 gives sparser counts).

    X and ``layers["counts"]`` hold raw NB counts (float32): dense by default; with
    ``chunk_cells`` a CSR matrix drawn that many cells at a time (never cells × genes dense,
    for screens at real size), X and the layer then sharing one matrix.
    """
    if not 0.0 <= knockdown < 1.0:
        raise GenevaeInputError(
            f"knockdown={knockdown} must be in [0, 1): remaining mRNA fraction."
        )
    if n_cells_per_group < 1 or (n_control_cells is not None and n_control_cells < 1):
        raise GenevaeInputError(
            f"n_cells_per_group={n_cells_per_group} and n_control_cells={n_control_cells} "
            "must be >= 1."
        )
    if library_scale <= 0 or (chunk_cells is not None and chunk_cells < 1):
        raise GenevaeInputError(
            f"library_scale={library_scale} must be > 0 and chunk_cells={chunk_cells} >= 1."
        )
    rng = np.random.default_rng(seed)
    edges = _draw_grn(rng, n_genes, n_regulators, n_targets_per_regulator)
    gene_names = [f"REG{r}" for r in range(n_regulators)] + [
        f"GENE_{i:04d}" for i in range(n_genes - n_regulators)
    ]

    baseline = rng.normal(0.0, 1.0, size=n_genes)
    baseline[:n_regulators] = rng.uniform(2.0, 2.5, size=n_regulators)
    baseline[edges["target"].to_numpy()] = rng.uniform(1.5, 2.0, size=len(edges))

    groups = [CONTROL_LABEL] + gene_names[:n_regulators]
    sizes = np.full(len(groups), n_cells_per_group)
    sizes[0] = n_cells_per_group if n_control_cells is None else n_control_cells
    group_of_cell = np.repeat(np.arange(len(groups)), sizes)
    shifts = _group_shifts(edges, n_genes, n_regulators, knockdown, effect)
    if chunk_cells is None:
        log_mean = baseline[None, :] + shifts[group_of_cell]
        size_factor = rng.lognormal(0.0, 0.3, size=(len(group_of_cell), 1))
        counts = _screen_counts(rng, log_mean, library_scale, size_factor)
        x = counts.copy()
    else:
        counts = _sparse_screen_counts(
            seed, baseline, shifts, group_of_cell, chunk_cells, library_scale
        )
        x = counts

    labels = pd.Categorical(np.asarray(groups, dtype=object)[group_of_cell], categories=groups)
    obs = pd.DataFrame(
        {"perturbation": labels, "guide_gene": labels.copy()},
        index=[f"cell_{i:05d}" for i in range(len(group_of_cell))],
    )
    adata = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=gene_names), layers={"counts": counts})
    named_edges = pd.DataFrame(
        {
            "regulator": [gene_names[r] for r in edges["regulator"]],
            "target": [gene_names[t] for t in edges["target"]],
            "weight": edges["weight"].to_numpy(),
        }
    )
    return SyntheticPerturbseq(adata=adata, edges=named_edges, control_label=CONTROL_LABEL)
