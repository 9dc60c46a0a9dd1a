"""evaluation: score every model that has run, beside baselines, into one HTML report.

Namespaced sub-pipelines (visible as groups in kedro-viz, runnable alone with ``--namespaces``):

- ``evaluation.vega``, ``evaluation.tybalt``: latent quality and reconstruction beside a
  PCA baseline (VEGA adds gene-module activity against GSEA and module scores);
- ``evaluation.gpo_vae``: the gpo_vae pipeline's perturbation/GRN table with its baselines;
- ``evaluation.generalisation``: VEGA's biological and technical generalisation (Fig. 4);
- ``evaluation.benchmark``: recovery of planted modules on synthetic data;
- ``evaluation.report``: the HTML report, cross-model table and MLflow metrics.

Model outputs are read through ``OptionalDataset`` entries (``evaluation.<model>.*``), so a
model that has not run yields a "not run yet" section instead of a failure. Each namespace
saves its section; the report reads the latest saved sections, so
``kedro run --pipeline evaluation --namespaces evaluation.tybalt,evaluation.report`` refreshes
one model and keeps the others from earlier runs.
"""

from kedro.pipeline import Node, Pipeline

from genevae.pipelines.data_processing.pipeline import GENE_SET_COLLECTIONS
from genevae.pipelines.evaluation import experiments, nodes, report
from genevae.pipelines.vega.nodes import select_collection

SECTIONS = ("vega", "generalisation", "benchmark", "tybalt", "gpo_vae")
REPORT_PARAMS = "params:evaluation.report"


def _namespaced(name: str, node_list: list[Node]) -> Pipeline:
    return Pipeline(
        node_list,
        namespace=f"evaluation.{name}",
        prefix_datasets_with_namespace=False,
        tags=["evaluation"],
    )


def _section_nodes(name: str, lineage_inputs: list[str], parts: list[str]) -> list[Node]:
    """Provenance of the optional inputs, then the saved section and metrics table."""
    prefix = f"evaluation.{name}"
    return [
        Node(
            nodes.provenance,
            inputs=[REPORT_PARAMS, *lineage_inputs],
            outputs=f"{prefix}.lineage",
            name="provenance",
        ),
        Node(
            nodes.assemble_section,
            inputs=[f"params:{prefix}.section", REPORT_PARAMS, f"{prefix}.lineage", *parts],
            outputs=[f"{prefix}.section", f"{prefix}.metrics"],
            name="assemble_section",
        ),
    ]


def latent_model_pipeline(name: str, *, modules: bool = False) -> Pipeline:
    """Latent quality + reconstruction (+ module activity) of a model with a latent space."""
    prefix, params = f"evaluation.{name}", f"params:evaluation.{name}"
    model, encoded = f"{prefix}.model", f"{prefix}.encoded"
    node_list = [
        Node(
            nodes.latent_and_reconstruction,
            [model, encoded, params],
            [f"{prefix}.latent_part", f"{prefix}.reconstruction_part", f"{prefix}.gene_errors"],
            name="latent_and_reconstruction",
        ),
    ]
    parts = [f"{prefix}.latent_part", f"{prefix}.reconstruction_part"]
    lineage = [model, encoded]
    if modules:
        node_list.append(
            Node(
                nodes.module_activity,
                [f"{prefix}.differential_activity", model, encoded, params],
                [f"{prefix}.module_part", f"{prefix}.module_comparison"],
                name="module_activity",
            )
        )
        parts.append(f"{prefix}.module_part")
        lineage.append(f"{prefix}.differential_activity")
    return _namespaced(name, node_list + _section_nodes(name, lineage, parts))


def gpo_vae_pipeline() -> Pipeline:
    """GPO-VAE's own comparison table (variants, baselines, noise ceiling) into a section."""
    comparison = "evaluation.gpo_vae.comparison"
    return _namespaced(
        "gpo_vae",
        [
            Node(
                nodes.gpo_vae_results,
                [comparison, "params:evaluation.gpo_vae"],
                "evaluation.gpo_vae.results_part",
                name="gpo_vae_results",
            ),
            *_section_nodes("gpo_vae", [comparison], ["evaluation.gpo_vae.results_part"]),
        ],
    )


def generalisation_pipeline() -> Pipeline:
    """VEGA Fig. 4 on the processed Kang data with the vega parameters (same mask, same model)."""
    prefix, params = "evaluation.generalisation", "params:evaluation.generalisation"
    masks = {c: f"kang_gene_module_mask_{c}" for c in GENE_SET_COLLECTIONS}
    mask = f"{prefix}.gene_module_mask"
    return _namespaced(
        "generalisation",
        [
            Node(
                select_collection,
                {"collection": "params:vega.gene_module_collection", **masks},
                mask,
                name="select_gene_module_mask",
            ),
            Node(
                experiments.biological_experiment,
                ["kang_processed", mask, "evaluation.vega.model", "params:vega", params],
                f"{prefix}.biological",
                name="biological_generalisation",
            ),
            Node(
                experiments.technical_experiment,
                ["kang_processed", mask, "params:vega", params],
                f"{prefix}.technical",
                name="technical_generalisation",
            ),
            Node(
                experiments.generalisation_parts,
                [f"{prefix}.biological", f"{prefix}.technical", params],
                f"{prefix}.part",
                name="generalisation_tables",
            ),
            *_section_nodes("generalisation", [], [f"{prefix}.part"]),
        ],
    )


def benchmark_pipeline() -> Pipeline:
    """Planted-module recovery on synthetic data sets of several sizes."""
    prefix, params = "evaluation.benchmark", "params:evaluation.benchmark"
    return _namespaced(
        "benchmark",
        [
            Node(
                experiments.planted_module_benchmark,
                ["params:vega", params],
                f"{prefix}.results",
                name="planted_module_benchmark",
            ),
            Node(
                experiments.benchmark_part,
                [f"{prefix}.results", params],
                f"{prefix}.part",
                name="benchmark_tables",
            ),
            *_section_nodes("benchmark", [], [f"{prefix}.part"]),
        ],
    )


def report_pipeline() -> Pipeline:
    """All saved sections → HTML report, comparison tables, MLflow metrics."""
    return _namespaced(
        "report",
        [
            Node(
                report.build_report,
                [
                    REPORT_PARAMS,
                    "params:evaluation",
                    *(f"evaluation.{s}.section" for s in SECTIONS),
                ],
                [
                    "evaluation_report",
                    "evaluation_scores",
                    "evaluation_model_comparison",
                    "evaluation_model_comparison_markdown",
                    "evaluation_metrics",
                ],
                name="build_report",
            )
        ],
    )


def create_pipeline(**kwargs) -> Pipeline:
    return (
        latent_model_pipeline("vega", modules=True)
        + latent_model_pipeline("tybalt")
        + gpo_vae_pipeline()
        + generalisation_pipeline()
        + benchmark_pipeline()
        + report_pipeline()
    )
