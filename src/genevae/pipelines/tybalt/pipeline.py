"""tybalt: one sub-pipeline per registered bulk dataset, ``tybalt.<dataset>``.

Train Tybalt on the processed cohorts, encode samples, interpret nodes, generate profiles,
figures. Outputs are named ``tybalt.<dataset>.<output>``, parameters ``params:tybalt.<dataset>…``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kedro.pipeline import Node, Pipeline

from genevae.pipelines.templates import per_dataset
from genevae.pipelines.tybalt import nodes
from genevae.registry import Registry


def _nodes(name: str, entry: Mapping[str, Any]) -> list[Node]:
    out = f"tybalt.{name}"
    map_inputs = [f"{out}.encoded_samples@saved", "params:tybalt.analysis"]
    if entry.get("colors"):
        map_inputs.append(f"{name}.colors")
    return [
        Node(
            nodes.train_tybalt,
            inputs=[
                f"{name}.processed",
                "params:tybalt.model",
                "params:tybalt.training",
                "params:tybalt.validation",
            ],
            outputs=[f"{out}.model@saved", f"{out}.training_history", f"{out}.final_metrics"],
            name="train_tybalt",
        ),
        Node(
            nodes.encode_samples,
            inputs=[f"{out}.model@saved", f"{name}.processed"],
            outputs=[f"{out}.encoded_samples@saved", f"{out}.latent_means"],
            name="encode_tybalt_samples",
        ),
        Node(
            nodes.decoder_weight_table,
            inputs=f"{out}.model@saved",
            outputs=f"{out}.decoder_weights",
            name="extract_tybalt_decoder_weights",
        ),
        Node(
            nodes.high_weight_gene_table,
            inputs=[f"{out}.decoder_weights", "params:tybalt.analysis"],
            outputs=f"{out}.high_weight_genes",
            name="find_tybalt_high_weight_genes",
        ),
        Node(
            nodes.node_activity_table,
            inputs=f"{out}.latent_means",
            outputs=f"{out}.node_activity",
            name="summarise_tybalt_node_activity",
        ),
        Node(
            nodes.latent_maps,
            inputs=map_inputs,
            outputs=f"{out}.latent_maps",
            name="map_tybalt_latent_space",
        ),
        Node(
            nodes.activation_distribution_figure,
            inputs=[f"{out}.latent_means", "params:tybalt.analysis"],
            outputs=f"{out}.activation_distributions",
            name="plot_tybalt_activation_distributions",
        ),
        Node(
            nodes.training_curve_figure,
            inputs=f"{out}.training_history",
            outputs=f"{out}.training_curves",
            name="plot_tybalt_training_curves",
        ),
        Node(
            nodes.sample_from_prior,
            inputs=[f"{out}.model@saved", "params:tybalt.generation"],
            outputs=f"{out}.prior_samples",
            name="sample_tybalt_prior",
        ),
        Node(
            nodes.latent_arithmetic_profiles,
            inputs=[
                f"{out}.model@saved",
                f"{out}.encoded_samples@saved",
                "params:tybalt.generation",
            ],
            outputs=f"{out}.latent_arithmetic",
            name="decode_tybalt_latent_arithmetic",
        ),
        Node(
            nodes.interpolation_profiles,
            inputs=[
                f"{out}.model@saved",
                f"{out}.encoded_samples@saved",
                "params:tybalt.generation.interpolation",
            ],
            outputs=f"{out}.interpolation",
            name="decode_tybalt_interpolation",
        ),
        Node(
            nodes.latent_report,
            inputs=[
                f"{out}.node_activity",
                f"{out}.high_weight_genes",
                f"{out}.latent_maps",
                f"{out}.activation_distributions",
                f"{out}.training_curves",
                "params:tybalt.analysis",
            ],
            outputs=[f"{out}.report", f"{out}.headline"],
            name="write_tybalt_report",
        ),
    ]


def create_pipeline(registry: Registry | None = None, **kwargs: Any) -> Pipeline:
    return per_dataset("tybalt", "bulk", _nodes, registry)
