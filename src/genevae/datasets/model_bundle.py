"""Trained models as safetensors weights + a JSON config: loading never unpickles code.

A bundle is a directory::

    model.safetensors   the state dict (parameters and persistent buffers)
    config.json         {model_type, config, gene_names, metadata, genevae_version,
                         format_version}

`load_model_bundle` rebuilds the architecture with
`genevae.models.registry.build_model(model_type, config)` and loads the weights into it.
torch and safetensors are imported only when a bundle is written or read, so declaring the
dataset in a catalog (and importing `ModelBundle` for type hints) stays cheap.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import genevae
from genevae.datasets._io import DatasetInputError, FsspecVersionedDataset, atomic_local_path

if TYPE_CHECKING:
    from genevae.models.base import GenerativeModel

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib")


@dataclass(frozen=True)
class ModelBundle:
    """A trained model with the gene order it expects and free-form run metadata."""

    model: GenerativeModel
    gene_names: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)


def save_model_bundle(
    model: GenerativeModel,
    directory: str | Path,
    *,
    gene_names: Sequence[str],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` to ``directory`` (replaced atomically) and return the path.

    ``gene_names`` is the input feature order; ``metadata`` must be JSON-serialisable
    (e.g. training parameters, data version).
    """
    directory = Path(directory)
    with atomic_local_path(directory, is_dir=True) as staging:
        _write_bundle_files(model, staging, gene_names=gene_names, metadata=metadata)
    return directory


def _write_bundle_files(
    model: GenerativeModel,
    directory: Path,
    *,
    gene_names: Sequence[str],
    metadata: dict[str, Any] | None,
) -> None:
    """Write the two bundle files into an existing (staging) directory."""
    from safetensors.torch import save_model

    model_type = _checked_model_type(model)
    header = {
        "model_type": model_type,
        "config": model.config,
        "gene_names": _checked_gene_names(gene_names),
        "metadata": dict(metadata or {}),
        "genevae_version": genevae.__version__,
        "format_version": FORMAT_VERSION,
    }
    config_text = _to_json(header, model_type)
    save_model(model, str(directory / WEIGHTS_FILE))
    (directory / CONFIG_FILE).write_text(config_text, encoding="utf-8")


def load_model_bundle(directory: str | Path, *, expected_type: str | None = None) -> ModelBundle:
    """Rebuild the model saved in ``directory`` (in eval mode) with its genes and metadata.

    ``expected_type`` guards against loading, say, a Tybalt bundle where a VEGA one is needed.
    Torch/pickle files are refused: unpickling can execute arbitrary code.
    """
    directory = Path(directory)
    _refuse_non_bundle(directory)
    header = _read_header(directory / CONFIG_FILE)
    model_type = header["model_type"]
    if expected_type is not None and model_type != expected_type:
        raise DatasetInputError(
            f"Model bundle '{directory}' holds a {model_type!r} model, but {expected_type!r} "
            f"was expected. Point to a {expected_type!r} bundle or change expected_type."
        )
    from genevae.models.registry import build_model

    model = build_model(model_type, header["config"])
    _load_weights(model, directory / WEIGHTS_FILE)
    model.eval()
    return ModelBundle(model=model, gene_names=header["gene_names"], metadata=header["metadata"])


def _checked_model_type(model: GenerativeModel) -> str:
    """The model's type, verified to rebuild as the same class on load."""
    from genevae.models.base import GenerativeModel
    from genevae.models.registry import model_class

    if not isinstance(model, GenerativeModel):
        raise DatasetInputError(
            f"Only genevae GenerativeModel instances can be saved as bundles, got "
            f"{type(model).__name__}."
        )
    if model_class(model.model_type) is not type(model):
        raise DatasetInputError(
            f"model_type {model.model_type!r} of {type(model).__name__} is registered for a "
            f"different class, so the bundle could not be rebuilt. Set a unique `model_type` "
            f"class attribute and register it with genevae.models.registry.register_model()."
        )
    return model.model_type


def _checked_gene_names(gene_names: Sequence[str]) -> list[str]:
    names = list(gene_names)
    bad = [name for name in names if not isinstance(name, str)]
    if bad:
        raise DatasetInputError(
            f"gene_names must be strings (e.g. list(adata.var_names)); found {bad[:3]!r}."
        )
    return names


