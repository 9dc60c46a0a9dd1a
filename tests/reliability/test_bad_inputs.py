"""Bad files, data and parameters across the library and pipeline nodes: one table of cases.

Every case must raise `GenevaeInputError` (or a subclass) whose message names the problem,
before any expensive work (training, encoding, downloading: guarded below), and without
changing anything already on disk (the whole case folder is hashed before and after).
``ids`` of the table are the names used in the issue's closing note.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import h5py
import lightning.pytorch as pl
import numpy as np
import pytest
from anndata import AnnData

import genevae.training.inference
from genevae.analysis.bayes_factor import differential_activity
from genevae.datasets.anndata_dataset import AnnDataDataset
from genevae.datasets.fetch import DataFetchError, RawSource, fetch, resolve_data_path
from genevae.datasets.model_bundle import (
    ModelBundle,
    ModelBundleDataset,
    load_model_bundle,
    save_model_bundle,
)
from genevae.errors import GenevaeInputError
from genevae.models.vega import VEGA
from genevae.pipelines.vega import nodes
from genevae.preprocessing.genesets import build_gene_module_mask, read_gmt, read_gmts
from genevae.preprocessing.genesets import read_grn_edges as read_grn
from genevae.preprocessing.scrna import preprocess_scrna
from genevae.preprocessing.tcga import read_expression_matrix, read_gene_list
from genevae.training import TensorData, TrainingSettings
from tests.reliability.tiny import tiny_mask, tiny_modules, tiny_vega

Arrange = Callable[[Path, pytest.MonkeyPatch], Callable[[], Any]]


@dataclass(frozen=True)
class Case:
    """``arrange`` writes the inputs under a fresh folder and returns the call that must fail."""

    id: str
    arrange: Arrange
    match: str
    error: type[GenevaeInputError] = GenevaeInputError


class ExpensiveWorkStarted(AssertionError):
    """Raised by the guards: the bad input was not refused before the expensive part."""


@pytest.fixture(autouse=True)
def no_expensive_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def started(what: str) -> Callable[..., Any]:
        def guard(*args: Any, **kwargs: Any) -> Any:
            raise ExpensiveWorkStarted(f"{what} started before the bad input was refused")

        return guard

    monkeypatch.setattr(pl.Trainer, "fit", started("training"))
    monkeypatch.setattr(genevae.training.inference, "map_batches", started("encoding"))
    monkeypatch.setattr(VEGA, "sample_latent", started("posterior sampling"))
    monkeypatch.setattr(urllib.request, "urlopen", started("a download"))


# ----------------------------------------------------------------------------- helpers


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/"
        for p in sorted(root.rglob("*"))
    }


@cache
def _synthetic():
    return tiny_modules()


@cache
def _mask():
    return tiny_mask(_synthetic())


def _adata() -> AnnData:
    return _synthetic().adata.copy()


def _bundle() -> ModelBundle:
    mask = _mask()
    metadata = {"module_names": list(mask.columns), "covariate_keys": []}
    return ModelBundle(tiny_vega(mask), list(mask.index), metadata)


class _RunsCodeWhenUnpickled:
    """A pickle payload that creates ``marker`` if anything ever unpickles it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _malicious_pickle(path: Path) -> Path:
    return _write(path, pickle.dumps(_RunsCodeWhenUnpickled(path.parent / "PWNED")))


def _saved_bundle(tmp: Path) -> Path:
    bundle = _bundle()
    return save_model_bundle(bundle.model, tmp / "vega_model", gene_names=bundle.gene_names)


def _saved_h5ad(tmp: Path) -> Path:
    path = tmp / "cells.h5ad"
    AnnDataDataset(filepath=str(path)).save(_adata())
    return path


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _load_h5ad(path: Path) -> Callable[[], Any]:
    return AnnDataDataset(filepath=str(path)).load


def _scrna(change: Callable[[AnnData], None], **params: Any) -> Callable[[], Any]:
    adata = _adata()
    change(adata)
    return partial(preprocess_scrna, adata, min_genes=1, min_cells=1, **params)


def _set(layer: str | None, value: Any) -> Callable[[AnnData], None]:
    def change(adata: AnnData) -> None:
        matrix = adata.X if layer is None else adata.layers[layer]
        matrix[0, 0] = value

    return change


def _drop_counts_and_set_x(value: float) -> Callable[[AnnData], None]:
    def change(adata: AnnData) -> None:
        del adata.layers["counts"]
        adata.X[0, 0] = value

    return change


