"""evaluation: score every model that has run, beside baselines, into one HTML report.

One modular pipeline per part, each under its own namespace (its nodes and datasets are
prefixed ``evaluation.<part>.``; kedro-viz shows them as groups; ``--namespaces`` runs them):

- ``evaluation.vega``, ``evaluation.tybalt``: latent quality and reconstruction beside PCA and
  gene-mean baselines (VEGA adds gene-module activity against GSEA and module scores);
- ``evaluation.gpo_vae``: the gpo_vae pipeline's perturbation/GRN table with its baselines;
- ``evaluation.generalisation``: VEGA's biological and technical generalisation (Fig. 4);
- ``evaluation.benchmark``: recovery of planted modules on synthetic data;
- ``evaluation.report``: the HTML report, cross-model tables and MLflow metrics.

Each model section scores the first registered dataset of its kind (conf/*/datasets.yml: the
demos Kang, TCGA and Adamson unless conf/local lists others first). Model outputs are read
through their ``@optional`` views (an ``OptionalDataset`` over the model pipeline's own file,
e.g. ``vega.kang.model@optional``; catalog_vega.yml), so the lineage from the model to the
report is unbroken and a model that has not run yields a "not run yet" section rather than a
failed run. Every part saves its section; the report reads the latest saved section of
each, so ``kedro run --pipelines evaluation --namespaces evaluation.tybalt,evaluation.report``
refreshes one part and keeps the others from earlier runs.
"""

from kedro.pipeline import Node, Pipeline

from genevae.pipelines.evaluation import benchmark, generalisation, modules, nodes, report
from genevae.pipelines.vega.nodes import select_collection
from genevae.registry import MODEL_PIPELINE, Registry

SECTIONS = ("vega", "generalisation", "benchmark", "tybalt", "gpo_vae")
REPORT = "params:evaluation.report"


def _part(name: str, node_list: list[Node], *, inputs: dict[str, str] | None = None) -> Pipeline:
    """Namespace ``evaluation.<name>``: local dataset names get the prefix; ``inputs`` maps
    local names to outside datasets; the (fully qualified) parameters keep their names."""
    parameters = {i for node in node_list for i in node.inputs if i.startswith("params:")}
    return Pipeline(
        node_list,
        namespace=f"evaluation.{name}",
        inputs=inputs or {},
        parameters=parameters,
        tags=["evaluation"],
    )


def _section_nodes(name: str, lineage_inputs: list[str], parts: list[str]) -> list[Node]:
    """Provenance of the optional inputs, then the saved section and its metrics table."""
    return [
        Node(nodes.provenance, [REPORT, *lineage_inputs], "lineage", name="provenance"),
        Node(
            nodes.assemble_section,
            [f"params:evaluation.{name}.section", REPORT, "lineage", *parts],
            ["section", "metrics"],
            name="assemble_section",
        ),
    ]


def latent_model_pipeline(
    name: str, sources: dict[str, str], *, analysis: str | None = None
) -> Pipeline:
    """Latent quality + reconstruction (+ module activity and the evidence behind the calls,
    given VEGA's analysis parameters) of a model with a latent space; ``sources`` maps
    ``model``, ``encoded`` (and for modules ``differential_activity``, ``gsea_comparison``,
    ``differential_evidence``, ``evidence_stability``, ``heldout_reconstruction``) to the
    model pipeline's datasets."""
    settings = f"params:evaluation.{name}"
    node_list = [
        Node(
            nodes.latent_and_reconstruction,
            ["model", "encoded", settings],
            ["latent_part", "reconstruction_part", "gene_errors"],
            name="latent_and_reconstruction",
        )
    ]
    parts, lineage = ["latent_part", "reconstruction_part"], ["model", "encoded"]
    if analysis is not None:
        node_list.append(
            Node(
                modules.module_activity,
                [
                    "differential_activity",
                    "gsea_comparison",
                    "model",
                    "encoded",
                    analysis,
                    settings,
                ],
                ["module_part", "module_comparison"],
                name="module_activity",
            )  # fmt: skip
        )
        evidence = ["differential_evidence", "evidence_stability", "heldout_reconstruction"]
        node_list.append(
            Node(modules.evidence_part, [*evidence, settings], "evidence_part", name="evidence")
        )
        parts += ["module_part", "evidence_part"]
        lineage += ["differential_activity", "gsea_comparison", *evidence]
    return _part(name, node_list + _section_nodes(name, lineage, parts), inputs=sources)


def gpo_vae_pipeline(comparison: str) -> Pipeline:
    """GPO-VAE's own comparison table (variants, baselines, noise ceiling) into a section."""
    node_list = [
        Node(
            nodes.gpo_vae_results,
            ["comparison", "params:evaluation.gpo_vae"],
            "results_part",
            name="gpo_vae_results",
        ),
        *_section_nodes("gpo_vae", ["comparison"], ["results_part"]),
    ]
    return _part("gpo_vae", node_list, inputs={"comparison": comparison})


