"""gpo_vae: per registered Perturb-seq dataset, model inputs, then GPO-VAE and two ablations.

``gpo_vae.<dataset>.full`` is GPO-VAE, ``….no_grn`` drops the GRN-aligned loss (CRADLE-VAE-like)
and ``….no_artifact`` drops the artifact latent and counterfactual loss (SAMS-VAE-like). Each
variant is the same sub-pipeline, differing only in ``params:gpo_vae.<dataset>.<variant>.variant``
(its model overrides); one comparison node scores them with the baselines against the
dataset's reference network. Run one variant alone with ``kedro run --pipelines gpo_vae
--namespaces gpo_vae.adamson.full`` (after the model input exists).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kedro.pipeline import Node, Pipeline

from genevae.pipelines.gpo_vae import nodes
from genevae.pipelines.templates import per_dataset
from genevae.registry import Registry

# variant → row name in the comparison table
VARIANTS = {"full": "gpo_vae", "no_grn": "gpo_vae_no_grn", "no_artifact": "gpo_vae_no_artifact"}


def _variant(name: str, variant: str) -> Pipeline:
    """Train, predict ATEs, score test IWELBO, read out the GRN and draw it (one variant)."""
    model_input = f"gpo_vae.{name}.model_input"
    out = f"gpo_vae.{name}.{variant}"
    evaluation = "params:gpo_vae.evaluation"
    node_list = [
        Node(
            nodes.train_gpo_vae,
            inputs=[
                model_input,
                "params:gpo_vae.model",
                "params:gpo_vae.training",
                f"params:gpo_vae.{variant}.variant",
            ],
            outputs=[f"{out}.model", f"{out}.training_history", f"{out}.epoch_metrics"],
            name="train",
        ),
        Node(
            nodes.predict_ate,
            inputs=[f"{out}.model", model_input, evaluation],
            outputs=f"{out}.predicted_ate",
            name="predict_ate",
        ),
        Node(
            nodes.iwelbo_on_test_cells,
            inputs=[f"{out}.model", model_input, evaluation],
            outputs=f"{out}.test_iwelbo",
            name="test_iwelbo",
        ),
        Node(nodes.grn_edges, inputs=f"{out}.model", outputs=f"{out}.grn_edges", name="grn_edges"),
        Node(
            nodes.grn_heatmap_figure,
            inputs=[f"{out}.grn_edges", f"{out}.model"],
            outputs=f"{out}.grn_heatmap",
            name="grn_heatmap",
        ),
        Node(
            nodes.top_edges,
            inputs=[f"{out}.grn_edges", evaluation],
            outputs=f"{out}.top_edges",
            name="top_edges",
        ),
        Node(
            nodes.top_edges_figure,
            inputs=[f"{out}.top_edges", f"{out}.model"],
            outputs=f"{out}.top_edges_plot",
            name="top_edges_plot",
        ),
        Node(
            nodes.training_curve_figure,
            inputs=[f"{out}.training_history", f"params:gpo_vae.{variant}.variant"],
            outputs=f"{out}.training_curves",
            name="training_curves",
        ),
    ]
    return Pipeline(node_list, namespace=variant, prefix_datasets_with_namespace=False)


def _nodes(name: str, entry: Mapping[str, Any]) -> list[Node]:
    model_input = f"gpo_vae.{name}.model_input"
    build = Node(
        nodes.build_model_input,
        inputs=[f"{name}.processed", "params:gpo_vae.inputs"],
        outputs=model_input,
        name="build_model_input",
    )
    variant_outputs = {
        f"{row}__{kind}": f"gpo_vae.{name}.{variant}.{output}"
        for variant, row in VARIANTS.items()
        for kind, output in (
            ("ate", "predicted_ate"),
            ("iwelbo", "test_iwelbo"),
            ("edges", "grn_edges"),
        )
    }
    reference = entry.get("grn_reference")
    references = {"reference_edges": f"grn_references.{reference}.edges"} if reference else {}
    compare = Node(
        nodes.compare_predictors,
        inputs={
            "model_input": model_input,
            "params": "params:gpo_vae.evaluation",
            **references,
            **variant_outputs,
        },
        outputs=[f"gpo_vae.{name}.comparison@saved", f"gpo_vae.{name}.comparison_metrics"],
        name="compare_predictors",
    )
    full = f"gpo_vae.{name}.full"
    report = Node(
        nodes.grn_report,
        inputs=[
            f"gpo_vae.{name}.comparison@saved",
            f"{full}.top_edges",
            f"{full}.grn_heatmap",
            f"{full}.top_edges_plot",
            f"{full}.training_curves",
            "params:gpo_vae.evaluation",
        ],
        outputs=[f"gpo_vae.{name}.report", f"gpo_vae.{name}.headline"],
        name="report",
    )
    variants = [node for variant in VARIANTS for node in _variant(name, variant).nodes]
    return [build, *variants, compare, report]


def create_pipeline(registry: Registry | None = None, **kwargs: Any) -> Pipeline:
    return per_dataset("gpo_vae", "perturbseq", _nodes, registry)