def _vega_params(**changes: Any) -> dict[str, Any]:
    params = {
        "model": {"hidden": 16},
        "training": {"max_epochs": 1, "batch_size": 50, "progress_bar": False},
        "validation_fraction": 0.2,
        "covariate_keys": [],
    }
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            params[section] = {**params[section], name: value}
        else:
            params[section] = value
    return params


def _train_vega(mask=None, **changes: Any) -> Callable[[], Any]:
    mask = _mask() if mask is None else mask
    return partial(nodes.train_vega, _adata(), mask, _vega_params(**changes))


def _bayes_factors(**comparison: Any) -> Callable[[], Any]:
    settings = comparison.pop("bayes_factor", {})
    params = {
        "seed": 0,
        "cell_type_key": "cell_type",
        "comparisons": [{"groupby": "condition", "group1": "stimulated", **comparison}],
        "bayes_factor": {"n_samples": 50, "n_pairs": 100, **settings},
    }
    return partial(nodes.differential_activity_tables, _bundle(), _adata(), params)


def _checksum_mismatch(tmp: Path, _: pytest.MonkeyPatch) -> Callable[[], Any]:
    _write(tmp / "mirror" / "misc" / "x.txt", b"tampered bytes")
    _write(tmp / "raw" / "already_here.txt", b"an earlier, verified download")
    source = RawSource(
        name="x",
        filename="x.txt",
        url="https://example.org/x.txt",
        sha256=hashlib.sha256(b"published bytes").hexdigest(),
        mirror_path="misc/x.txt",
        description="test file",
    )
    return partial(fetch, source, tmp / "raw", tmp / "mirror", progress=False)


def _escaping_checkpoint_dir(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Any]:
    (tmp / "project" / "data").mkdir(parents=True)
    monkeypatch.chdir(tmp / "project")
    return partial(TrainingSettings, checkpoint_dir="../outside/checkpoints")


def _hdf5_not_anndata(tmp: Path, _: pytest.MonkeyPatch) -> Callable[[], Any]:
    with h5py.File(tmp / "other.h5ad", "w") as handle:
        handle["measurements"] = np.arange(3)
    return _load_h5ad(tmp / "other.h5ad")


def _pickle_in_bundle_folder(tmp: Path, _: pytest.MonkeyPatch) -> Callable[[], Any]:
    _malicious_pickle(tmp / "vega_model" / "model.pkl")
    return ModelBundleDataset(filepath=str(tmp / "vega_model")).load


def _bundle_of_other_type(tmp: Path, _: pytest.MonkeyPatch) -> Callable[[], Any]:
    path = _saved_bundle(tmp)
    return ModelBundleDataset(filepath=str(path), load_args={"expected_type": "tybalt"}).load


def _gmts_sharing_a_name(tmp: Path, _: pytest.MonkeyPatch) -> Callable[[], Any]:
    first = _write(tmp / "reactome.gmt", "IFN\tdesc\tISG15\n")
    second = _write(tmp / "markers.gmt", "IFN\tdesc\tMX1\n")
    return partial(read_gmts, [first, second])


# ----------------------------------------------------------------------------- the table

EDGES = "source,target,weight\nTF1,G1,100\nTF1,G2,40\n"

