"""Synthetic TCGA-like bulk expression with planted cancer-type programs, for tests, demos and scale runs.

Two entry points share one model of expression (:class:`BulkDesign`, drawn once per seed):

- :func:`make_tcga_like`: samples × genes in [0, 1] in memory, as Tybalt's input;
- :func:`write_tcga_like_cohorts`: one Xena ``HiSeqV2``-style file (genes × samples, log2
  scale, TCGA barcodes) per cancer type, written one cohort at a time so that memory holds a
  single cohort; this is what a user's TCGA download looks like to ``data_processing``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genevae.errors import GenevaeInputError

# The 33 TCGA study abbreviations, used as type labels so the TCGA colour table works as a
# palette; the first ten keep the order the generator has always used.
TCGA_LIKE_TYPES = (
    "BRCA", "GBM", "LUAD", "SKCM", "OV", "KIRC", "PRAD", "THCA", "COAD", "LAML",
    "ACC", "BLCA", "CESC", "CHOL", "DLBC", "ESCA", "HNSC", "KICH", "KIRP", "LGG", "LIHC",
    "LUSC", "MESO", "PAAD", "PCPG", "READ", "SARC", "STAD", "TGCT", "THYM", "UCEC", "UCS",
    "UVM",
)  # fmt: skip
_N_SHARED_FACTORS = 3
TUMOUR_CODE, NORMAL_CODE = "01", "11"  # TCGA sample-type codes: primary tumour, normal tissue


@dataclass(frozen=True)
class BulkDesign:
    """What every sample shares: gene baselines, shared-factor loadings, type programs.

    Type ``t`` switches on genes ``programs[t]`` (a block of ``program_size`` genes) by
    ``effects[t]`` log units; normal tissue samples carry half of their type's program.
    """

    genes: np.ndarray
    types: np.ndarray
    baseline: np.ndarray
    loadings: np.ndarray
    program_size: int
    effects: np.ndarray

    def program(self, code: int) -> slice:
        return slice(code * self.program_size, (code + 1) * self.program_size)

    def log_expression(
        self, rng: np.random.Generator, codes: np.ndarray, program_weight: np.ndarray | float = 1.0
    ) -> np.ndarray:
        """log2-scale expression of samples of type ``codes`` (float32, samples × genes):
        baseline + independent noise + shared factors + ``program_weight`` × own program."""
        n_samples, n_genes = len(codes), len(self.genes)
        values = rng.normal(0, 0.6, (n_samples, n_genes)).astype(np.float32)
        values += self.baseline
        values += rng.normal(size=(n_samples, _N_SHARED_FACTORS)).astype(np.float32) @ self.loadings
        weight = np.broadcast_to(np.asarray(program_weight, dtype=np.float32), (n_samples,))
        for code in np.unique(codes):
            rows = np.flatnonzero(codes == code)
            values[rows, self.program(code)] += weight[rows, None] * self.effects[code]
        return values


def bulk_design(n_genes: int, n_types: int, n_samples: int, seed: int) -> BulkDesign:
    """Draw the shared parameters (checks the sizes: every type needs a program and samples)."""
    if n_types < 2 or n_types > len(TCGA_LIKE_TYPES):
        raise GenevaeInputError(f"n_types must be in 2..{len(TCGA_LIKE_TYPES)}; got {n_types}.")
    program_size = n_genes // (2 * n_types)
    if program_size < 1 or n_samples < 2 * n_types:
        raise GenevaeInputError(
            f"the TCGA-like generator needs n_genes >= {2 * n_types} and n_samples >= "
            f"{2 * n_types} for n_types={n_types}; got n_genes={n_genes}, n_samples={n_samples}."
        )
    rng = np.random.default_rng([seed, n_genes, n_types])
    return BulkDesign(
        genes=np.array([f"gene_{i:05d}" for i in range(n_genes)]),
        types=np.array(TCGA_LIKE_TYPES[:n_types]),
        baseline=rng.normal(6.0, 1.5, n_genes).astype(np.float32),
        loadings=rng.normal(0, 0.5, (_N_SHARED_FACTORS, n_genes)).astype(np.float32),
        program_size=program_size,
        effects=rng.uniform(2.0, 4.0, (n_types, program_size)).astype(np.float32),
    )


def _type_programs(design: BulkDesign) -> dict[str, list[str]]:
    return {
        name: design.genes[design.program(code)].tolist() for code, name in enumerate(design.types)
    }


def make_tcga_like(
    n_samples: int = 500, n_genes: int = 200, n_types: int = 5, seed: int = 0
) -> tuple[pd.DataFrame, pd.Series]:
    """Samples × genes in [0, 1] (min-max per gene, as Tybalt's input) and cancer-type labels.

    Each type switches on its own block of ``n_genes // (2 * n_types)`` program genes (the
    planted truth, listed in ``expression.attrs["type_programs"]``), so half of the genes are
    type-specific. Every gene also carries a shared three-factor signal unrelated to type and
    independent noise, so the types are separable but not trivially so.
    """
    design = bulk_design(n_genes, n_types, n_samples, seed)
    rng = np.random.default_rng(seed)
    label_codes = rng.permutation(np.arange(n_samples) % n_types)
    log_expression = design.log_expression(rng, label_codes).astype(np.float64)
    low, high = log_expression.min(0), log_expression.max(0)
    scaled = (log_expression - low) / np.where(high > low, high - low, 1.0)
    index = pd.Index([f"sample_{i:04d}" for i in range(n_samples)], name="sample")
    expression = pd.DataFrame(scaled, index=index, columns=pd.Index(design.genes, name="gene"))
    expression.attrs["type_programs"] = _type_programs(design)
    labels = pd.Series(design.types[label_codes], index=index, name="cancer_type")
    return expression, labels


def cohort_sizes(n_samples: int, n_types: int) -> np.ndarray:
    """Samples per type: as equal as possible, the first types one larger."""
    return np.full(n_types, n_samples // n_types) + (np.arange(n_types) < n_samples % n_types)


def _fixed_point_text(values: np.ndarray) -> np.ndarray:
    """``DD.DD`` bytes per value (0 ≤ value < 100, rounded to 2 decimals), one row per row.

    Vectorised: formatting 200 M floats through Python (``to_csv``) takes ~30 min on one
    core; this takes seconds. Leading zeros (``06.25``) read back as the same number.
    """
    hundredths = np.rint(np.clip(values, 0.0, 99.99) * 100).astype(np.int32)
    text = np.empty((*values.shape, 6), dtype=np.uint8)
    for position, power in ((0, 1000), (1, 100), (3, 10), (4, 1)):
        text[..., position] = ord("0") + (hundredths // power) % 10
    text[..., 2], text[..., 5] = ord("."), ord("\t")
    return text.reshape(len(values), -1)


def _write_xena(path: Path, values: np.ndarray, genes: np.ndarray, samples: list[str]) -> None:
    """genes × samples table: a ``gene`` header with the sample ids, then one line per gene."""
    text = _fixed_point_text(values)
    text[:, -1] = ord("\n")
    with path.open("wb") as handle:
        handle.write(("\t".join(["gene", *samples]) + "\n").encode())
        for gene, row in zip(genes, text, strict=True):
            handle.write(f"{gene}\t".encode() + row.tobytes())


def write_tcga_like_cohorts(
    folder: str | Path,
    *,
    n_samples: int = 10_000,
    n_genes: int = 20_000,
    n_types: int = 33,
    normal_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, Path]:
    """Write one genes × samples TSV per type (Xena ``HiSeqV2`` layout, log2 scale).

    Sample ids are TCGA barcodes (``TCGA-<type index>-<sample>-01``; ``-11`` for the
    ``normal_fraction`` of each cohort that is normal tissue, with half of its type's
    program), so ``data_processing`` labels tumour and normal as it does for real TCGA files.
    Only one cohort is in memory at a time. The planted programs are written beside the
    files as ``type_programs.tsv`` (type, gene). Returns type → file path.
    """
    if not 0.0 <= normal_fraction < 1.0:
        raise GenevaeInputError(f"normal_fraction must be in [0, 1); got {normal_fraction}.")
    design = bulk_design(n_genes, n_types, n_samples, seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for code, (name, size) in enumerate(
        zip(design.types, cohort_sizes(n_samples, n_types), strict=True)
    ):
        rng = np.random.default_rng([seed, code])
        normal = np.arange(size) < round(normal_fraction * size)
        values = design.log_expression(rng, np.full(size, code), np.where(normal, 0.5, 1.0))
        barcodes = [
            f"TCGA-{code:02d}-{i:04d}-{NORMAL_CODE if is_normal else TUMOUR_CODE}"
            for i, is_normal in enumerate(normal)
        ]
        paths[str(name)] = folder / f"{name}.tsv"
        _write_xena(paths[str(name)], values.T, design.genes, barcodes)
    programs = pd.DataFrame(
        [(name, gene) for name, genes in _type_programs(design).items() for gene in genes],
        columns=["type", "gene"],
    )
    programs.to_csv(folder / "type_programs.tsv", sep="\t", index=False)
    return paths