def _to_json(header: dict[str, Any], model_type: str) -> str:
    try:
        return json.dumps(header, indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DatasetInputError(
            f"The config or metadata of the {model_type!r} model is not JSON-serialisable "
            f"({exc}). Use plain str/int/float/bool/list/dict values (no arrays, tensors or NaN)."
        ) from exc


def _refuse_non_bundle(directory: Path) -> None:
    """Explain what is wrong when ``directory`` is not a model bundle directory."""
    if directory.is_file():
        hint = (
            " It looks like a torch/pickle file; genevae never unpickles models because that "
            "can run arbitrary code. Re-save the model with save_model_bundle()."
            if directory.suffix.lower() in _PICKLE_SUFFIXES
            else ""
        )
        raise DatasetInputError(
            f"'{directory}' is a file, but a model bundle is a directory holding "
            f"{WEIGHTS_FILE} and {CONFIG_FILE}.{hint}"
        )
    if not directory.is_dir():
        raise DatasetInputError(
            f"Model bundle directory '{directory}' does not exist. Train the model first or fix "
            f"the path."
        )
    missing = [name for name in (WEIGHTS_FILE, CONFIG_FILE) if not (directory / name).is_file()]
    if missing:
        pickles = sorted(
            p.name for p in directory.iterdir() if p.suffix.lower() in _PICKLE_SUFFIXES
        )
        hint = (
            f" It holds torch/pickle files {pickles}, which genevae refuses to load because "
            f"unpickling can run arbitrary code; re-save the model with save_model_bundle()."
            if pickles
            else ""
        )
        raise DatasetInputError(f"Model bundle '{directory}' lacks {missing}.{hint}")


def _read_header(path: Path) -> dict[str, Any]:
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetInputError(f"'{path}' is not valid JSON ({exc}); re-save the bundle.") from exc
    required = {"model_type", "config", "gene_names", "metadata", "format_version"}
    if not isinstance(header, dict) or not required <= header.keys():
        raise DatasetInputError(
            f"'{path}' is not a genevae model bundle config: it needs the keys {sorted(required)}."
        )
    if header["format_version"] > FORMAT_VERSION:
        raise DatasetInputError(
            f"'{path}' has bundle format_version {header['format_version']}, newer than the "
            f"{FORMAT_VERSION} this genevae {genevae.__version__} reads. Upgrade genevae."
        )
    return header


def _load_weights(model: GenerativeModel, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    try:
        load_model(model, str(path), strict=True)
    except (SafetensorError, RuntimeError) as exc:
        raise DatasetInputError(
            f"Could not load the weights in '{path}' into the {type(model).__name__} built from "
            f"{CONFIG_FILE} ({exc}). The file is corrupt or does not match the config; re-save "
            f"the bundle."
        ) from exc


class ModelBundleDataset(FsspecVersionedDataset[ModelBundle, ModelBundle]):
    """Kedro dataset saving/loading a `ModelBundle` as a safetensors + JSON directory.

    Saves are atomic (written to a temporary sibling directory, then renamed) and can be
    versioned. ``load_args: {expected_type: vega}`` refuses bundles of another model type.

    ```yaml
    "vega.{dataset}.model":
      type: genevae.datasets.model_bundle.ModelBundleDataset
      filepath: data/06_models/{dataset}/vega_model
      versioned: true
      load_args:
        expected_type: vega
    ```
    """

    IS_DIRECTORY = True

    def load(self) -> ModelBundle:
        """Rebuild the (latest or pinned) saved model."""
        with self._local_load_path(self._load_path_str()) as local:
            return load_model_bundle(local, **self._load_args)

    def save(self, data: ModelBundle) -> None:
        """Write the bundle atomically to the (versioned) save path."""
        if not isinstance(data, ModelBundle):
            raise DatasetInputError(
                f"ModelBundleDataset '{self._filepath}' saves ModelBundle objects, got "
                f"{type(data).__name__}. Wrap the model: ModelBundle(model, gene_names, metadata)."
            )
        with self._atomic_save_path() as staging:
            _write_bundle_files(
                data.model, staging, gene_names=data.gene_names, metadata=data.metadata
            )
