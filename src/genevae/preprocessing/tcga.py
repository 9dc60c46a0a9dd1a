"""TCGA bulk RNA-seq preprocessing for Tybalt: read, label, select genes, scale, split.

The input is a UCSC Xena ``HiSeqV2``-style matrix: genes × samples, first column the gene id
(``SYMBOL`` or legacy ``SYMBOL|ENTREZ``), one column per TCGA barcode. Tybalt's own
``process_data`` step is re-expressed here as small pure functions (models.md §1.2).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from genevae.errors import GenevaeInputError

#: TCGA sample-type codes (barcode characters 14-15) and their names (NCI GDC code tables).
SAMPLE_TYPES: dict[str, str] = {
    "01": "Primary Solid Tumor",
    "02": "Recurrent Solid Tumor",
    "03": "Primary Blood Derived Cancer - Peripheral Blood",
    "04": "Recurrent Blood Derived Cancer - Bone Marrow",
    "05": "Additional - New Primary",
    "06": "Metastatic",
    "07": "Additional Metastatic",
    "08": "Human Tumor Original Cells",
    "09": "Primary Blood Derived Cancer - Bone Marrow",
    "10": "Blood Derived Normal",
    "11": "Solid Tissue Normal",
    "12": "Buccal Cell Normal",
    "13": "EBV Immortalized Normal",
    "14": "Bone Marrow Normal",
}
_BARCODE_SAMPLE_LENGTH = 15  # "TCGA-XX-XXXX-01": participant plus sample type
_DEVIATION_CHUNK_GENES = 1024
# pandas' errors for an empty/garbled table; a bad gzip raises OSError, a truncated one EOFError
_UNREADABLE_TABLE = (
    pd.errors.EmptyDataError,
    pd.errors.ParserError,
    UnicodeDecodeError,
    OSError,
    EOFError,
)


def _gene_symbols(gene_ids: pd.Index) -> pd.Index:
    """``SYMBOL|ENTREZ`` → ``SYMBOL``; plain symbols pass through unchanged."""
    return pd.Index(gene_ids.astype(str).str.split("|", n=1).str[0].str.strip())


def _resolve_duplicate_symbols(
    matrix: pd.DataFrame, how: Literal["drop", "first", "mean"]
) -> pd.DataFrame:
    """Make gene symbols unique (rows are genes here)."""
    duplicated = matrix.index.duplicated(keep=False)
    if not duplicated.any():
        return matrix
    if how == "drop":
        return matrix.loc[~duplicated]
    if how == "first":
        return matrix.loc[~matrix.index.duplicated(keep="first")]
    if how == "mean":
        return matrix.groupby(level=0, sort=False).mean()
    raise GenevaeInputError(
        f"duplicate_symbols={how!r} is not supported; use 'drop', 'first' or 'mean'."
    )


def _truncate_barcodes(samples: pd.Index, path: Path) -> pd.Index:
    """Cut barcodes to the sample level (15 characters), as Tybalt did."""
    truncated = pd.Index(samples.astype(str).str.slice(0, _BARCODE_SAMPLE_LENGTH))
    if truncated.duplicated().any():
        repeated = truncated[truncated.duplicated()].unique().tolist()[:5]
        raise GenevaeInputError(
            f"{path}: several aliquots map to the same 15-character sample barcode "
            f"(e.g. {repeated}); pass truncate_barcodes=False to keep full barcodes."
        )
    return truncated


def read_expression_matrix(
    path: str | Path,
    *,
    log2_transform: bool = False,
    duplicate_symbols: Literal["drop", "first", "mean"] = "drop",
    truncate_barcodes: bool = True,
    fill_missing: float = 0.0,
) -> pd.DataFrame:
    """Read a Xena-style genes × samples TSV (optionally gzipped) into samples × genes.

    - Gene ids are cut at ``|`` (``TP53|7157`` → ``TP53``); rows named ``?`` or blank
      (unnamed genes, ``?|100133144``) are dropped.
    - Duplicated symbols (``SLC35E2`` appears twice in the legacy RNASeqV2 gene space):
      ``"drop"`` removes every copy (Tybalt's choice, the default), ``"first"`` keeps the first
      row in file order, ``"mean"`` averages the copies.
    - ``log2_transform`` applies log2(x + 1), for raw RSEM counts (the TCGAbiolinks legacy
      files); Xena ``HiSeqV2`` is already log2(norm_count + 1), so leave it off there.
    - Barcodes are truncated to 15 characters (sample level) when ``truncate_barcodes``.
    - Missing values become ``fill_missing`` (Tybalt filled NaN with 0).
    """
    path = Path(path)
    if not path.is_file():
        raise GenevaeInputError(f"expression matrix {path} does not exist; check the path.")
    try:
        raw = pd.read_csv(path, sep="\t", index_col=0)
    except _UNREADABLE_TABLE as exc:
        raise GenevaeInputError(
            f"{path} could not be read as a tab-separated genes × samples matrix "
            f"({type(exc).__name__}: {exc}); the file is empty, truncated or not (gzipped) text."
        ) from exc
    if raw.shape[1] == 0 or raw.shape[0] == 0:
        raise GenevaeInputError(
            f"{path}: expected a tab-separated genes × samples matrix with a gene-id first column "
            f"and one column per sample, found shape {raw.shape}."
        )
    non_numeric = [c for c in raw.columns if not pd.api.types.is_numeric_dtype(raw[c])]
    if non_numeric:
        raise GenevaeInputError(
            f"{path}: sample columns {non_numeric[:5]} are not numeric; is the file genes × "
            "samples and tab-separated?"
        )
    raw.index = _gene_symbols(raw.index)
    raw = raw.loc[~raw.index.isin(["?", "", "nan"])]
    matrix = _resolve_duplicate_symbols(raw, duplicate_symbols).fillna(fill_missing)
    if log2_transform:
        if (matrix.to_numpy() < 0).any():
            raise GenevaeInputError(
                f"{path}: negative values cannot be log2(x + 1) transformed; the file is probably "
                "already log-scaled, so use log2_transform=False."
            )
        matrix = np.log2(matrix + 1.0)
    samples = matrix.T
    if truncate_barcodes:
        samples.index = _truncate_barcodes(samples.index, path)
    samples.index.name, samples.columns.name = "sample", "gene"
    return samples.astype(np.float64)


def parse_tcga_barcodes(barcodes: Sequence[str] | pd.Index) -> pd.DataFrame:
    """Split TCGA barcodes into participant and sample type (``-01`` tumour, ``-11`` normal).

    Returns a table indexed by barcode with columns ``participant`` (``TCGA-A7-A13D``),
    ``sample_type_code`` (``"01"``), ``sample_type`` (GDC name) and ``is_tumour``
    (codes 01-09 are tumours, 10-14 normals).
    """
    index = pd.Index([str(b) for b in barcodes], name="sample")
    parts = index.str.extract(r"^(TCGA-[A-Z0-9]{2}-[A-Z0-9]{4})-(\d{2})", expand=True)
    bad = index[parts[0].isna().to_numpy()]
    if len(bad):
        raise GenevaeInputError(
            f"{len(bad)} sample ids are not TCGA barcodes (TCGA-XX-XXXX-NN...), e.g. "
            f"{bad[:3].tolist()}; pass labels from a phenotype table instead."
        )
    codes = parts[1].to_numpy()
    return pd.DataFrame(
        {
            "participant": parts[0].to_numpy(),
            "sample_type_code": codes,
            "sample_type": [SAMPLE_TYPES.get(c, "Unknown") for c in codes],
            "is_tumour": [1 <= int(c) <= 9 for c in codes],
        },
        index=index,
    )


def labels_from_phenotype(
    samples: Sequence[str] | pd.Index,
    phenotype: pd.DataFrame,
    *,
    sample_col: str = "sample",
    label_col: str = "cancer_type",
    allow_missing: bool = False,
) -> pd.Series:
    """Cancer-type label per sample from a phenotype table (e.g. Xena's PANCAN clinical data).

    Barcodes on both sides are compared at the 15-character sample level. Samples absent from
    the table are an error unless ``allow_missing``, which labels them ``"unknown"``.
    """
    for column in (sample_col, label_col):
        if column not in phenotype.columns:
            raise GenevaeInputError(
                f"phenotype table has no column {column!r}; available columns: "
                f"{list(phenotype.columns)[:20]}. Set sample_col/label_col accordingly."
            )
    keys = phenotype[sample_col].astype(str).str.slice(0, _BARCODE_SAMPLE_LENGTH)
    lookup = pd.Series(phenotype[label_col].to_numpy(), index=keys)
    lookup = lookup[~lookup.index.duplicated(keep="first")]
    index = pd.Index([str(s) for s in samples], name="sample")
    labels = lookup.reindex(index.str.slice(0, _BARCODE_SAMPLE_LENGTH))
    missing = index[labels.isna().to_numpy()]
    if len(missing) and not allow_missing:
        raise GenevaeInputError(
            f"{len(missing)} of {len(index)} samples have no {label_col!r} in the phenotype table "
            f"(column {sample_col!r}), e.g. {missing[:3].tolist()}; fix the table or pass "
            "allow_missing=True to label them 'unknown'."
        )
    return pd.Series(labels.fillna("unknown").astype(str).to_numpy(), index=index, name=label_col)


def combine_cohorts(cohorts: Mapping[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.Series]:
    """Stack per-cohort samples × genes matrices on their shared genes; label by cohort name.

    Use this for per-study files (``{"BRCA": brca, "READ": read}``), where the cancer type is
    known from the file rather than from a phenotype table.
    """
    if not cohorts:
        raise GenevaeInputError("cohorts is empty; pass at least one {cancer_type: matrix}.")
    shared = None
    for frame in cohorts.values():
        shared = frame.columns if shared is None else shared.intersection(frame.columns, sort=False)
    if shared is None or len(shared) == 0:
        raise GenevaeInputError(
            f"the cohorts {list(cohorts)} share no gene columns; were they read the same way?"
        )
    combined = pd.concat([frame[shared] for frame in cohorts.values()], axis=0)
    if combined.index.duplicated().any():
        repeated = combined.index[combined.index.duplicated()].unique().tolist()[:3]
        raise GenevaeInputError(f"samples appear in more than one cohort: {repeated}.")
    labels = pd.Series(
        np.concatenate([[name] * len(frame) for name, frame in cohorts.items()]),
        index=combined.index,
        name="cancer_type",
    )
    return combined, labels


def gene_deviation(df: pd.DataFrame, method: Literal["median", "mean"] = "median") -> pd.Series:
    """Per-gene spread over samples (columns of a samples × genes frame).

    ``"median"``: median(|x − median(x)|), the median absolute deviation of the Tybalt paper
    (unscaled; the 1.4826 consistency factor would not change the ranking).
    ``"mean"``: mean(|x − mean(x)|), what Tybalt's code computed with the old
    ``pandas.DataFrame.mad`` (greenelab/tybalt#99; about 85% of the top 5,000 agree).
    """
    if method not in ("median", "mean"):
        raise GenevaeInputError(f"method={method!r} is not supported; use 'median' or 'mean'.")
    values = df.to_numpy(dtype=np.float64)
    spread = np.empty(values.shape[1])
    for start in range(0, values.shape[1], _DEVIATION_CHUNK_GENES):
        columns = slice(start, start + _DEVIATION_CHUNK_GENES)
        spread[columns] = _absolute_deviation(values[:, columns], method)
    return pd.Series(spread, index=df.columns, name=f"{method}_absolute_deviation")


def _absolute_deviation(block: np.ndarray, method: str) -> np.ndarray:
    """Per-column deviation of one block of genes: the temporaries (the median's sorted copy,
    |x − centre|) are samples × block, not samples × all genes (10,000 × 20,000 × 8 bytes =
    1.6 GB each)."""
    if method == "median":
        return np.median(np.abs(block - np.median(block, axis=0)), axis=0)
    return np.abs(block - block.mean(axis=0)).mean(axis=0)


def select_genes_by_deviation(
    df: pd.DataFrame, k: int = 5000, method: Literal["median", "mean"] = "median"
) -> pd.DataFrame:
    """Keep the ``k`` genes with the largest absolute deviation (Tybalt's top-5,000 MAD genes).

    Columns come back sorted by decreasing deviation; ties keep their input order.
    """
    if not 1 <= k <= df.shape[1]:
        raise GenevaeInputError(
            f"k={k} genes requested but the matrix has {df.shape[1]}; choose 1 <= k <= "
            f"{df.shape[1]}."
        )
    deviation = gene_deviation(df, method)
    top = deviation.sort_values(ascending=False, kind="stable").index[:k]
    return df.loc[:, top]


def read_gene_list(path: str | Path) -> list[str]:
    """Read one gene symbol per line (e.g. Tybalt's ``background_genes.txt``), skipping blanks."""
    path = Path(path)
    if not path.is_file():
        raise GenevaeInputError(f"gene list {path} does not exist; check the path.")
    genes = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not genes:
        raise GenevaeInputError(f"gene list {path} is empty; expected one symbol per line.")
    return genes


def read_cancer_type_colors(path: str | Path) -> dict[str, str]:
    """TCGA study abbreviation → hex colour from Tybalt's ``tcga_colors.tsv``.

    Columns ``Hex Colors`` and ``Study Abbreviation``; the literal ``NA`` study is kept as a
    label (it is not a missing value).
    """
    path = Path(path)
    table = pd.read_csv(path, sep="\t", keep_default_na=False, dtype=str)
    for column in ("Hex Colors", "Study Abbreviation"):
        if column not in table.columns:
            raise GenevaeInputError(
                f"{path}: missing column {column!r}; found {list(table.columns)}. Expected "
                "Tybalt's tcga_colors.tsv layout."
            )
    colours = table["Hex Colors"].str.strip()
    bad = colours[~colours.str.fullmatch(r"#[0-9A-Fa-f]{6}")]
    if len(bad):
        raise GenevaeInputError(f"{path}: invalid hex colours {bad.tolist()[:3]}.")
    return dict(zip(table["Study Abbreviation"].str.strip(), colours, strict=True))


def fit_minmax_scaler(train_df: pd.DataFrame) -> pd.DataFrame:
    """Per-gene minimum and maximum over the training samples (a table: gene, min, max).

    Fit on training samples only, so validation samples do not leak into the scaling;
    Tybalt fitted on all samples before splitting — pass every sample to reproduce that.
    """
    if train_df.empty:
        raise GenevaeInputError("cannot fit a min-max scaler on an empty training matrix.")
    values = train_df.to_numpy(dtype=np.float64)
    if np.isnan(values).any():
        raise GenevaeInputError("training matrix contains NaN; fill missing values before scaling.")
    return pd.DataFrame(
        {"gene": train_df.columns.astype(str), "min": values.min(axis=0), "max": values.max(axis=0)}
    )


def apply_minmax_scaler(df: pd.DataFrame, scaler: pd.DataFrame) -> pd.DataFrame:
    """Scale each gene to [0, 1] with a fitted (gene, min, max) table, then clip to [0, 1].

    Genes that were constant in training (max == min) use a range of 1, as scikit-learn's
    MinMaxScaler does, so they map to 0 on training data. Output columns follow the scaler.
    """
    missing = pd.Index(scaler["gene"]).difference(df.columns)
    if len(missing):
        raise GenevaeInputError(
            f"{len(missing)} scaler genes are absent from the matrix, e.g. {missing[:5].tolist()}; "
            "apply the scaler to data with the same genes it was fitted on."
        )
    low = scaler["min"].to_numpy(dtype=np.float64)
    spread = scaler["max"].to_numpy(dtype=np.float64) - low
    spread[spread == 0] = 1.0
    values = (df.loc[:, scaler["gene"]].to_numpy(dtype=np.float64) - low) / spread
    return pd.DataFrame(
        np.clip(values, 0.0, 1.0), index=df.index, columns=pd.Index(scaler["gene"], name="gene")
    )


def split_samples(
    labels: pd.Series, val_fraction: float = 0.1, seed: int = 0, stratify: bool = True
) -> pd.Series:
    """Assign each sample to ``"train"`` or ``"validation"`` (a Series indexed like ``labels``).

    With ``stratify``, each label class contributes round(val_fraction × class size)
    validation samples, so rare cancer types stay represented in training; a class of one
    sample always stays in training. Tybalt used a 90/10 random split.
    """
    if not 0.0 < val_fraction < 1.0:
        raise GenevaeInputError(f"val_fraction={val_fraction} must be between 0 and 1.")
    if labels.index.duplicated().any():
        raise GenevaeInputError("labels has duplicated sample ids; sample ids must be unique.")
    if labels.isna().any():
        missing = labels.index[labels.isna().to_numpy()][:3].tolist()
        raise GenevaeInputError(
            f"{int(labels.isna().sum())} samples have no label (e.g. {missing}); label them "
            "(e.g. 'unknown') or drop them before splitting."
        )
    rng = np.random.default_rng(seed)
    groups = labels.groupby(labels, sort=True).groups if stratify else {"all": labels.index}
    validation: list = []
    for members in groups.values():
        n_val = int(round(val_fraction * len(members)))
        n_val = min(n_val, len(members) - 1) if len(members) > 1 else 0
        validation.extend(rng.permutation(np.asarray(members))[:n_val])
    if not validation:
        warnings.warn(
            f"val_fraction={val_fraction} leaves no validation samples for {len(labels)} samples.",
            stacklevel=2,
        )
    split = pd.Series("train", index=labels.index, name="split")
    split.loc[validation] = "validation"
    return split
