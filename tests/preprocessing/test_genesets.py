"""GMT and GRN readers and VEGA's gene-module mask, on real files and with property tests."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genevae.errors import GenevaeInputError
from genevae.preprocessing.genesets import (
    build_gene_module_mask,
    gene_sets_from_mask,
    read_gmt,
    read_gmts,
    read_grn_edges,
    shuffled_gene_module_masks,
    write_gmt,
)
from tests.conftest import requires_shared_data

HALLMARK = "genesets/msigdb_hallmark_v7x_symbols_vega.gmt"
HALLMARK_V70 = "genesets/msigdb_hallmark_v7.0_symbols_gseapy.gmt"
REACTOME = "genesets/msigdb_c2cp_reactome_674_symbols_vega.gmt"
CHIPATLAS = "grn/chipatlas_K562_ChipSeq_causalbench.csv.gz"
ARACNE = "grn/gbm_aracne_regulons_vega.gmt"
KANG = "scrna/kang2018_pbmc_ifnb_scgen_valid.h5ad"


@pytest.fixture(scope="module")
def kang_genes(shared_data) -> list[str]:
    import anndata as ad

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 2018 file triggers anndata format warnings
        return ad.read_h5ad(shared_data / KANG, backed="r").var_names.tolist()


# ---------------------------------------------------------------- read_gmt


def test_read_gmt_strips_blanks_and_repeats(tmp_path):
    path = tmp_path / "sets.gmt"
    path.write_text("A\tdesc\t G1 \tG2\t\tG1\t\n\nB\thttp://x\tG3\n")
    assert read_gmt(path) == {"A": ["G1", "G2"], "B": ["G3"]}


@pytest.mark.parametrize("line", ["ONLY_NAME\tdesc\n", "NAME\n", "NAME\tdesc\t\t\n"])
def test_read_gmt_rejects_lines_without_genes(tmp_path, line):
    path = tmp_path / "bad.gmt"
    path.write_text("A\tdesc\tG1\n" + line)
    with pytest.raises(GenevaeInputError, match=r"bad\.gmt, line 2"):
        read_gmt(path)


def test_read_gmt_rejects_empty_file_and_duplicate_names(tmp_path):
    empty = tmp_path / "empty.gmt"
    empty.write_text("\n\n")
    with pytest.raises(GenevaeInputError, match="empty.gmt is empty"):
        read_gmt(empty)
    duplicated = tmp_path / "dup.gmt"
    duplicated.write_text("A\td\tG1\nB\td\tG2\nA\td\tG3\n")
    with pytest.raises(
        GenevaeInputError, match="line 3: gene set 'A' was already defined on line 1"
    ):
        read_gmt(duplicated)
    with pytest.raises(GenevaeInputError, match="does not exist"):
        read_gmt(tmp_path / "absent.gmt")


def test_read_gmts_merges_and_rejects_cross_file_duplicates(tmp_path):
    write_gmt({"A": ["G1"]}, tmp_path / "a.gmt")
    write_gmt({"B": ["G2"]}, tmp_path / "b.gmt")
    write_gmt({"A": ["G9"]}, tmp_path / "c.gmt")
    assert read_gmts([tmp_path / "a.gmt", tmp_path / "b.gmt"]) == {"A": ["G1"], "B": ["G2"]}
    with pytest.raises(GenevaeInputError, match="both .*a.gmt and .*c.gmt"):
        read_gmts([tmp_path / "a.gmt", tmp_path / "c.gmt"])


_symbol = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", min_size=1, max_size=10)


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        _symbol, st.lists(_symbol, min_size=1, max_size=15, unique=True), min_size=1, max_size=10
    )
)
def test_gmt_round_trip(tmp_path_factory, gene_sets):
    path = tmp_path_factory.mktemp("gmt") / "sets.gmt"
    write_gmt(gene_sets, path)
    assert read_gmt(path) == gene_sets


@requires_shared_data
@pytest.mark.parametrize(
    ("name", "n_sets", "n_memberships"),
    [(HALLMARK, 50, 7321), (HALLMARK_V70, 50, 7322), (REACTOME, 674, 37601)],
)
def test_real_gmt_files(shared_data, name, n_sets, n_memberships):
    gene_sets = read_gmt(shared_data / name)
    assert len(gene_sets) == n_sets
    assert sum(len(g) for g in gene_sets.values()) == n_memberships


@requires_shared_data
def test_hallmark_versions_differ_by_symbol_renames(shared_data):
    new, old = read_gmt(shared_data / HALLMARK), read_gmt(shared_data / HALLMARK_V70)
    assert new.keys() == old.keys()
    changed = [name for name in new if set(new[name]) != set(old[name])]
    assert len(changed) == 30
    all_new = {g for genes in new.values() for g in genes}
    all_old = {g for genes in old.values() for g in genes}
    assert "SEPTIN9" in all_new and "SEPT9" in all_old


# ---------------------------------------------------------------- GRN edges


def test_read_grn_edges_from_csv_with_weights(tmp_path):
    path = tmp_path / "edges.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(
            ",target,weight,source\n0,G1,100,TF1\n1,G2,40,TF1\n2,G1,900,TF2\n3,G1,80,TF1\n"
        )
    assert read_grn_edges(path) == {"TF1": ["G1", "G2"], "TF2": ["G1"]}
    assert read_grn_edges(path, weight_col="weight", min_weight=90) == {
        "TF1": ["G1"],
        "TF2": ["G1"],
    }
    with pytest.raises(GenevaeInputError, match=r"missing column\(s\) \['regulator'\]"):
        read_grn_edges(path, source_col="regulator")
    with pytest.raises(GenevaeInputError, match="needs weight_col"):
        read_grn_edges(path, min_weight=5)
    with pytest.raises(GenevaeInputError, match="no edges left"):
        read_grn_edges(path, weight_col="weight", min_weight=10_000)


def test_read_grn_edges_from_tsv(tmp_path):
    path = tmp_path / "edges.tsv"
    path.write_text("tf\tgene\nTF1\tG1\nTF1\t\nTF2\tG3\n")
    assert read_grn_edges(path, source_col="tf", target_col="gene") == {
        "TF1": ["G1"],
        "TF2": ["G3"],
    }


@requires_shared_data
def test_real_chipatlas_edges(shared_data):
    regulons = read_grn_edges(shared_data / CHIPATLAS, weight_col="weight", min_weight=50)
    assert len(regulons) == 173
    assert sum(len(t) for t in regulons.values()) == 892_990
    assert "SPI1" in regulons and "EP300" in regulons


@requires_shared_data
def test_real_aracne_regulons(shared_data):
    regulons = read_grn_edges(shared_data / ARACNE)
    assert len(regulons) == 6056
    assert sum(len(t) for t in regulons.values()) == 563_274
    sizes = [len(t) for t in regulons.values()]
    assert min(sizes) == 8 and max(sizes) == 502
    with pytest.raises(GenevaeInputError, match="no edge weights"):
        read_grn_edges(shared_data / ARACNE, weight_col="weight")


# ---------------------------------------------------------------- mask


def test_mask_small_example_and_overlap_report():
    genes = ["A", "B", "C", "D"]
    gene_sets = {"S1": ["A", "B", "X"], "S2": ["C"], "S3": ["Y", "Z"], "S4": ["A", "B", "C", "D"]}
    result = build_gene_module_mask(genes, gene_sets, min_genes=2, max_genes=3, add_nodes=2)
    assert result.module_names == ["S1", "UNANNOTATED_0", "UNANNOTATED_1"]
    np.testing.assert_array_equal(result.mask[:, 0], [1, 1, 0, 0])
    assert result.mask.dtype == np.float32
    assert (result.mask[:, 1:] == 1).all()
    report = result.overlap.set_index("module")
    assert report["reason"].to_dict() == {
        "S1": "kept",
        "S2": "too_small",
        "S3": "too_small",
        "S4": "too_large",
    }
    assert report.loc["S1", "n_genes_in_set"] == 3 and report.loc["S1", "n_genes_overlap"] == 2


def test_mask_file_size_filter_reproduces_vega_and_warns():
    gene_sets = {"S1": ["A", "X"], "S2": ["Y", "Z"]}
    with pytest.warns(UserWarning, match="connected to nothing"):
        result = build_gene_module_mask(["A", "B"], gene_sets, min_genes=2, size_filter_on="file")
    assert result.module_names[:2] == ["S1", "S2"]
    assert result.mask[:, 1].sum() == 0


def test_mask_errors_name_the_source_and_examples():
    with pytest.raises(GenevaeInputError, match=r"hallmark\.gmt.*\['ENSG1'\].*\['CD3E'"):
        build_gene_module_mask(["CD3E", "MS4A1"], {"S": ["ENSG1"]}, source="hallmark.gmt")
    with pytest.raises(GenevaeInputError, match="duplicated"):
        build_gene_module_mask(["A", "A"], {"S": ["A"]})
    with pytest.raises(GenevaeInputError, match="widen the size limits"):
        build_gene_module_mask(["A", "B"], {"S": ["A"]}, min_genes=2)
    with pytest.raises(GenevaeInputError, match="clash"):
        build_gene_module_mask(["A"], {"UNANNOTATED_0": ["A"]})


@settings(max_examples=60, deadline=None)
@given(
    genes=st.lists(_symbol, min_size=1, max_size=30, unique=True),
    gene_sets=st.dictionaries(
        _symbol, st.lists(_symbol, min_size=1, max_size=20), min_size=1, max_size=8
    ),
    add_nodes=st.integers(0, 3),
    max_genes=st.integers(1, 25),
)
def test_mask_invariants(genes, gene_sets, add_nodes, max_genes):
    gene_sets = {**gene_sets, "ANCHOR": [genes[0]]}  # at least one overlapping gene
    result = build_gene_module_mask(genes, gene_sets, max_genes=max_genes, add_nodes=add_nodes)
    kept = result.overlap[result.overlap["kept"]]
    n_modules = len(kept)
    assert result.mask.shape == (len(genes), n_modules + add_nodes)
    assert set(np.unique(result.mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(result.mask[:, :n_modules].sum(axis=0), kept["n_genes_overlap"])
    assert (result.mask[:, n_modules:] == 1.0).all()
    assert result.module_names[:n_modules] == kept["module"].tolist()
    assert (kept["n_genes_overlap"].between(1, max_genes)).all()


@requires_shared_data
@pytest.mark.parametrize(
    ("name", "n_kept", "n_genes_covered"), [(HALLMARK, 50, 1697), (REACTOME, 485, 1907)]
)
def test_real_masks_on_kang_genes(shared_data, kang_genes, name, n_kept, n_genes_covered):
    genes = kang_genes
    result = build_gene_module_mask(
        genes, read_gmt(shared_data / name), min_genes=5, source=str(name)
    )
    assert result.mask.shape == (6998, n_kept + 1)
    assert result.module_names[-1] == "UNANNOTATED_0"
    assert int((result.mask[:, :-1].sum(axis=1) > 0).sum()) == n_genes_covered


@requires_shared_data
def test_aracne_regulon_mask_on_kang_genes(shared_data, kang_genes):
    genes = kang_genes
    regulons = read_grn_edges(shared_data / ARACNE)
    result = build_gene_module_mask(genes, regulons, min_genes=5, add_nodes=5)
    assert result.mask.shape[1] == result.overlap["kept"].sum() + 5
    assert result.overlap["kept"].sum() > 5000


def _small_mask():
    import pandas as pd

    genes = [f"g{i}" for i in range(30)]
    sets = {"A": genes[:10], "B": genes[5:12], "C": genes[20:23]}
    built = build_gene_module_mask(genes, sets, add_nodes=1)
    return pd.DataFrame(built.mask, index=genes, columns=built.module_names), sets


def test_shuffled_masks_keep_sizes_overlaps_and_extra_nodes_but_move_the_genes():
    mask, _ = _small_mask()
    controls = shuffled_gene_module_masks(mask, n_masks=3, seed=1)
    assert len(controls) == 3
    for control in controls:
        assert control.index.equals(mask.index) and control.columns.equals(mask.columns)
        assert (control.sum(axis=0) == mask.sum(axis=0)).all()
        values = control.to_numpy()
        overlap = values[:, :3].T @ values[:, :3]
        np.testing.assert_array_equal(overlap, mask.to_numpy()[:, :3].T @ mask.to_numpy()[:, :3])
        assert (control["UNANNOTATED_0"] == 1).all()
        assert not control["A"].equals(mask["A"])
    assert not controls[0].equals(controls[1])
    again = shuffled_gene_module_masks(mask, n_masks=3, seed=1)
    assert all(a.equals(b) for a, b in zip(controls, again, strict=True))
    assert shuffled_gene_module_masks(mask, n_masks=0) == []
    with pytest.raises(GenevaeInputError, match="n_masks=-1"):
        shuffled_gene_module_masks(mask, n_masks=-1)


def test_gene_sets_from_mask_reads_each_module_and_skips_extra_nodes():
    mask, sets = _small_mask()
    assert gene_sets_from_mask(mask.to_numpy(), mask.index, mask.columns) == sets
    with pytest.raises(GenevaeInputError, match="shape"):
        gene_sets_from_mask(mask.to_numpy(), mask.index[:3], mask.columns)
