"""Model bundles: exact safetensors + JSON round trips, registry, refusals and atomic saves."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest
import torch
from kedro.io import DataCatalog
from kedro.io.core import DatasetError, Version

from genevae.datasets._io import DatasetInputError
from genevae.datasets.model_bundle import (
    ModelBundle,
    ModelBundleDataset,
    load_model_bundle,
    save_model_bundle,
)
from genevae.errors import GenevaeInputError
from genevae.models import registry
from tests.datasets.tiny_model import OtherTinyModel, TinyModel

GENES = ["CD3E", "MS4A1", "LYZ", "NKG7", "ISG15"]


@pytest.fixture(autouse=True)
def _tiny_models_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "MODEL_CLASSES", dict(registry.MODEL_CLASSES))
    registry.register_model("tiny_test", "tests.datasets.tiny_model:TinyModel")
    registry.register_model("other_tiny_test", "tests.datasets.tiny_model:OtherTinyModel")


def _trained_model(seed: int = 0) -> TinyModel:
    torch.manual_seed(seed)
    model = TinyModel(n_genes=5, n_latent=2, dropout=0.5)
    model.gene_scale.uniform_(0.5, 2.0)  # a buffer that differs from its initial value
    return model


def _assert_identical(original: TinyModel, rebuilt: TinyModel) -> None:
    assert type(rebuilt) is type(original)
    assert rebuilt.config == original.config
    expected, actual = original.state_dict(), rebuilt.state_dict()
    assert expected.keys() == actual.keys()
    for key, tensor in expected.items():
        assert torch.equal(tensor, actual[key]), key
    batch = {"x": torch.randn(7, 5)}
    original.eval()
    assert not rebuilt.training
    assert torch.equal(original.encode(batch), rebuilt.encode(batch))
    assert torch.equal(original.loss(batch)["loss"], rebuilt.loss(batch)["loss"])


def test_round_trip_is_exact(tmp_path: Path) -> None:
    model = _trained_model()
    save_model_bundle(model, tmp_path / "bundle", gene_names=GENES, metadata={"epochs": 3})

    bundle = load_model_bundle(tmp_path / "bundle", expected_type="tiny_test")

    _assert_identical(model, bundle.model)
    assert bundle.gene_names == GENES
    assert bundle.metadata == {"epochs": 3}
    header = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert header["model_type"] == "tiny_test"
    assert header["config"] == {"n_genes": 5, "n_latent": 2, "dropout": 0.5}
    assert header["format_version"] == 1 and header["genevae_version"]
    assert sorted(p.name for p in (tmp_path / "bundle").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]


def test_overwrite_replaces_the_whole_directory(tmp_path: Path) -> None:
    save_model_bundle(_trained_model(1), tmp_path / "bundle", gene_names=GENES, metadata={})
    newer = _trained_model(2)
    save_model_bundle(newer, tmp_path / "bundle", gene_names=GENES, metadata={"run": 2})
    _assert_identical(newer, load_model_bundle(tmp_path / "bundle").model)
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_failed_save_keeps_previous_bundle(tmp_path: Path, monkeypatch) -> None:
    model = _trained_model(1)
    save_model_bundle(model, tmp_path / "bundle", gene_names=GENES, metadata={})
    monkeypatch.setattr(
        "safetensors.torch.save_model",  # imported when a bundle is written
        lambda *args, **kwargs: (_ for _ in ()).throw(OSError("disk full")),
    )
    with pytest.raises(OSError, match="disk full"):
        save_model_bundle(_trained_model(2), tmp_path / "bundle", gene_names=GENES, metadata={})
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
    _assert_identical(model, load_model_bundle(tmp_path / "bundle").model)


def test_expected_type_mismatch_is_refused(tmp_path: Path) -> None:
    save_model_bundle(OtherTinyModel(), tmp_path / "bundle", gene_names=GENES, metadata={})
    with pytest.raises(GenevaeInputError, match="holds a 'other_tiny_test' model, but 'tiny_test'"):
        load_model_bundle(tmp_path / "bundle", expected_type="tiny_test")


def test_unknown_model_type_is_refused(tmp_path: Path) -> None:
    save_model_bundle(_trained_model(), tmp_path / "bundle", gene_names=GENES, metadata={})
    config = tmp_path / "bundle" / "config.json"
    config.write_text(config.read_text().replace('"tiny_test"', '"mystery_vae"'))
    with pytest.raises(GenevaeInputError, match="Unknown model_type 'mystery_vae'.*'tybalt'"):
        load_model_bundle(tmp_path / "bundle")


@pytest.mark.parametrize("name", ["model.pt", "model.pkl"])
def test_pickle_files_are_refused(tmp_path: Path, name: str) -> None:
    torch.save(_trained_model().state_dict(), tmp_path / name)
    with pytest.raises(GenevaeInputError, match="never unpickles"):
        load_model_bundle(tmp_path / name)
    with pytest.raises(
        GenevaeInputError, match=rf"lacks \['model.safetensors', 'config.json'\].*'{name}'"
    ):
        load_model_bundle(tmp_path)


def test_corrupt_or_mismatched_weights_are_refused(tmp_path: Path) -> None:
    save_model_bundle(_trained_model(), tmp_path / "bundle", gene_names=GENES, metadata={})
    config = tmp_path / "bundle" / "config.json"
    config.write_text(config.read_text().replace('"n_genes": 5', '"n_genes": 6'))
    with pytest.raises(GenevaeInputError, match="does not match the config"):
        load_model_bundle(tmp_path / "bundle")
    (tmp_path / "bundle" / "model.safetensors").write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(GenevaeInputError, match="model.safetensors"):
        load_model_bundle(tmp_path / "bundle")


def test_bad_inputs_on_save(tmp_path: Path) -> None:
    with pytest.raises(GenevaeInputError, match="not JSON-serialisable"):
        save_model_bundle(
            _trained_model(), tmp_path / "b", gene_names=GENES, metadata={"a": torch.ones(1)}
        )
    with pytest.raises(GenevaeInputError, match="gene_names must be strings"):
        save_model_bundle(_trained_model(), tmp_path / "b", gene_names=[1, 2], metadata={})
    with pytest.raises(GenevaeInputError, match="Unknown model_type 'base'"):
        from genevae.models.base import GenerativeModel

        save_model_bundle(GenerativeModel({}), tmp_path / "b", gene_names=GENES, metadata={})
    assert list(tmp_path.iterdir()) == []


def test_registry_build_and_register_errors() -> None:
    model = registry.build_model("tiny_test", {"n_genes": 3, "n_latent": 1, "dropout": 0.0})
    assert isinstance(model, TinyModel) and model.config["n_genes"] == 3
    with pytest.raises(GenevaeInputError, match="do not fit TinyModel"):
        registry.build_model("tiny_test", {"n_cells": 3})
    with pytest.raises(GenevaeInputError, match="already registered as 'genevae.models.vega:VEGA'"):
        registry.register_model("vega", "tests.datasets.tiny_model:TinyModel")
    with pytest.raises(GenevaeInputError, match="must look like 'package.module:ClassName'"):
        registry.register_model("broken", "tests.datasets.tiny_model.TinyModel")
    registry.register_model("not_a_model", "collections:OrderedDict")
    with pytest.raises(TypeError, match="is not a GenerativeModel subclass"):
        registry.model_class("not_a_model")


def test_versioned_dataset_round_trip(tmp_path: Path) -> None:
    filepath = str(tmp_path / "tiny_model")
    first, second = _trained_model(1), _trained_model(2)
    for model, version in (
        (first, "2026-01-01T00.00.00.000Z"),
        (second, "2026-01-02T00.00.00.000Z"),
    ):
        dataset = ModelBundleDataset(filepath=filepath, version=Version(None, version))
        dataset.save(ModelBundle(model, GENES, {"version": version}))

    assert (
        tmp_path / "tiny_model" / "2026-01-01T00.00.00.000Z" / "tiny_model" / "model.safetensors"
    ).is_file()
    latest = ModelBundleDataset(filepath=filepath, version=Version(None, None)).load()
    _assert_identical(second, latest.model)
    pinned = ModelBundleDataset(
        filepath=filepath,
        version=Version("2026-01-01T00.00.00.000Z", None),
        load_args={"expected_type": "tiny_test"},
    ).load()
    _assert_identical(first, pinned.model)
    assert pinned.metadata == {"version": "2026-01-01T00.00.00.000Z"}


def test_dataset_from_catalog_and_errors(tmp_path: Path) -> None:
    catalog = DataCatalog.from_config(
        {
            "model": {
                "type": "genevae.datasets.model_bundle.ModelBundleDataset",
                "filepath": str(tmp_path / "model"),
                "versioned": True,
                "load_args": {"expected_type": "other_tiny_test"},
            }
        }
    )
    assert not catalog.exists("model")
    catalog.save("model", ModelBundle(_trained_model(), GENES))
    assert catalog.exists("model")
    with pytest.raises(DatasetError, match="but 'other_tiny_test' was expected"):
        catalog.load("model")
    with pytest.raises(DatasetInputError, match="saves ModelBundle objects, got TinyModel"):
        ModelBundleDataset(filepath=str(tmp_path / "m")).save(_trained_model())


def test_dataset_remote_protocol_round_trip() -> None:
    filepath = "memory:///genevae-test/model"
    model = _trained_model()
    dataset = ModelBundleDataset(filepath=filepath)
    try:
        dataset.save(ModelBundle(model, GENES))
        dataset.save(ModelBundle(model, GENES, {"second": True}))
        fs = fsspec.filesystem("memory")
        assert sorted(fs.find("/genevae-test")) == [
            "/genevae-test/model/config.json",
            "/genevae-test/model/model.safetensors",
        ]
        bundle = dataset.load()
        _assert_identical(model, bundle.model)
        assert bundle.metadata == {"second": True}
    finally:
        fsspec.filesystem("memory").rm("/genevae-test", recursive=True)
