"""data_processing: four namespaced sub-pipelines (tcga, scrna, genesets, perturbseq)."""

from kedro.pipeline import Node, Pipeline

from genevae.pipelines.data_processing import nodes

GENE_SET_COLLECTIONS = ("reactome", "hallmark")


def _tcga() -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.combine_tcga_cohorts,
                inputs={"BRCA": "tcga_brca_raw", "READ": "tcga_read_raw"},
                outputs=["tcga_expression", "tcga_samples"],
                name="combine_tcga_cohorts",
            ),
            Node(
                nodes.select_tcga_genes,
                inputs=["tcga_expression", "tybalt_reference_genes", "params:data_processing.tcga"],
                outputs="tcga_selected_expression",
                name="select_tcga_genes",
            ),
            Node(
                nodes.scale_tcga,
                inputs=["tcga_selected_expression", "tcga_samples", "params:data_processing.tcga"],
                outputs=["tcga_processed", "tcga_scaler"],
                name="scale_tcga",
            ),
        ],
        namespace="tcga",
        prefix_datasets_with_namespace=False,
    )


def _scrna() -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.preprocess_single_cell,
                inputs=["kang_raw", "params:data_processing.scrna"],
                outputs=["kang_processed", "kang_qc_report"],
                name="preprocess_kang",
            )
        ],
        namespace="scrna",
        prefix_datasets_with_namespace=False,
    )


def _gene_modules() -> Pipeline:
    module_nodes = [
        Node(
            nodes.build_module_mask,
            inputs=[
                "kang_processed",
                f"{collection}_gene_sets",
                "params:data_processing.gene_modules",
            ],
            outputs=[
                f"kang_gene_module_mask_{collection}",
                f"kang_module_overlap_{collection}",
            ],
            name=f"build_kang_mask_{collection}",
        )
        for collection in GENE_SET_COLLECTIONS
    ]
    grn_node = Node(
        nodes.build_module_mask,
        inputs=[
            "adamson_processed",
            "k562_chipatlas_regulons",
            "params:data_processing.grn_modules",
        ],
        outputs=["adamson_gene_module_mask_chipatlas", "adamson_module_overlap_chipatlas"],
        name="build_adamson_mask_chipatlas",
    )
    return Pipeline(
        [*module_nodes, grn_node], namespace="genesets", prefix_datasets_with_namespace=False
    )


def _perturbseq() -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.preprocess_perturbseq,
                inputs=["adamson_raw", "params:data_processing.perturbseq"],
                outputs=["adamson_processed", "adamson_top_de_genes"],
                name="preprocess_adamson",
            )
        ],
        namespace="perturbseq",
        prefix_datasets_with_namespace=False,
    )


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [_tcga(), _scrna(), _gene_modules(), _perturbseq()],
        namespace="data_processing",
        prefix_datasets_with_namespace=False,
        tags="data_processing",
    )
