"""vega: one sub-pipeline per registered scRNA-seq dataset, ``vega.<dataset>``.

Train VEGA on the dataset's gene-module mask, encode module activities, Bayes factors for the
dataset's comparisons, GSEA beside them, figures. Inputs come from ``data_processing.<dataset>``
(``<dataset>.processed``, ``<dataset>.gene_module_mask.<collection>``), outputs are named
``vega.<dataset>.<output>`` and parameters are ``params:vega.<dataset>…``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kedro.pipeline import Node, Pipeline

from genevae.pipelines.templates import per_dataset
from genevae.pipelines.vega import nodes
from genevae.registry import Registry


def _nodes(name: str, entry: Mapping[str, Any]) -> list[Node]:
    out = f"vega.{name}"
    processed = f"{name}.processed"
    collection = "params:vega.gene_module_collection"
    collections = entry.get("gene_sets") or ()
    masks = {c: f"{name}.gene_module_mask.{c}" for c in collections}
    gene_sets = {c: f"gene_sets.{c}" for c in collections}
    return [
        Node(
            nodes.select_collection,
            inputs={"collection": collection, **masks},
            outputs=f"{out}.gene_module_mask",
            name="select_gene_module_mask",
        ),
        Node(
            nodes.select_collection,
            inputs={"collection": collection, **gene_sets},
            outputs=f"{out}.gene_sets",
            name="select_gene_sets",
        ),
        Node(
            nodes.train_vega,
            inputs=[processed, f"{out}.gene_module_mask", "params:vega"],
            outputs=[f"{out}.model@saved", f"{out}.training_history", f"{out}.final_metrics"],
            name="train_vega",
        ),
        Node(
            nodes.encode_module_activities,
            inputs=[f"{out}.model@saved", processed, "params:vega.missing_genes"],
            outputs=f"{out}.module_activities@saved",
            name="encode_module_activities",
        ),
        Node(
            nodes.decoder_weight_table,
            inputs=f"{out}.model@saved",
            outputs=f"{out}.decoder_weights",
            name="decoder_weight_table",
        ),
        Node(
            nodes.differential_activity_tables,
            inputs=[f"{out}.model@saved", processed, "params:vega.analysis"],
            outputs=f"{out}.differential_activity@saved",
            name="differential_activity",
        ),
        Node(
            nodes.latent_maps,
            inputs=[f"{out}.module_activities@saved", "params:vega.analysis"],
            outputs=f"{out}.latent_maps",
            name="latent_maps",
        ),
        Node(
            nodes.top_genes_table,
            inputs=[f"{out}.decoder_weights", "params:vega.analysis"],
            outputs=f"{out}.top_module_genes",
            name="top_module_genes",
        ),
        Node(
            nodes.volcano_figures,
            inputs=[f"{out}.differential_evidence@saved", "params:vega.analysis"],
            outputs=f"{out}.volcano_plots",
            name="volcano_plots",
        ),
        Node(
            nodes.activity_figures,
            inputs=[f"{out}.module_activities@saved", "params:vega.analysis"],
            outputs=f"{out}.activity_plots",
            name="activity_plots",
        ),
        Node(
            nodes.gsea_comparison,
            inputs=[
                processed,
                f"{out}.gene_sets",
                f"{out}.differential_activity@saved",
                "params:vega.analysis",
            ],
            outputs=[f"{out}.gsea_comparison@saved", f"{out}.gsea_scatter"],
            name="gsea_comparison",
        ),
        *_evidence_nodes(out, processed),
        Node(
            nodes.training_curve_figure,
            inputs=f"{out}.training_history",
            outputs=f"{out}.training_curves",
            name="training_curves",
        ),
        Node(
            nodes.bayes_factor_report,
            inputs=[
                f"{out}.differential_activity@saved",
                f"{out}.top_module_genes",
                f"{out}.gsea_comparison@saved",
                f"{out}.volcano_plots",
                f"{out}.gsea_scatter",
                f"{out}.latent_maps",
                f"{out}.activity_plots",
                f"{out}.training_curves",
                f"{out}.differential_evidence@saved",
                f"{out}.evidence_stability@saved",
                f"{out}.heldout_reconstruction@saved",
                "params:vega.analysis",
            ],
            outputs=[f"{out}.report", f"{out}.headline"],
            name="report",
        ),
    ]


def _evidence_nodes(out: str, processed: str) -> list[Node]:
    """Bayes-factor seeds, the random-mask control and the evidence table (issue #14)."""
    return [
        Node(
            nodes.bayes_factor_replicates,
            inputs=[f"{out}.model@saved", processed, "params:vega.analysis"],
            outputs=f"{out}.bayes_factor_replicates",
            name="bayes_factor_replicates",
        ),
        Node(
            nodes.random_mask_control,
            inputs=[processed, f"{out}.gene_module_mask", f"{out}.model@saved", "params:vega"],
            outputs=[f"{out}.control_replicates", f"{out}.heldout_reconstruction@saved"],
            name="random_mask_control",
        ),
        Node(
            nodes.differential_evidence,
            inputs=[
                f"{out}.differential_activity@saved",
                f"{out}.bayes_factor_replicates",
                f"{out}.control_replicates",
                f"{out}.heldout_reconstruction@saved",
                f"{out}.gsea_comparison@saved",
                "params:vega",
            ],
            outputs=[
                f"{out}.differential_evidence@saved",
                f"{out}.evidence_stability@saved",
                f"{out}.evidence_metrics",
            ],
            name="differential_evidence",
        ),
    ]


def create_pipeline(registry: Registry | None = None, **kwargs: Any) -> Pipeline:
    return per_dataset("vega", "scrna", _nodes, registry)