def generalisation_pipeline(dataset: str, collections: list[str]) -> Pipeline:
    """VEGA Fig. 4 on a processed scRNA-seq dataset, with the trained model's own settings."""
    settings = "params:evaluation.generalisation"
    vega = f"params:vega.{dataset}"
    masks = {c: f"{dataset}.gene_module_mask.{c}" for c in collections}
    shared = ["processed", "gene_module_mask", "vega_model", vega, settings]
    node_list = [
        Node(
            select_collection,
            {"collection": f"{vega}.gene_module_collection", **masks},
            "gene_module_mask",
            name="select_gene_module_mask",
        ),
        Node(generalisation.biological_experiment, shared, "biological", name="biological"),
        Node(generalisation.technical_experiment, shared, "technical", name="technical"),
        Node(
            generalisation.generalisation_parts,
            ["biological", "technical", settings],
            "part",
            name="generalisation_tables",
        ),
        *_section_nodes("generalisation", [], ["part"]),
    ]
    return _part(
        "generalisation",
        node_list,
        inputs={
            "vega_model": f"vega.{dataset}.model@optional",
            "processed": f"{dataset}.processed",
        }
        | {mask: mask for mask in masks.values()},
    )


def benchmark_pipeline() -> Pipeline:
    """Planted-module (VEGA) and planted-GRN (GPO-VAE) recovery on synthetic data sets."""
    settings = "params:evaluation.benchmark"
    node_list = [
        Node(
            benchmark.planted_module_benchmark,
            ["params:vega", settings],
            "results",
            name="planted_module_benchmark",
        ),
        Node(
            benchmark.planted_grn_benchmark,
            ["params:gpo_vae", settings],
            "grn_results",
            name="planted_grn_benchmark",
        ),
        Node(
            benchmark.benchmark_part,
            ["results", "grn_results", settings],
            "part",
            name="benchmark_tables",
        ),
        *_section_nodes("benchmark", [], ["part"]),
    ]
    return _part("benchmark", node_list)


def report_pipeline() -> Pipeline:
    """All saved sections → HTML report, comparison tables, MLflow metrics."""
    outputs = [
        "evaluation_report",
        "evaluation_scores",
        "evaluation_model_comparison",
        "evaluation_model_comparison_markdown",
        "evaluation_metrics",
    ]
    build = Node(
        report.build_report,
        [REPORT, "params:evaluation", *(f"{s}_section" for s in SECTIONS)],
        outputs,
        name="build_report",
    )
    return Pipeline(
        [build],
        namespace="evaluation.report",
        inputs={f"{s}_section": f"evaluation.{s}.section" for s in SECTIONS},
        outputs=set(outputs),
        parameters={REPORT, "params:evaluation"},
        tags=["evaluation"],
    )


def _model_sections(registry: Registry) -> list[Pipeline]:
    """The model sections, each on the first registered dataset of its model's kind."""
    first = {
        MODEL_PIPELINE[kind]: names[0]
        for kind in MODEL_PIPELINE
        if (names := registry.of_kind(kind))
    }
    sections = []
    if "vega" in first:
        cells = first["vega"]
        vega = {
            "model": f"vega.{cells}.model@optional",
            "encoded": f"vega.{cells}.module_activities@optional",
            "differential_activity": f"vega.{cells}.differential_activity@optional",
            "gsea_comparison": f"vega.{cells}.gsea_comparison@optional",
            "differential_evidence": f"vega.{cells}.differential_evidence@optional",
            "evidence_stability": f"vega.{cells}.evidence_stability@optional",
            "heldout_reconstruction": f"vega.{cells}.heldout_reconstruction@optional",
        }
        analysis = f"params:vega.{cells}.analysis"
        sections.append(latent_model_pipeline("vega", vega, analysis=analysis))
        collections = list(registry.datasets[cells].get("gene_sets") or [])
        sections.append(generalisation_pipeline(cells, collections))
    if "tybalt" in first:
        bulk = first["tybalt"]
        tybalt = {
            "model": f"tybalt.{bulk}.model@optional",
            "encoded": f"tybalt.{bulk}.encoded_samples@optional",
        }
        sections.append(latent_model_pipeline("tybalt", tybalt))
    if "gpo_vae" in first:
        sections.append(gpo_vae_pipeline(f"gpo_vae.{first['gpo_vae']}.comparison@optional"))
    return sections


def create_pipeline(registry: Registry | None = None, **kwargs) -> Pipeline:
    from genevae.config import current_registry

    registry = registry or current_registry()
    return sum(_model_sections(registry), Pipeline([])) + benchmark_pipeline() + report_pipeline()