FILES = [
    Case(
        "gmt-missing",
        lambda t, m: partial(read_gmt, t / "absent.gmt"),
        r"absent\.gmt does not exist",
    ),
    Case(
        "gmt-empty", lambda t, m: partial(read_gmt, _write(t / "e.gmt", "\n\n")), r"e\.gmt is empty"
    ),
    Case(
        "gmt-space-separated",
        lambda t, m: partial(read_gmt, _write(t / "s.gmt", "SET desc G1 G2\n")),
        r"s\.gmt, line 1: a GMT line needs .* separated by tabs",
    ),
    Case(
        "gmt-set-without-genes",
        lambda t, m: partial(read_gmt, _write(t / "s.gmt", "A\td\tG1\nB\tdesc\t\t\n")),
        r"s\.gmt, line 2: .* at least one gene",
    ),
    Case(
        "gmt-duplicate-set-name",
        lambda t, m: partial(read_gmt, _write(t / "d.gmt", "A\td\tG1\nA\td\tG2\n")),
        r"d\.gmt, line 2: gene set 'A' was already defined on line 1",
    ),
    Case(
        "gmt-gzipped-binary",
        lambda t, m: partial(read_gmt, _write(t / "h.gmt", gzip.compress(b"A\td\tG1\n"))),
        r"h\.gmt is not UTF-8 text .* binary or compressed",
    ),
    Case(
        "gmts-same-name-in-two-files",
        _gmts_sharing_a_name,
        r"'IFN' is defined in both .*reactome\.gmt",
    ),
    Case(
        "grn-missing-file",
        lambda t, m: partial(read_grn, t / "absent.csv"),
        r"absent\.csv does not exist",
    ),
    Case(
        "grn-wrong-columns",
        lambda t, m: partial(read_grn, _write(t / "e.csv", "tf,gene\nA,B\n")),
        r"missing column\(s\) \['source', 'target'\]; available columns: \['tf', 'gene'\]",
    ),
    Case(
        "grn-empty-file",
        lambda t, m: partial(read_grn, _write(t / "e.csv", "")),
        r"e\.csv could not be read \(EmptyDataError",
    ),
    Case(
        "grn-plain-text-named-gz",
        lambda t, m: partial(read_grn, _write(t / "e.csv.gz", EDGES)),
        r"e\.csv\.gz could not be read \(BadGzipFile",
    ),
    Case(
        "grn-truncated-gzip",
        lambda t, m: partial(
            read_grn, _write(t / "e.csv.gz", gzip.compress(EDGES.encode() * 500)[:70])
        ),
        r"e\.csv\.gz could not be read \(EOFError",
    ),
    Case(
        "grn-text-weights",
        lambda t, m: partial(
            read_grn,
            _write(t / "e.csv", "source,target,weight\nTF1,G1,high\n"),
            weight_col="weight",
            min_weight=50,
        ),
        r"weight column 'weight' is not numeric \(e\.g\. \['high'\]\)",
    ),
    Case(
        "grn-duplicate-regulator-gmt",
        lambda t, m: partial(read_grn, _write(t / "regulons.gmt", "SPI1\td\tG1\nSPI1\td\tG2\n")),
        r"gene set 'SPI1' was already defined",
    ),
    Case(
        "grn-min-weight-without-weight-col",
        lambda t, m: partial(read_grn, _write(t / "e.csv", EDGES), min_weight=50),
        r"min_weight=50 needs weight_col",
    ),
    Case(
        "grn-min-weight-removes-every-edge",
        lambda t, m: partial(
            read_grn, _write(t / "e.csv", EDGES), weight_col="weight", min_weight=1e6
        ),
        r"no edges left \(min_weight=1000000\.0\)",
    ),
    Case(
        "tcga-matrix-empty",
        lambda t, m: partial(read_expression_matrix, _write(t / "HiSeqV2.tsv", "")),
        r"HiSeqV2\.tsv could not be read as a tab-separated genes × samples matrix",
    ),
    Case(
        "tcga-matrix-text-values",
        lambda t, m: partial(
            read_expression_matrix, _write(t / "m.tsv", "gene\tTCGA-AA-0001-01\nTP53\thigh\n")
        ),
        r"sample columns \['TCGA-AA-0001-01'\] are not numeric",
    ),
    Case(
        "tcga-gene-list-empty",
        lambda t, m: partial(read_gene_list, _write(t / "genes.txt", "\n")),
        r"genes\.txt is empty",
    ),
    Case(
        "h5ad-missing", lambda t, m: _load_h5ad(t / "absent.h5ad"), r"absent\.h5ad' does not exist"
    ),
    Case(
        "h5ad-truncated",
        lambda t, m: _load_h5ad(_truncate(_saved_h5ad(t))),
        r"cells\.h5ad' as an \.h5ad file .* truncated, corrupt or not AnnData",
    ),
    Case(
        "h5ad-zero-bytes",
        lambda t, m: _load_h5ad(_write(t / "z.h5ad", b"")),
        r"z\.h5ad' as an \.h5ad file .* truncated, corrupt or not AnnData",
    ),
    Case(
        "h5ad-hdf5-but-not-anndata",
        _hdf5_not_anndata,
        r"other\.h5ad' as an \.h5ad file .* not AnnData",
    ),
    Case(
        "model-of-another-type",
        _bundle_of_other_type,
        r"holds a 'vega' model, but 'tybalt' was expected",
    ),
    Case(
        "model-is-a-pickle-file",
        lambda t, m: partial(load_model_bundle, _malicious_pickle(t / "model.pt")),
        r"model\.pt' is a file, .* never unpickles models",
    ),
    Case(
        "model-folder-holds-a-pickle",
        _pickle_in_bundle_folder,
        r"holds torch/pickle files \['model\.pkl'\], which genevae refuses to load",
    ),
    Case(
        "model-config-not-json",
        lambda t, m: partial(
            load_model_bundle, _write(_saved_bundle(t) / "config.json", "{").parent
        ),
        r"config\.json' is not valid JSON",
    ),
    Case(
        "model-weights-truncated",
        lambda t, m: partial(
            load_model_bundle, _truncate(_saved_bundle(t) / "model.safetensors").parent
        ),
        r"Could not load the weights in .*model\.safetensors",
    ),
    Case(
        "fetch-checksum-mismatch",
        _checksum_mismatch,
        r"Checksum mismatch for 'x\.txt' .* The copy was discarded",
        DataFetchError,
    ),
    Case(
        "fetch-unknown-source",
        lambda t, m: partial(fetch, "kang", t / "raw"),
        r"Unknown raw source 'kang'",
    ),
    Case(
        "config-path-escapes-data-folder",
        lambda t, m: partial(resolve_data_path, "data/../../etc", t),
        r"'data/\.\./\.\./etc' resolves to .* outside the project data folder",
    ),
]

