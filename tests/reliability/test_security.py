"""Security checks: no unpickling, servers on localhost, checksummed inputs, contained paths.

Model files offered as pickles are covered by the bad-input table (model-is-a-pickle-file,
model-folder-holds-a-pickle: their payload would create a file, and none appears).
"""

from __future__ import annotations

import ast
import pickle
import re
from pathlib import Path

import pytest
import yaml

from genevae.datasets.fetch import SOURCES, resolve_data_path
from genevae.errors import GenevaeInputError
from genevae.registry import Registry, raw_catalog_entries
from genevae.training import TensorData, TrainingSettings, train_model
from tests.conftest import PROJECT_ROOT
from tests.training.toy import ToyAutoencoder, low_rank_data

CONF = PROJECT_ROOT / "conf"
SOURCE_ROOT = PROJECT_ROOT / "src" / "genevae"


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _yaml_files(pattern: str) -> list[Path]:
    return sorted(CONF.glob(f"*/{pattern}"))


def _makefile_commands(program: str) -> list[str]:
    text = (PROJECT_ROOT / "Makefile").read_text()
    return [line.strip() for line in text.splitlines() if re.search(rf"\b{program}\b", line)]


# ----------------------------------------------------------------------------- unpickling


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _name(call: ast.Call) -> str:
    return ast.unparse(call.func)


def test_library_code_never_unpickles() -> None:
    """No pickle/joblib loads; every torch.load (if any appears) must pass weights_only=True."""
    offenders = []
    for path in sorted(SOURCE_ROOT.rglob("*.py")):
        for call in _calls(ast.parse(path.read_text())):
            name = _name(call)
            weights_only = {
                kw.arg: ast.unparse(kw.value) for kw in call.keywords if kw.arg == "weights_only"
            }
            if name in {"pickle.load", "pickle.loads", "joblib.load", "dill.load"} or (
                name == "torch.load" and weights_only.get("weights_only") != "True"
            ):
                offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{call.lineno} {name}")
    assert offenders == []


def test_resume_refuses_a_planted_pickle_checkpoint(tmp_path: Path) -> None:
    """``resume: true`` loads ``last.ckpt``; a file that would run code is refused, not run."""
    (tmp_path / "last.ckpt").write_bytes(pickle.dumps(_RunsCodeWhenUnpickled(tmp_path / "PWNED")))
    settings = TrainingSettings(
        max_epochs=1, checkpoint_dir=str(tmp_path), resume=True, progress_bar=False
    )
    data = TensorData({"x": low_rank_data(16).numpy()})
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        train_model(ToyAutoencoder(), data, None, settings, log_to_mlflow=False)
    assert not (tmp_path / "PWNED").exists()


# ----------------------------------------------------------------------------- servers


@pytest.mark.parametrize("ui", ["viz", "mlflow"])
def test_makefile_servers_bind_localhost(ui: str) -> None:
    """`make viz` / `make mlflow-ui` start the servers through genevae.ui on 127.0.0.1."""
    from genevae.ui import _command, parse_args

    commands = _makefile_commands("genevae.ui")
    served = [c for c in commands if f"genevae.ui {ui}" in c]
    assert served, f"no Makefile target runs genevae.ui {ui!r}"
    for command in served:
        assert re.search(r"--host[ =]127\.0\.0\.1\b", command), command
    assert not any("0.0.0.0" in c for c in commands)
    server = _command(parse_args([ui]), PROJECT_ROOT)  # the default the module passes on
    assert server[server.index("--host") + 1] == "127.0.0.1"


def test_mlflow_ui_host_is_localhost_in_every_environment() -> None:
    hosts = {}
    for path in _yaml_files("mlflow.yml"):
        ui = (yaml.safe_load(path.read_text()) or {}).get("ui")
        if ui is not None and "host" in ui:
            hosts[str(path.relative_to(CONF))] = ui["host"]
    assert hosts.get("base/mlflow.yml") == "127.0.0.1"
    assert set(hosts.values()) == {"127.0.0.1"}


# ----------------------------------------------------------------------------- downloads


def _catalog_entries() -> dict[str, dict]:
    """Every catalog entry with a file: the catalog files' and the dataset registries' raw ones."""
    entries = {}
    for path in _yaml_files("catalog*.yml"):
        for name, entry in (yaml.safe_load(path.read_text()) or {}).items():
            if isinstance(entry, dict) and "filepath" in entry:
                entries[f"{path.relative_to(CONF)}:{name}"] = entry
    for path in _yaml_files("datasets*.yml"):
        registry = Registry.from_config(yaml.safe_load(path.read_text()) or {})
        for name, entry in raw_catalog_entries(registry).items():
            entries[f"{path.relative_to(CONF)}:{name}"] = entry
    return entries


def test_every_raw_input_in_the_catalog_has_a_registered_checksum() -> None:
    """Files read from data/01_raw are only ever put there by fetch, which checks sha256."""
    registered = {source.filename for source in SOURCES.values()}
    raw = {
        name: Path(entry["filepath"]).name
        for name, entry in _catalog_entries().items()
        if entry["filepath"].startswith("data/01_raw/")
    }
    assert raw, "the catalog reads no raw files?"
    assert {name: f for name, f in raw.items() if f not in registered} == {}
    for source in SOURCES.values():
        assert re.fullmatch(r"[0-9a-f]{64}", source.sha256), source.name


# ----------------------------------------------------------------------------- paths


def test_every_catalog_filepath_stays_inside_the_data_folder(tmp_path: Path) -> None:
    for name, entry in _catalog_entries().items():
        filepath = entry["filepath"]
        assert "://" not in filepath and not Path(filepath).is_absolute(), name
        resolved = resolve_data_path(filepath, tmp_path)
        assert resolved.is_relative_to(tmp_path / "data"), name


def test_every_configured_checkpoint_dir_is_accepted_inside_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    checked = 0
    for path in _yaml_files("parameters*.yml"):
        for pipeline in (yaml.safe_load(path.read_text()) or {}).values():
            training = pipeline.get("training") if isinstance(pipeline, dict) else None
            if isinstance(training, dict) and training.get("checkpoint_dir"):
                TrainingSettings(checkpoint_dir=training["checkpoint_dir"])
                checked += 1
    assert checked >= 1


@pytest.mark.parametrize(
    ("configured", "inside"),
    [
        ("data/01_raw", "data/01_raw"),
        ("./data/06_models/checkpoints", "data/06_models/checkpoints"),
        ("data/../data/02_intermediate", "data/02_intermediate"),
        ("data", "data"),
    ],
)
def test_relative_paths_under_data_are_accepted(tmp_path: Path, configured: str, inside: str):
    assert resolve_data_path(configured, tmp_path) == (tmp_path / inside).resolve()


@pytest.mark.parametrize(
    "configured", ["", ".", "..", "src/genevae", "data/../conf", "data/../../x", "../data"]
)
def test_relative_paths_leaving_data_are_refused(tmp_path: Path, configured: str) -> None:
    with pytest.raises(GenevaeInputError, match="outside the project data folder"):
        resolve_data_path(configured, tmp_path)
    assert not any(tmp_path.iterdir())


def test_absolute_and_home_paths_are_trusted(tmp_path: Path) -> None:
    elsewhere = tmp_path.parent / "shared-mirror"
    assert resolve_data_path(elsewhere, tmp_path) == elsewhere
    assert resolve_data_path("~/genevae-data", tmp_path) == Path.home() / "genevae-data"
