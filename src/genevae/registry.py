"""The dataset registry (``conf/<env>/datasets.yml``): what each dataset is and needs.

One block per dataset names its kind, file(s) and obs keys. From it the project derives, per
dataset, the catalog entries of its raw files, its pipelines (``data_processing.<name>``,
``vega.<name>``, …) and its effective parameter sections (``vega.<name>`` = the ``vega``
defaults, the values the registry implies such as obs keys and comparisons, and the entry's own
overrides). Plain dicts in, plain dicts out: no Kedro import, so notebooks and the validation
can use it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from genevae.errors import GenevaeInputError

KINDS = ("scrna", "perturbseq", "bulk")
MODEL_PIPELINE = {"scrna": "vega", "perturbseq": "gpo_vae", "bulk": "tybalt"}
DATA_PROCESSING_SECTIONS = {
    "scrna": ("scrna", "gene_modules"),
    "perturbseq": ("perturbseq", "grn_modules"),
    "bulk": ("bulk",),
}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Registry:
    """Datasets, gene-set collections and reference networks, each by name."""

    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    gene_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    grn_references: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Registry:
        """Read the merged ``datasets`` configuration, checking names and kinds."""
        unknown = sorted(set(config) - {"datasets", "gene_sets", "grn_references"})
        if unknown:
            raise GenevaeInputError(
                f"datasets.yml has unknown top-level block(s) {unknown}; the blocks are "
                "'datasets', 'gene_sets' and 'grn_references'."
            )
        registry = cls(
            datasets=dict(config.get("datasets") or {}),
            gene_sets=dict(config.get("gene_sets") or {}),
            grn_references=dict(config.get("grn_references") or {}),
        )
        for name, entry in registry.datasets.items():
            _check_entry(name, entry)
        return registry

    def of_kind(self, kind: str) -> list[str]:
        """Names of the datasets of one kind, in registry order."""
        return [name for name, entry in self.datasets.items() if entry["kind"] == kind]

    def kind(self, name: str) -> str:
        return self.datasets[name]["kind"]


def _check_entry(name: str, entry: Any) -> None:
    if not _NAME.match(name):
        raise GenevaeInputError(
            f"Dataset name {name!r} in datasets.yml: use lowercase letters, digits and "
            "underscores, starting with a letter (it becomes a namespace and a folder name)."
        )
    if not isinstance(entry, Mapping) or entry.get("kind") not in KINDS:
        kind = entry.get("kind") if isinstance(entry, Mapping) else None
        raise GenevaeInputError(
            f"datasets.{name}.kind is {kind!r}; set it to one of {list(KINDS)}."
        )


# --- catalog ---------------------------------------------------------------------------------
def raw_catalog_entries(registry: Registry) -> dict[str, dict[str, Any]]:
    """Catalog entries for every registered raw file (read-only, layer ``01_raw``)."""
    entries: dict[str, dict[str, Any]] = {}
    for name, entry in registry.datasets.items():
        entries.update(_raw_entries(name, entry))
    for name, gene_set in registry.gene_sets.items():
        entries[f"gene_sets.{name}"] = _raw("genevae.datasets.readers.GeneSetsDataset", gene_set)
    for name, reference in registry.grn_references.items():
        columns = {"source_col": reference["source_col"], "target_col": reference["target_col"]}
        entries[f"grn_references.{name}.regulons"] = _raw(
            "genevae.datasets.readers.GeneSetsDataset", reference, load_args=columns
        )
        entries[f"grn_references.{name}.edges"] = _raw(
            "pandas.CSVDataset",
            reference,
            load_args={"usecols": list(columns.values()), "dtype": str},
        )
    return entries


def _raw(
    dataset_type: str, entry: Mapping[str, Any], *, file_key: str = "file", load_args: Any = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": dataset_type,
        "filepath": entry[file_key],
        "metadata": {"kedro-viz": {"layer": "01_raw"}},
    }
    load_args = load_args if load_args is not None else entry.get("load_args")
    if load_args:
        spec["load_args"] = dict(load_args)
    return spec


def summary_stats_entry(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The catalog entry of a Perturb-seq screen's per-perturbation summary statistics
    (Replogle Table S2 layout): an Excel sheet (``sheet``, default the first) or a CSV/TSV."""
    suffix = PurePosixPath(spec["file"]).suffix.lower()
    if suffix in (".xlsx", ".xls"):
        sheet = spec.get("sheet")
        return _raw("pandas.ExcelDataset", spec, load_args={"sheet_name": sheet or 0})
    return _raw("pandas.CSVDataset", spec, load_args={"sep": "\t" if suffix == ".tsv" else ","})


