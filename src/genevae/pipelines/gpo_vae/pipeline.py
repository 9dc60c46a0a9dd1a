"""gpo_vae: model inputs, then GPO-VAE and its two ablations through one sub-pipeline.

``gpo_vae.full`` is GPO-VAE, ``gpo_vae.no_grn`` drops the GRN-aligned loss (CRADLE-VAE-like)
and ``gpo_vae.no_artifact`` drops the artifact latent and counterfactual loss (SAMS-VAE-like).
Each is the same modular pipeline under its own namespace, differing only in
``params:gpo_vae.<variant>.variant.model_overrides``; one comparison node scores them with
the baselines. Run one variant alone with ``kedro run --pipelines gpo_vae --namespaces
gpo_vae.full`` (after the model input exists).
"""

from kedro.pipeline import Node, Pipeline

from genevae.pipelines.gpo_vae import nodes

# namespace → row name in the comparison table
VARIANTS = {"full": "gpo_vae", "no_grn": "gpo_vae_no_grn", "no_artifact": "gpo_vae_no_artifact"}
MODEL_INPUT = "gpo_vae_model_input"


def _variant_pipeline() -> Pipeline:
    """Train, predict ATEs, score test IWELBO, read out the GRN and draw it (one variant)."""
    return Pipeline(
        [
            Node(
                nodes.train_gpo_vae,
                inputs=["model_input", "params:model", "params:training", "params:variant"],
                outputs=["model", "training_history", "epoch_metrics"],
                name="train",
            ),
            Node(
                nodes.predict_ate,
                inputs=["model", "model_input", "params:evaluation"],
                outputs="predicted_ate",
                name="predict_ate",
            ),
            Node(
                nodes.iwelbo_on_test_cells,
                inputs=["model", "model_input", "params:evaluation"],
                outputs="test_iwelbo",
                name="test_iwelbo",
            ),
            Node(nodes.grn_edges, inputs="model", outputs="grn_edges", name="grn_edges"),
            Node(
                nodes.grn_heatmap_figure,
                inputs=["grn_edges", "model"],
                outputs="grn_heatmap",
                name="grn_heatmap",
            ),
            Node(
                nodes.top_edges,
                inputs=["grn_edges", "params:evaluation"],
                outputs="top_edges",
                name="top_edges",
            ),
            Node(
                nodes.top_edges_figure,
                inputs=["top_edges", "model"],
                outputs="top_edges_plot",
                name="top_edges_plot",
            ),
            Node(
                nodes.training_curve_figure,
                inputs=["training_history", "params:variant"],
                outputs="training_curves",
                name="training_curves",
            ),
        ]
    )


def _variant(namespace: str) -> Pipeline:
    return Pipeline(
        _variant_pipeline(),
        namespace=f"gpo_vae.{namespace}",
        inputs={"model_input": MODEL_INPUT},
        parameters={
            "params:model": "params:gpo_vae.model",
            "params:training": "params:gpo_vae.training",
            "params:evaluation": "params:gpo_vae.evaluation",
        },
    )


def create_pipeline(**kwargs) -> Pipeline:
    build = Node(
        nodes.build_model_input,
        inputs=["adamson_processed", "params:gpo_vae.inputs"],
        outputs=MODEL_INPUT,
        name="build_model_input",
        namespace="gpo_vae",
    )
    variant_outputs = {
        f"{row}__{kind}": f"gpo_vae.{namespace}.{output}"
        for namespace, row in VARIANTS.items()
        for kind, output in (
            ("ate", "predicted_ate"),
            ("iwelbo", "test_iwelbo"),
            ("edges", "grn_edges"),
        )
    }
    compare = Node(
        nodes.compare_predictors,
        inputs={
            "model_input": MODEL_INPUT,
            "reference_edges": "k562_chipatlas_edges",
            "params": "params:gpo_vae.evaluation",
            **variant_outputs,
        },
        outputs=["gpo_vae_comparison", "gpo_vae_comparison_metrics"],
        name="compare_predictors",
        namespace="gpo_vae",
    )
    report = Node(
        nodes.grn_report,
        inputs=[
            "gpo_vae_comparison",
            "gpo_vae.full.top_edges",
            "gpo_vae.full.grn_heatmap",
            "gpo_vae.full.top_edges_plot",
            "gpo_vae.full.training_curves",
            "params:gpo_vae.evaluation",
        ],
        outputs=["gpo_vae_report", "gpo_vae_headline"],
        name="report",
        namespace="gpo_vae",
    )
    return Pipeline(
        [build, *(_variant(namespace) for namespace in VARIANTS), compare, report], tags="gpo_vae"
    )
