"""Gene sets and regulons: GMT files, GRN edge tables, and VEGA's gene-module mask.

A gene module (a pathway, or a transcription factor's targets) becomes one latent node of
VEGA's decoder; :func:`build_gene_module_mask` turns the modules into the genes × nodes
binary connectivity matrix the masked linear decoder uses (models.md §2.3).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from genevae.errors import GenevaeInputError

EXTRA_NODE_PREFIX = "UNANNOTATED_"
# pandas' errors for an empty/garbled table; a bad gzip raises OSError, a truncated one EOFError
_UNREADABLE_TABLE = (
    pd.errors.EmptyDataError,
    pd.errors.ParserError,
    UnicodeDecodeError,
    OSError,
    EOFError,
)


@dataclass(frozen=True)
class GeneModuleMask:
    """Genes × modules 0/1 connectivity, module names (extra nodes last) and an overlap report."""

    mask: np.ndarray
    module_names: list[str]
    overlap: pd.DataFrame


def _unique(items: Iterable[str]) -> list[str]:
    """Drop blanks and repeats, keeping first-seen order."""
    return list(dict.fromkeys(item for item in items if item))


def _gmt_lines(path: Path) -> Iterator[str]:
    """The lines of a GMT file; a binary or compressed file gets an error naming it."""
    try:
        with path.open(encoding="utf-8") as handle:
            yield from handle
    except UnicodeDecodeError as exc:
        raise GenevaeInputError(
            f"GMT file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); is it a "
            "binary or compressed file? GMT is plain tab-separated text."
        ) from exc


def read_gmt(path: str | Path) -> dict[str, list[str]]:
    """Read a GMT file: one set per tab-separated line ``name, description, gene, gene, ...``.

    Fields are stripped; empty fields (trailing tabs) and repeated genes are dropped; blank
    lines are skipped. Sets keep file order. A duplicated set name is an error, not a silent
    overwrite (VEGA's ``dict.update`` kept the last copy), because two different definitions
    under one name make module results ambiguous.
    """
    path = Path(path)
    if not path.is_file():
        raise GenevaeInputError(f"GMT file {path} does not exist; check the path.")
    gene_sets: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(_gmt_lines(path), start=1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.rstrip("\r\n").split("\t")]
        genes = _unique(fields[2:])
        if len(fields) < 3 or not fields[0] or not genes:
            raise GenevaeInputError(
                f"{path}, line {number}: a GMT line needs a set name, a description and at "
                f"least one gene, separated by tabs; found {len(fields)} field(s) "
                f"starting {line[:60]!r}."
            )
        name = fields[0]
        if name in gene_sets:
            raise GenevaeInputError(
                f"{path}, line {number}: gene set {name!r} was already defined on line "
                f"{first_line[name]}; rename or remove one of them."
            )
        gene_sets[name] = genes
        first_line[name] = number
    if not gene_sets:
        raise GenevaeInputError(f"GMT file {path} is empty; expected one gene set per line.")
    return gene_sets


def write_gmt(
    gene_sets: Mapping[str, Sequence[str]],
    path: str | Path,
    descriptions: Mapping[str, str] | None = None,
) -> None:
    """Write gene sets as GMT (description defaults to ``"na"``); the inverse of read_gmt."""
    descriptions = descriptions or {}
    lines = [
        "\t".join([name, descriptions.get(name, "na"), *genes]) for name, genes in gene_sets.items()
    ]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_gmts(paths: Sequence[str | Path]) -> dict[str, list[str]]:
    """Read and merge several GMT files (e.g. Reactome plus cell-type markers), in order.

    A set name defined in two files is an error naming both files.
    """
    merged: dict[str, list[str]] = {}
    origin: dict[str, Path] = {}
    for path in paths:
        for name, genes in read_gmt(path).items():
            if name in merged:
                raise GenevaeInputError(
                    f"gene set {name!r} is defined in both {origin[name]} and {path}; "
                    "rename it in one file or drop one file."
                )
            merged[name], origin[name] = genes, Path(path)
    return merged


def _edge_separator(path: Path) -> str:
    """Comma for ``.csv``/``.csv.gz``, tab for anything else (``.tsv``, ``.txt``)."""
    suffixes = [s for s in path.suffixes if s not in {".gz", ".bz2", ".zip", ".xz"}]
    return "," if suffixes and suffixes[-1] == ".csv" else "\t"


def _read_edge_table(path: Path, **read_args) -> pd.DataFrame:
    """`pandas.read_csv` with empty, corrupt or non-text files reported by name."""
    try:
        return pd.read_csv(path, sep=_edge_separator(path), **read_args)
    except _UNREADABLE_TABLE as exc:
        raise GenevaeInputError(
            f"GRN edge table {path} could not be read ({type(exc).__name__}: {exc}). The file "
            "is empty, truncated or not a (gzipped) CSV/TSV table; re-download or fix it."
        ) from exc


def read_grn_edges(
    path: str | Path,
    source_col: str = "source",
    target_col: str = "target",
    weight_col: str | None = None,
    min_weight: float | None = None,
) -> dict[str, list[str]]:
    """Regulator → targets from an edge table (CSV/TSV, optionally gzipped) or a GMT of regulons.

    Edge tables (e.g. the ChIP-Atlas K562 CSV with columns ``,target,weight,source``) keep
    edges with ``weight >= min_weight`` when both are given; rows with a missing regulator or
    target are dropped. Regulators and their targets keep file order, without repeats.
    A ``.gmt`` file (e.g. the GBM ARACNe regulons) is read with :func:`read_gmt`.
    """
    path = Path(path)
    if min_weight is not None and weight_col is None:
        raise GenevaeInputError(
            f"min_weight={min_weight} needs weight_col, the column of {path} holding edge weights."
        )
    if path.suffix == ".gmt":
        if weight_col is not None:
            raise GenevaeInputError(f"{path} is a GMT file, which has no edge weights.")
        return read_gmt(path)
    if not path.is_file():
        raise GenevaeInputError(f"GRN edge table {path} does not exist; check the path.")
    wanted = [source_col, target_col] + ([weight_col] if weight_col else [])
    header = _read_edge_table(path, nrows=0).columns
    missing = [c for c in wanted if c not in header]
    if missing:
        raise GenevaeInputError(
            f"{path}: missing column(s) {missing}; available columns: {list(header)}. "
            "Set source_col/target_col/weight_col to match the file."
        )
    # ids as text: numeric-looking ids would otherwise lose zeros or gain ".0" next to a blank
    edges = _read_edge_table(path, usecols=wanted, dtype={source_col: str, target_col: str})
    edges = edges.dropna(subset=[source_col, target_col])
    if min_weight is not None:
        if not pd.api.types.is_numeric_dtype(edges[weight_col]):
            raise GenevaeInputError(
                f"{path}: weight column {weight_col!r} is not numeric (e.g. "
                f"{edges[weight_col].iloc[:3].tolist()}); point weight_col at the numeric column."
            )
        edges = edges[edges[weight_col] >= min_weight]
    if edges.empty:
        raise GenevaeInputError(
            f"{path}: no edges left (min_weight={min_weight}); lower min_weight or check the file."
        )
    sources = edges[source_col].astype(str).str.strip()
    targets = edges[target_col].astype(str).str.strip()
    grouped = targets.groupby(sources.to_numpy(), sort=False)
    return {regulator: _unique(group) for regulator, group in grouped}


def _keep_reason(size: int, min_genes: int, max_genes: int) -> str:
    if size < min_genes:
        return "too_small"
    if size > max_genes:
        return "too_large"
    return "kept"


def build_gene_module_mask(
    gene_names: Sequence[str],
    gene_sets: Mapping[str, Sequence[str]],
    min_genes: int = 1,
    max_genes: int = 1000,
    add_nodes: int = 1,
    size_filter_on: Literal["overlap", "file"] = "overlap",
    source: str = "the gene sets",
) -> GeneModuleMask:
    """VEGA's gene-module mask: entry (i, j) = 1 iff gene i belongs to module j.

    Genes match by exact, case-sensitive symbol. A module is kept when
    ``min_genes <= size <= max_genes``, where size is its overlap with ``gene_names``
    (``size_filter_on="overlap"``, the default, so no latent node is connected to too few
    measured genes) or its membership in the file (``"file"``, what VEGA's code did; modules
    with no measured gene then become all-zero columns, and a warning says so).
    ``add_nodes`` fully connected columns named ``UNANNOTATED_0..`` are appended.
    ``source`` (e.g. the GMT path) is used in error messages.
    """
    genes = pd.Index([str(g) for g in gene_names])
    if genes.duplicated().any():
        raise GenevaeInputError(
            f"gene names are duplicated, e.g. {genes[genes.duplicated()].unique()[:5].tolist()}; "
            "make var_names unique before building the mask."
        )
    if size_filter_on not in ("overlap", "file"):
        raise GenevaeInputError(
            f"size_filter_on={size_filter_on!r} is not supported; use 'overlap' or 'file'."
        )
    if min_genes < 0 or max_genes < min_genes or add_nodes < 0:
        raise GenevaeInputError(
            f"need 0 <= min_genes <= max_genes and add_nodes >= 0; got min_genes={min_genes}, "
            f"max_genes={max_genes}, add_nodes={add_nodes}."
        )
    clashing = [name for name in gene_sets if name.startswith(EXTRA_NODE_PREFIX)]
    if clashing:
        raise GenevaeInputError(
            f"gene set names {clashing[:3]} in {source} clash with the names of the extra "
            f"nodes ({EXTRA_NODE_PREFIX}k); rename those sets."
        )
    members = {name: _unique(set_genes) for name, set_genes in gene_sets.items()}
    row_of = {gene: row for row, gene in enumerate(genes)}
    positions = {
        name: np.array([row_of[g] for g in m if g in row_of], dtype=np.int64)
        for name, m in members.items()
    }
    if not any(len(idx) for idx in positions.values()):
        example_set = next(iter(members.values()), [])[:5]
        raise GenevaeInputError(
            f"no gene of {source} is among the {len(genes)} data genes. Example set genes: "
            f"{example_set}; example data genes: {genes[:5].tolist()}. Check that both use the "
            "same identifiers (e.g. HGNC symbols, not Ensembl ids) and the same species."
        )
    overlap = pd.DataFrame(
        {
            "module": list(members),
            "n_genes_in_set": [len(m) for m in members.values()],
            "n_genes_overlap": [len(idx) for idx in positions.values()],
        }
    )
    size_column = "n_genes_overlap" if size_filter_on == "overlap" else "n_genes_in_set"
    overlap["reason"] = [_keep_reason(s, min_genes, max_genes) for s in overlap[size_column]]
    overlap["kept"] = overlap["reason"] == "kept"
    overlap = overlap[["module", "n_genes_in_set", "n_genes_overlap", "kept", "reason"]]
    kept = overlap.loc[overlap["kept"], "module"].tolist()
    if not kept:
        raise GenevaeInputError(
            f"no module of {source} has between min_genes={min_genes} and max_genes={max_genes} "
            f"genes ({size_filter_on}); widen the size limits."
        )
    empty = overlap.loc[overlap["kept"] & (overlap["n_genes_overlap"] == 0), "module"].tolist()
    if empty:
        warnings.warn(
            f"{len(empty)} kept modules of {source} have no measured gene (e.g. {empty[:3]}) and "
            "will be latent nodes connected to nothing; use size_filter_on='overlap'.",
            stacklevel=2,
        )
    mask = np.zeros((len(genes), len(kept) + add_nodes), dtype=np.float32)
    for column, name in enumerate(kept):
        mask[positions[name], column] = 1.0
    mask[:, len(kept) :] = 1.0
    extra = [f"{EXTRA_NODE_PREFIX}{k}" for k in range(add_nodes)]
    return GeneModuleMask(mask=mask, module_names=kept + extra, overlap=overlap)


def gene_sets_from_mask(
    mask: np.ndarray,
    gene_names: Sequence[str],
    module_names: Sequence[str],
    exclude_prefix: str | None = EXTRA_NODE_PREFIX,
) -> dict[str, list[str]]:
    """Module → genes of a genes × modules mask (what a model was trained with).

    Columns whose name starts with ``exclude_prefix`` (the fully connected extra nodes) are
    left out: they are not gene sets.
    """
    connected = np.asarray(mask) > 0
    if connected.shape != (len(gene_names), len(module_names)):
        raise GenevaeInputError(
            f"mask has shape {connected.shape} but there are {len(gene_names)} gene names and "
            f"{len(module_names)} module names; pass the names the mask was built with."
        )
    genes = np.asarray(gene_names)
    return {
        str(module): genes[connected[:, j]].tolist()
        for j, module in enumerate(module_names)
        if not (exclude_prefix and str(module).startswith(exclude_prefix))
    }


def shuffled_gene_module_masks(
    mask: pd.DataFrame,
    n_masks: int,
    seed: int = 0,
    exclude_prefix: str = EXTRA_NODE_PREFIX,
) -> list[pd.DataFrame]:
    """``n_masks`` random-mask controls: the annotated columns' genes shuffled, sizes kept.

    Each control permutes the gene rows of the annotated modules (one seeded permutation per
    mask), so every module keeps its exact size, and the modules keep their pairwise overlaps
    and the mask its sparsity; only which genes they hold is random. This is the size-matched
    control of "Sparsity is all you need" (arXiv 2505.04300). Extra nodes (names starting with
    ``exclude_prefix``) stay as they are. Column names are kept: column j of a control is the
    shuffled twin of module j.
    """
    if n_masks < 0:
        raise GenevaeInputError(f"n_masks={n_masks} must be >= 0 (0 turns the control off).")
    annotated = ~mask.columns.astype(str).str.startswith(exclude_prefix)
    values = mask.to_numpy()
    rng = np.random.default_rng(seed)
    controls = []
    for _ in range(n_masks):
        shuffled = values.copy()
        shuffled[:, annotated] = values[rng.permutation(len(values))][:, annotated]
        controls.append(pd.DataFrame(shuffled, index=mask.index, columns=mask.columns))
    return controls