DATA = [
    Case(
        "mask-no-gene-overlap",
        lambda t, m: partial(
            build_gene_module_mask, ["CD3E", "MS4A1"], {"S": ["ENSG00000167286"]}, source="sets.gmt"
        ),
        r"no gene of sets\.gmt is among the 2 data genes.* same identifiers",
    ),
    Case(
        "mask-duplicate-genes",
        lambda t, m: partial(build_gene_module_mask, ["A", "A"], {"S": ["A"]}),
        r"gene names are duplicated, e\.g\. \['A'\]",
    ),
    Case(
        "counts-nan",
        lambda t, m: _scrna(_set("counts", np.nan)),
        r"layers\['counts'\] contains NaN",
    ),
    Case(
        "counts-negative",
        lambda t, m: _scrna(_set("counts", -3.0)),
        r"layers\['counts'\] contains negative values \(min -3\)",
    ),
    Case(
        "x-infinite-without-counts",
        lambda t, m: _scrna(_drop_counts_and_set_x(np.inf)),
        r"X contains NaN or infinite",
    ),
    Case(
        "counts-as-strings",
        lambda t, m: _scrna(
            lambda a: a.layers.__setitem__("counts", a.layers["counts"].astype(str))
        ),
        r"layers\['counts'\] has dtype <U\d+, not numbers",
    ),
    Case(
        "duplicate-var-names",
        lambda t, m: _scrna(lambda a: setattr(a, "var_names", ["G"] * a.n_vars)),
        r"duplicate gene names in var_names, e\.g\. \['G'\]",
    ),
    Case(
        "obs-column-misspelled",
        lambda t, m: _scrna(lambda a: None, condition_key="conditon"),
        r"obs has no column 'conditon' \(parameter condition_key\); available columns: \['condition'",
    ),
    Case(
        "obs-column-with-missing-labels",
        lambda t, m: _scrna(
            lambda a: a.obs.__setitem__(
                "cell_type",
                a.obs["cell_type"].cat.add_categories([]).where(a.obs.index != a.obs.index[0]),
            )
        ),
        r"obs column 'cell_type' \(parameter cell_type_key\) has 1 missing values",
    ),
    Case(
        "vega-mask-lacks-data-genes",
        lambda t, m: _train_vega(mask=_mask().iloc[3:]),
        r"mask lacks 3 data genes \(e\.g\. \['GENE_",
    ),
    Case(
        "vega-mask-wrong-shape",
        lambda t, m: partial(VEGA, n_genes=60, n_modules=3, mask=_mask().to_numpy()),
        r"gene_module_mask has shape \(60, 7\) but VEGA expects genes × modules = \(60, 3\)",
    ),
    Case(
        "batch-of-strings",
        lambda t, m: partial(TensorData, {"x": np.array([["a", "b"]])}),
        r"Batch array 'x' has dtype <U1, not numbers",
    ),
    Case(
        "batch-with-nan",
        lambda t, m: partial(TensorData, {"x": np.array([[np.nan, 1.0]])}),
        r"Batch array 'x' contains NaN",
    ),
    Case(
        "covariate-column-missing",
        lambda t, m: _train_vega(covariate_keys=["batch"]),
        r"Covariate column\(s\) \['batch'\] are not in obs",
    ),
]

