"""data_processing: one sub-pipeline per registered dataset, ``data_processing.<dataset>``.

The template depends on the dataset's kind (conf/*/datasets.yml): scRNA-seq is cleaned and
gets one gene-module mask per listed collection, Perturb-seq is cleaned and split and gets a
regulon mask from its reference network, bulk cohorts are combined, gene-selected and scaled.
Outputs are named ``<dataset>.<output>`` (``kang.processed``), parameters
``params:data_processing.<dataset>.<step>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kedro.pipeline import Node, Pipeline

from genevae.pipelines.data_processing import nodes
from genevae.pipelines.templates import per_dataset
from genevae.registry import Registry


def _scrna(name: str, entry: Mapping[str, Any]) -> list[Node]:
    preprocess = Node(
        nodes.preprocess_single_cell,
        inputs=[f"{name}.raw", "params:data_processing.scrna"],
        outputs=[f"{name}.processed", f"{name}.qc_report"],
        name="preprocess",
    )
    masks = [
        Node(
            nodes.build_module_mask,
            inputs=[
                f"{name}.processed",
                f"gene_sets.{collection}",
                "params:data_processing.gene_modules",
            ],
            outputs=[
                f"{name}.gene_module_mask.{collection}",
                f"{name}.module_overlap.{collection}",
            ],
            name=f"build_mask_{collection}",
        )
        for collection in entry.get("gene_sets") or ()
    ]
    return [preprocess, *masks]


def _perturbseq(name: str, entry: Mapping[str, Any]) -> list[Node]:
    summary_stats = [f"{name}.summary_stats"] if entry.get("summary_stats") else []
    preprocess = Node(
        nodes.preprocess_perturbseq,
        inputs=[f"{name}.raw", "params:data_processing.perturbseq", *summary_stats],
        outputs=[f"{name}.processed", f"{name}.top_de_genes"],
        name="preprocess",
    )
    reference = entry.get("grn_reference")
    if not reference:
        return [preprocess]
    mask = Node(
        nodes.build_module_mask,
        inputs=[
            f"{name}.processed",
            f"grn_references.{reference}.regulons",
            "params:data_processing.grn_modules",
        ],
        outputs=[f"{name}.gene_module_mask.{reference}", f"{name}.module_overlap.{reference}"],
        name=f"build_mask_{reference}",
    )
    return [preprocess, mask]


def _bulk(name: str, entry: Mapping[str, Any]) -> list[Node]:
    cohorts = {cohort: f"{name}.raw.{cohort}" for cohort in entry.get("cohorts") or {}}
    selection_inputs = [f"{name}.expression", "params:data_processing.bulk"]
    if entry.get("reference_genes"):
        selection_inputs.append(f"{name}.reference_genes")
    return [
        Node(
            nodes.combine_tcga_cohorts,
            inputs=cohorts,
            outputs=[f"{name}.expression", f"{name}.samples"],
            name="combine_cohorts",
        ),
        Node(
            nodes.select_tcga_genes,
            inputs=selection_inputs,
            outputs=f"{name}.selected_expression",
            name="select_genes",
        ),
        Node(
            nodes.scale_tcga,
            inputs=[
                f"{name}.selected_expression",
                f"{name}.samples",
                "params:data_processing.bulk",
            ],
            outputs=[f"{name}.processed", f"{name}.scaler"],
            name="scale",
        ),
    ]


TEMPLATES = {"scrna": _scrna, "perturbseq": _perturbseq, "bulk": _bulk}


def _nodes(name: str, entry: Mapping[str, Any]) -> list[Node]:
    return TEMPLATES[entry["kind"]](name, entry)


def create_pipeline(registry: Registry | None = None, **kwargs: Any) -> Pipeline:
    """``data_processing.<name>`` for every registered dataset, with its kind's template."""
    return per_dataset("data_processing", None, _nodes, registry)
