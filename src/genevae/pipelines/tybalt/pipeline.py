"""tybalt: train Tybalt on TCGA, encode samples, interpret nodes, generate profiles, figures."""

from kedro.pipeline import Node, Pipeline

from genevae.pipelines.tybalt import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.train_tybalt,
                inputs=[
                    "tcga_processed",
                    "params:tybalt.model",
                    "params:tybalt.training",
                    "params:tybalt.validation",
                ],
                outputs=["tybalt_model", "tybalt_training_history", "tybalt_final_metrics"],
                name="train_tybalt",
            ),
            Node(
                nodes.encode_samples,
                inputs=["tybalt_model", "tcga_processed"],
                outputs=["tybalt_encoded_samples", "tybalt_latent_means"],
                name="encode_tybalt_samples",
            ),
            Node(
                nodes.decoder_weight_table,
                inputs="tybalt_model",
                outputs="tybalt_decoder_weights",
                name="extract_tybalt_decoder_weights",
            ),
            Node(
                nodes.high_weight_gene_table,
                inputs=["tybalt_decoder_weights", "params:tybalt.analysis"],
                outputs="tybalt_high_weight_genes",
                name="find_tybalt_high_weight_genes",
            ),
            Node(
                nodes.node_activity_table,
                inputs="tybalt_latent_means",
                outputs="tybalt_node_activity",
                name="summarise_tybalt_node_activity",
            ),
            Node(
                nodes.latent_maps,
                inputs=[
                    "tybalt_encoded_samples",
                    "tcga_cancer_type_colors",
                    "params:tybalt.analysis",
                ],
                outputs="tybalt_latent_maps",
                name="map_tybalt_latent_space",
            ),
            Node(
                nodes.activation_distribution_figure,
                inputs=["tybalt_latent_means", "params:tybalt.analysis"],
                outputs="tybalt_activation_distributions",
                name="plot_tybalt_activation_distributions",
            ),
            Node(
                nodes.training_curve_figure,
                inputs="tybalt_training_history",
                outputs="tybalt_training_curves",
                name="plot_tybalt_training_curves",
            ),
            Node(
                nodes.sample_from_prior,
                inputs=["tybalt_model", "params:tybalt.generation"],
                outputs="tybalt_prior_samples",
                name="sample_tybalt_prior",
            ),
            Node(
                nodes.latent_arithmetic_profiles,
                inputs=["tybalt_model", "tybalt_encoded_samples", "params:tybalt.generation"],
                outputs="tybalt_latent_arithmetic",
                name="decode_tybalt_latent_arithmetic",
            ),
            Node(
                nodes.interpolation_profiles,
                inputs=[
                    "tybalt_model",
                    "tybalt_encoded_samples",
                    "params:tybalt.generation.interpolation",
                ],
                outputs="tybalt_interpolation",
                name="decode_tybalt_interpolation",
            ),
            Node(
                nodes.latent_report,
                inputs=[
                    "tybalt_node_activity",
                    "tybalt_high_weight_genes",
                    "tybalt_latent_maps",
                    "tybalt_activation_distributions",
                    "tybalt_training_curves",
                    "params:tybalt.analysis",
                ],
                outputs=["tybalt_report", "tybalt_headline"],
                name="write_tybalt_report",
            ),
        ],
        tags="tybalt",
    )
