"""vega: train VEGA on gene modules, encode module activities, Bayes factors, figures."""

from kedro.pipeline import Node, Pipeline

from genevae.pipelines.data_processing.pipeline import GENE_SET_COLLECTIONS
from genevae.pipelines.vega import nodes


def create_pipeline(**kwargs) -> Pipeline:
    collection = "params:vega.gene_module_collection"
    masks = {c: f"kang_gene_module_mask_{c}" for c in GENE_SET_COLLECTIONS}
    gene_sets = {c: f"{c}_gene_sets" for c in GENE_SET_COLLECTIONS}
    return Pipeline(
        [
            Node(
                nodes.select_collection,
                inputs={"collection": collection, **masks},
                outputs="vega_gene_module_mask",
                name="select_gene_module_mask",
            ),
            Node(
                nodes.select_collection,
                inputs={"collection": collection, **gene_sets},
                outputs="vega_gene_sets",
                name="select_gene_sets",
            ),
            Node(
                nodes.train_vega,
                inputs=["kang_processed", "vega_gene_module_mask", "params:vega"],
                outputs=["vega_model", "vega_training_history", "vega_final_metrics"],
                name="train_vega",
            ),
            Node(
                nodes.encode_module_activities,
                inputs=["vega_model", "kang_processed", "params:vega.missing_genes"],
                outputs="vega_module_activities",
                name="encode_module_activities",
            ),
            Node(
                nodes.decoder_weight_table,
                inputs="vega_model",
                outputs="vega_decoder_weights",
                name="decoder_weight_table",
            ),
            Node(
                nodes.differential_activity_tables,
                inputs=["vega_model", "kang_processed", "params:vega.analysis"],
                outputs="vega_differential_activity",
                name="differential_activity",
            ),
            Node(
                nodes.latent_maps,
                inputs=["vega_module_activities", "params:vega.analysis"],
                outputs="vega_latent_maps",
                name="latent_maps",
            ),
            Node(
                nodes.top_genes_table,
                inputs=["vega_decoder_weights", "params:vega.analysis"],
                outputs="vega_top_module_genes",
                name="top_module_genes",
            ),
            Node(
                nodes.volcano_figures,
                inputs=["vega_differential_activity", "params:vega.analysis"],
                outputs="vega_volcano_plots",
                name="volcano_plots",
            ),
            Node(
                nodes.activity_figures,
                inputs=["vega_module_activities", "params:vega.analysis"],
                outputs="vega_activity_plots",
                name="activity_plots",
            ),
            Node(
                nodes.gsea_comparison,
                inputs=[
                    "kang_processed",
                    "vega_gene_sets",
                    "vega_differential_activity",
                    "params:vega.analysis",
                ],
                outputs=["vega_gsea_comparison", "vega_gsea_scatter"],
                name="gsea_comparison",
            ),
            Node(
                nodes.training_curve_figure,
                inputs="vega_training_history",
                outputs="vega_training_curves",
                name="training_curves",
            ),
            Node(
                nodes.bayes_factor_report,
                inputs=[
                    "vega_differential_activity",
                    "vega_top_module_genes",
                    "vega_gsea_comparison",
                    "vega_volcano_plots",
                    "vega_gsea_scatter",
                    "vega_latent_maps",
                    "vega_activity_plots",
                    "vega_training_curves",
                    "params:vega.analysis",
                ],
                outputs=["vega_report", "vega_headline"],
                name="report",
            ),
        ],
        tags="vega",
    )
