"""Property tests of the GMT/GRN readers and the mask builder, beyond tests/preprocessing.

tests/preprocessing/test_genesets.py already checks the GMT write/read round trip and the
mask's shape/column-sum invariants; these add: arbitrary text or bytes never crash the readers
with anything but `GenevaeInputError`, GRN edge tables of any content parse to the right
regulons (CSV, TSV, gzip, weight filter), and the mask is exactly set membership and follows
the gene order.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genevae.errors import GenevaeInputError
from genevae.preprocessing.genesets import build_gene_module_mask, read_gmt, read_grn_edges

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_symbol = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", min_size=1, max_size=8)


def _in_temporary_file(name: str, content: bytes, read) -> object:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        return read(path)


def _read_or_refuse(name: str, content: bytes, read) -> object | None:
    """The reader's result, or None when it refused with GenevaeInputError (never anything else)."""
    try:
        return _in_temporary_file(name, content, read)
    except GenevaeInputError:
        return None


@FAST
@given(st.text(alphabet=st.sampled_from("AB1 \t\n\r\x0b\x0cé-"), max_size=80))
def test_gmt_reader_accepts_or_refuses_any_text(text: str) -> None:
    gene_sets = _read_or_refuse("sets.gmt", text.encode("utf-8"), read_gmt)
    if gene_sets is None:
        return
    assert gene_sets
    for name, genes in gene_sets.items():
        assert name and name == name.strip() and "\t" not in name
        assert genes and len(genes) == len(set(genes))
        assert all(gene and gene == gene.strip() and "\t" not in gene for gene in genes)


@FAST
@given(st.binary(max_size=200))
def test_gmt_reader_accepts_or_refuses_any_bytes(content: bytes) -> None:
    _read_or_refuse("sets.gmt", content, read_gmt)


@FAST
@given(st.binary(max_size=200), st.sampled_from(["edges.csv", "edges.tsv", "edges.csv.gz"]))
def test_grn_reader_accepts_or_refuses_any_bytes(content: bytes, name: str) -> None:
    _read_or_refuse(name, content, read_grn_edges)


# "NA"/"NULL" are pandas missing-value markers, so such rows count as missing (documented).
_gene_id = _symbol.filter(lambda s: s not in {"NA", "NULL"})
_edges = st.lists(
    st.tuples(_gene_id, _gene_id, st.integers(0, 1000)), min_size=1, max_size=40
).filter(lambda rows: any(w >= 500 for *_, w in rows))


def _expected_regulons(rows: list[tuple[str, str, int]], min_weight: int) -> dict[str, list[str]]:
    regulons: dict[str, list[str]] = {}
    for source, target, weight in rows:
        if weight >= min_weight:
            targets = regulons.setdefault(source, [])
            if target not in targets:
                targets.append(target)
    return regulons


@FAST
@given(_edges, st.sampled_from(["edges.csv", "edges.tsv", "edges.csv.gz"]))
def test_grn_edge_tables_parse_to_first_seen_unique_targets(rows, name: str) -> None:
    frame = pd.DataFrame(rows, columns=["regulator", "gene", "score"])
    sep = "\t" if name.endswith(".tsv") else ","
    content = frame.to_csv(sep=sep, index=False).encode()
    if name.endswith(".gz"):
        content = gzip.compress(content)

    def read(path: Path) -> dict[str, list[str]]:
        return read_grn_edges(
            path, source_col="regulator", target_col="gene", weight_col="score", min_weight=500
        )

    assert _in_temporary_file(name, content, read) == _expected_regulons(rows, 500)


@FAST
@given(
    genes=st.lists(_symbol, min_size=1, max_size=25, unique=True),
    gene_sets=st.dictionaries(
        _symbol, st.lists(_symbol, min_size=1, max_size=15), min_size=1, max_size=6
    ),
    order_seed=st.integers(0, 2**32 - 1),
)
def test_mask_is_exact_membership_and_follows_gene_order(genes, gene_sets, order_seed) -> None:
    gene_sets = {**gene_sets, "ANCHOR": [genes[0]]}
    result = build_gene_module_mask(genes, gene_sets, min_genes=1, max_genes=1000, add_nodes=0)
    for column, module in enumerate(result.module_names):
        expected = [gene in set(gene_sets[module]) for gene in genes]
        np.testing.assert_array_equal(result.mask[:, column], expected)

    order = np.random.default_rng(order_seed).permutation(len(genes))
    shuffled = build_gene_module_mask(
        [genes[i] for i in order], gene_sets, min_genes=1, max_genes=1000, add_nodes=0
    )
    assert shuffled.module_names == result.module_names
    np.testing.assert_array_equal(shuffled.mask, result.mask[order])


def test_numeric_gene_ids_are_kept_as_written(tmp_path: Path) -> None:
    """Entrez-like ids next to a blank used to become floats ('7157.0') and match no gene."""
    path = tmp_path / "edges.csv"
    path.write_text("source,target\n2099,7157\n2099,\n0012,0042\n")
    assert read_grn_edges(path) == {"2099": ["7157"], "0012": ["0042"]}