PARAMETERS = [
    Case(
        "training-parameter-typo",
        lambda t, m: partial(TrainingSettings.from_params, {"learning_rte": 0.1}),
        r"Unknown training parameter\(s\) \['learning_rte'\]",
    ),
    Case(
        "training-parameter-typo-in-vega-node",
        lambda t, m: _train_vega(training__max_epoch=3),
        r"Unknown training parameter\(s\) \['max_epoch'\]",
    ),
    Case(
        "learning-rate-as-text",
        lambda t, m: _train_vega(training__learning_rate="fast"),
        r"learning_rate='fast' \(str\) is invalid: expected a number > 0",
    ),
    Case(
        "learning-rate-negative",
        lambda t, m: partial(TrainingSettings, learning_rate=-1e-3),
        r"learning_rate=-0\.001 \(float\) is invalid",
    ),
    Case(
        "loss-reduction-unknown",
        lambda t, m: partial(TrainingSettings, loss_reduction="avg"),
        r"loss_reduction='avg' .* expected 'mean' or 'sum'",
    ),
    Case(
        "max-epochs-zero",
        lambda t, m: partial(TrainingSettings, max_epochs=0),
        r"max_epochs=0 \(int\) is invalid",
    ),
    Case(
        "batch-size-fractional",
        lambda t, m: partial(TrainingSettings, batch_size=12.5),
        r"batch_size=12\.5 \(float\) is invalid: expected an integer >= 1",
    ),
    Case(
        "resume-without-checkpoint-dir",
        lambda t, m: partial(TrainingSettings, resume=True),
        r"resume=true needs checkpoint_dir",
    ),
    Case(
        "checkpoint-dir-escapes-data-folder",
        _escaping_checkpoint_dir,
        r"checkpoint_dir: Relative data path '\.\./outside/checkpoints' .* outside the project data folder",
    ),
    Case(
        "validation-fraction-one",
        lambda t, m: _train_vega(validation_fraction=1.0),
        r"validation_fraction must be in \[0, 1\), got 1\.0",
    ),
    Case(
        "gene-module-collection-unknown",
        lambda t, m: partial(
            nodes.select_collection, "reactom", reactome=_mask(), hallmark=_mask()
        ),
        r"gene_module_collection='reactom' is unknown; choose one of \['hallmark', 'reactome'\]",
    ),
    Case(
        "bayes-factor-unknown-group",
        lambda t, m: _bayes_factors(group1="stimulatd", group2="control"),
        r"group1='stimulatd' is not a label .* available labels: \['control', 'stimulated'\]",
    ),
    Case(
        "bayes-factor-groupby-misspelled",
        lambda t, m: _bayes_factors(groupby="conditon"),
        r"obs has no column 'conditon'; set groupby to one of \['condition'",
    ),
    Case(
        "bayes-factor-same-groups",
        lambda t, m: _bayes_factors(group2="stimulated"),
        r"group1 and group2 are both 'stimulated'",
    ),
    Case(
        "bayes-factor-mode-unknown",
        lambda t, m: _bayes_factors(bayes_factor={"mode": "vanila"}),
        r"mode='vanila' is not supported; use 'vanilla' or 'change'",
    ),
    Case(
        "bayes-factor-zero-samples",
        lambda t, m: _bayes_factors(bayes_factor={"n_samples": 0}),
        r"n_samples=0 must be a whole number >= 1",
    ),
    Case(
        "bayes-factor-direct-call-zero-pairs",
        lambda t, m: partial(differential_activity, lambda i: i, ["a", "b"], "a", n_pairs=0),
        r"n_pairs=0 must be a whole number >= 1",
    ),
]

INFERENCE = [
    Case(
        "vega-encode-with-missing-genes",
        lambda t, m: partial(nodes.encode_module_activities, _bundle(), _adata()[:, 5:].copy()),
        r"GENE_0000",
    )
]

CASES = [pytest.param(case, id=case.id) for case in FILES + DATA + PARAMETERS + INFERENCE]


def test_the_table_covers_at_least_30_distinct_cases() -> None:
    ids = [case.id for case in FILES + DATA + PARAMETERS]
    assert len(ids) == len(set(ids)) >= 30


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_early_with_a_clear_message(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = case.arrange(tmp_path, monkeypatch)
    before = _snapshot(tmp_path)

    with pytest.raises(case.error, match=case.match) as raised:
        call()

    assert isinstance(raised.value, GenevaeInputError)
    assert _snapshot(tmp_path) == before, "a refused input changed files on disk"