def _raw_entries(name: str, entry: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    if entry["kind"] != "bulk":
        raw = {f"{name}.raw": _raw("genevae.datasets.anndata_dataset.AnnDataDataset", entry)}
        if entry.get("summary_stats"):  # Perturb-seq: the strong-perturbation filter's table
            raw[f"{name}.summary_stats"] = summary_stats_entry(entry["summary_stats"])
        return raw
    entries = {
        f"{name}.raw.{cohort}": _raw(
            "genevae.datasets.readers.ExpressionMatrixDataset", {**entry, "file": path}
        )
        for cohort, path in (entry.get("cohorts") or {}).items()
    }
    if entry.get("reference_genes"):
        entries[f"{name}.reference_genes"] = _raw(
            "genevae.datasets.readers.GeneListDataset", entry, file_key="reference_genes"
        )
    if entry.get("colors"):
        entries[f"{name}.colors"] = _raw(
            "pandas.CSVDataset",
            entry,
            file_key="colors",
            load_args={"sep": "\t", "keep_default_na": False},  # "NA" is a study code here
        )
    return entries


def dataset_raw_files(registry: Registry, name: str) -> dict[str, str]:
    """Catalog name → path of one dataset's raw file(s) (for checks and provenance)."""
    entries = _raw_entries(name, registry.datasets[name])
    return {catalog_name: spec["filepath"] for catalog_name, spec in entries.items()}


# --- parameters --------------------------------------------------------------------------------
def dataset_parameters(params: Mapping[str, Any], registry: Registry) -> dict[str, Any]:
    """``params`` plus each dataset's effective sections (``vega.kang``, ``tybalt.tcga``, …).

    A section is the pipeline's defaults (its keys that are not dataset names), overlaid by
    what the registry implies (obs keys, comparisons), the entry's own block for that
    pipeline, and finally ``<pipeline>.<dataset>`` keys given in parameter files or
    ``--params``. The registry itself is added as ``datasets``, ``gene_sets`` and
    ``grn_references``.
    """
    result = copy.deepcopy(dict(params))
    for name, entry in registry.datasets.items():
        kind = entry["kind"]
        for pipeline, implied in (
            ("data_processing", _implied_data_processing(entry)),
            (MODEL_PIPELINE[kind], _implied_model(entry)),
        ):
            section = dict(result.get(pipeline) or {})
            defaults = {k: v for k, v in section.items() if k not in registry.datasets}
            if pipeline == "data_processing":
                defaults = {k: defaults[k] for k in DATA_PROCESSING_SECTIONS[kind] if k in defaults}
            effective = deep_merge(defaults, implied, entry.get(pipeline) or {})
            section[name] = deep_merge(effective, section.get(name) or {})
            result[pipeline] = section
    result["datasets"] = copy.deepcopy(registry.datasets)
    result["gene_sets"] = copy.deepcopy(registry.gene_sets)
    result["grn_references"] = copy.deepcopy(registry.grn_references)
    return result


def _implied_data_processing(entry: Mapping[str, Any]) -> dict[str, Any]:
    obs = entry.get("obs") or {}
    if entry["kind"] == "scrna":
        keys = {f"{key}_key": obs.get(key) for key in ("condition", "cell_type", "batch")}
        return {"scrna": keys}
    if entry["kind"] == "perturbseq":
        return {
            "perturbseq": {
                "perturbation_key": obs.get("perturbation"),
                "target_gene_key": obs.get("target_gene"),
                "control_label": entry.get("control_label"),
            }
        }
    return {}


def _implied_model(entry: Mapping[str, Any]) -> dict[str, Any]:
    if entry["kind"] != "scrna":
        return {}
    obs = entry.get("obs") or {}
    labels = [obs[key] for key in ("cell_type", "condition", "batch") if obs.get(key)]
    analysis = {
        "cell_type_key": obs.get("cell_type"),
        "color_by": labels,
        "comparisons": list(entry.get("comparisons") or []),
        "gsea": {"comparison": entry.get("gsea_comparison")},
    }
    return {"analysis": analysis}


def deep_merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers win; nested mappings merge key by key, anything else is replaced."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                merged[key] = deep_merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
    return merged


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (``{"a": {"b": 1}}`` → ``{"a.b": 1}``), e.g. for MLflow."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
