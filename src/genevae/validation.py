"""Check a run's configuration before any node runs, and report every problem in one message.

A typo or a wrong label used to surface only after training, or after half the outputs were
written. These checks read no expression matrix and write nothing:

* parameters: each section a run uses is validated against a pydantic model derived from the
  base defaults (``conf/base/parameters_*.yml``). The defaults are the schema: a key they do
  not have is unknown at any depth, and the message suggests the closest valid name. Types
  follow the default value (null: anything); ``null`` is accepted everywhere.
* the dataset registry (``datasets``, ``gene_sets``, ``grn_references``): explicit models
  per dataset kind, and the references between them.
* data: every input file exists and is readable; obs columns, group labels, cell types and
  the GSEA contrast are checked against the file's obs, read without X. Labels compare as
  strings, so ``group1: 1`` matches the obs label ``"1"``.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import types
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from genevae.analysis.comparisons import comparison_name
from genevae.errors import GenevaeConfigError
from genevae.registry import KINDS, Registry, raw_catalog_entries

REGISTRY_SECTIONS = ("datasets", "gene_sets", "grn_references")
_STRICT = ConfigDict(extra="forbid", protected_namespaces=())


def _as_label(value: Any) -> Any:
    """Numbers read from YAML as the text labels they stand for (``1`` → ``"1"``)."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return str(value) if is_number else value


Label = Annotated[str, BeforeValidator(_as_label)]


class _Strict(BaseModel):
    model_config = _STRICT


# ------------------------------------------------------------------ explicit models


class Comparison(_Strict):
    """One Bayes-factor contrast: ``group1`` vs ``group2`` (or the rest) within ``groupby``."""

    name: str | None = None
    groupby: str
    group1: Label
    group2: Label | None = None
    cell_types: list[Label] | None = None


class ArithmeticStep(_Strict):
    """Tybalt latent arithmetic: decoded mean(a) − mean(b) + mean(c) of ``groupby`` groups."""

    name: str
    groupby: Label | list[str]
    a: Label
    b: Label
    c: Label


class ScrnaObs(_Strict):
    condition: str | None = None
    cell_type: str | None = None
    batch: str | None = None


class PerturbseqObs(_Strict):
    perturbation: str
    target_gene: str | None = None


class BulkObs(_Strict):
    cancer_type: str | None = None


class _Entry(_Strict):
    """Keys every dataset entry may have: per-pipeline overrides of the parameter defaults."""

    description: str | None = None
    load_args: dict[str, Any] | None = None
    data_processing: dict[str, Any] | None = None
    vega: dict[str, Any] | None = None
    tybalt: dict[str, Any] | None = None
    gpo_vae: dict[str, Any] | None = None


class ScrnaDataset(_Entry):
    kind: Literal["scrna"]
    file: str
    obs: ScrnaObs = ScrnaObs()
    comparisons: list[Comparison] = []
    gsea_comparison: str | None = None
    gene_sets: list[str] = []


class SummaryStats(_Strict):
    """Per-perturbation summary statistics (Replogle Table S2 columns) for the strong-
    perturbation filter: a CSV/TSV, or an Excel file and its sheet (default: the first)."""

    file: str
    sheet: str | None = None


class PerturbseqDataset(_Entry):
    kind: Literal["perturbseq"]
    file: str
    obs: PerturbseqObs
    control_label: Label
    grn_reference: str | None = None
    summary_stats: SummaryStats | None = None


class BulkDataset(_Entry):
    kind: Literal["bulk"]
    cohorts: dict[str, str]
    obs: BulkObs = BulkObs()
    reference_genes: str | None = None
    colors: str | None = None


class GeneSetCollection(_Strict):
    file: str


class GrnReference(_Strict):
    file: str
    source_col: str
    target_col: str


_DATASET_MODELS: dict[str, type[_Entry]] = {
    "scrna": ScrnaDataset,
    "perturbseq": PerturbseqDataset,
    "bulk": BulkDataset,
}


# ------------------------------------------------------------------ derived parameter models


def _overrides_of(section: str) -> Callable[[ParameterSchema], Any]:
    """An open place whose keys must be keys of another section (all optional)."""
    return lambda schema: schema.model(section)


def _grid_of(*sections: str) -> Callable[[ParameterSchema], Any]:
    """A search grid: the named sections' keys, each with a list of values to try."""

    def build(schema: ParameterSchema) -> Any:
        root = sections[0].split(".")[0]
        fields = {name.split(".")[-1]: schema.model(name, leaf=list[Any]) for name in sections}
        return _model(f"{root}.sweep.grid", {key: (value, None) for key, value in fields.items()})

    return build


# Places whose keys or items the defaults cannot describe (defaults paths; * = any key).
OPEN_PLACES: dict[str, Callable[[ParameterSchema], Any]] = {
    "vega.analysis.comparisons": lambda _: list[Comparison],
    "tybalt.generation.arithmetic": lambda _: list[ArithmeticStep],
    "tybalt.sweep.grid": _grid_of("tybalt.training", "tybalt.model"),
    "gpo_vae.*.variant.model_overrides": _overrides_of("gpo_vae.model"),
    "evaluation.generalisation.training": _overrides_of("vega.training"),
    "evaluation.generalisation.model": _overrides_of("vega.model"),
    "evaluation.benchmark.training": _overrides_of("vega.training"),
    "evaluation.benchmark.model": _overrides_of("vega.model"),
    "evaluation.benchmark.grn.training": _overrides_of("gpo_vae.training"),
    "evaluation.benchmark.grn.model": _overrides_of("gpo_vae.model"),
    "*.training.devices": lambda _: Any,  # "auto", a count or a list of device ids
}


def _model(path: str, fields: Mapping[str, tuple[Any, Any]]) -> type[BaseModel]:
    """A strict model whose fields are the given keys (aliases, so any key is a valid name)."""
    definitions = {
        f"field_{i}": (annotation, Field(default=default, alias=key))
        for i, (key, (annotation, default)) in enumerate(fields.items())
    }
    return create_model(path.replace(".", "_") or "parameters", __config__=_STRICT, **definitions)


def _leaf_type(value: Any) -> Any:
    """The type a default value asks for; ``null`` is accepted for every key."""
    if value is None:
        return Any
    for kind in (bool, int, float):
        if isinstance(value, kind):
            return kind | None
    if isinstance(value, str):
        return Label | None  # numbers given for text are the labels they read as
    return list[Any] | None if isinstance(value, list) else Any


class ParameterSchema:
    """Pydantic models of every parameter section, derived from the base defaults."""

    def __init__(self, defaults: Mapping[str, Any]) -> None:
        self.defaults = defaults
        self._models: dict[tuple[str, Any], Any] = {}

    def model(self, path: str, leaf: Any = None) -> type[BaseModel]:
        """The model of the defaults section at ``path`` (``leaf``: type of every leaf)."""
        if (path, leaf) not in self._models:
            default = _get(self.defaults, path)
            self._models[path, leaf] = _strip(self.annotation(path, default, leaf))
        return self._models[path, leaf]

    def annotation(self, path: str, value: Any, leaf: Any = None) -> Any:
        """The type of the defaults ``value`` found at ``path``."""
        rule = next((r for p, r in OPEN_PLACES.items() if fnmatch.fnmatchcase(path, p)), None)
        if rule is not None:
            return rule(self) | None
        if isinstance(value, Mapping):
            fields = {
                str(key): (self.annotation(f"{path}.{key}", item, leaf), None)
                for key, item in value.items()
            }
            return _model(path, fields) | None
        if leaf is not None:
            return leaf
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            merged = {k: v for item in value for k, v in item.items()}
            return list[self.annotation(f"{path}[]", merged)] | None
        return _leaf_type(value)

    def check(self, name: str, value: Any, path: str, skip: Iterable[tuple] = ()) -> list[str]:
        """Problems of ``value`` (shown as ``name``) against the defaults section ``path``.

        ``skip``: error locations already reported elsewhere (a per-dataset section inherits
        its pipeline section's keys, typos included).
        """
        return _model_problems(name, self.model(path), value, set(skip))

    def error_locations(self, value: Any, path: str) -> set[tuple]:
        """Where ``value`` fails the defaults section ``path``."""
        return {tuple(detail["loc"]) for detail in _errors(self.model(path), value)}


def _errors(model: type[BaseModel], value: Any) -> list[Any]:
    try:
        model.model_validate(value)
    except ValidationError as error:
        return list(error.errors())
    return []


def _model_problems(
    name: str, model: type[BaseModel], value: Any, skip: set[tuple] | None = None
) -> list[str]:
    errors = [d for d in _errors(model, value) if tuple(d["loc"]) not in (skip or set())]
    return [_describe(name, model, detail) for detail in errors]


def _get(tree: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """The value at a dotted ``path`` of nested mappings, or ``default``."""
    value: Any = tree
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return default
        value = value[part]
    return value


# ------------------------------------------------------------------ error messages


def _strip(annotation: Any) -> Any:
    """The model or list inside ``X | None`` / ``Annotated[X, ...]``."""
    if get_origin(annotation) is Annotated:
        return _strip(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        return _strip(members[0]) if len(members) == 1 else annotation
    return annotation


def _keys_at(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The valid keys of the mapping that ``loc`` points into."""
    current = _strip(model)
    for part in loc:
        if isinstance(part, int):
            args = get_args(current) if get_origin(current) is list else ()
            current = _strip(args[0]) if args else Any
        elif isinstance(current, type) and issubclass(current, BaseModel):
            fields = {f.alias or n: f for n, f in current.model_fields.items()}
            current = _strip(fields[part].annotation) if part in fields else Any
        else:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _dotted(name: str, loc: Iterable[Any]) -> str:
    path = name
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _describe(name: str, model: Any, detail: Mapping[str, Any]) -> str:
    """One sentence for one pydantic error: the key, the value and how to fix it."""
    loc = tuple(detail["loc"])
    where = _dotted(name, loc)
    if detail["type"] == "extra_forbidden":
        siblings = _keys_at(model, loc[:-1])
        nested = [f"{s}.{loc[-1]}" for s in siblings if loc[-1] in _keys_at(model, (*loc[:-1], s))]
        return _unknown_key(name, loc, siblings, nested)
    if detail["type"] == "missing":
        return f"`{where}` is missing; add it."
    return f"`{where}` = {detail.get('input')!r}: {detail['msg'].lower()}; change the value."


def _unknown_key(name: str, loc: tuple[Any, ...], valid: list[str], nested: list[str]) -> str:
    """The closest valid sibling, else the same key one level down (a section left out)."""
    parent = _dotted(name, loc[:-1])
    key = str(loc[-1])
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6) or nested[:1]
    if close:
        return f"`{parent}.{key}` is not a known parameter; did you mean `{parent}.{close[0]}`?"
    known = ", ".join(sorted(valid)) or "none"
    return f"`{parent}.{key}` is not a known parameter; the keys of `{parent}` are: {known}."


def format_problems(problems: list[str]) -> str:
    """All problems in one readable block: a head line and one line per problem."""
    count, them = (
        (f"{len(problems)} problems", "them") if len(problems) > 1 else ("1 problem", "it")
    )
    head = (
        f"The configuration has {count}; nothing was run or written. Fix {them} in conf/ "
        "(or in --params) and run again:"
    )
    return "\n".join([head, *(f"  - {problem}" for problem in problems)])


def raise_if_problems(problems: list[str]) -> None:
    """Raise one :class:`GenevaeConfigError` listing every problem, if there are any."""
    if problems:
        raise GenevaeConfigError(format_problems(problems))


# ------------------------------------------------------------------ parameter sections


def parameter_problems(
    params: Mapping[str, Any],
    defaults: Mapping[str, Any],
    sections: Iterable[str],
    dataset_names: Iterable[str] = (),
) -> list[str]:
    """Problems of the top-level ``sections`` a run uses, and of unknown top-level sections.

    A section's keys that are dataset names (``vega.kang``) are per-dataset sections: each is
    checked against the same defaults as the section itself.
    """
    names = set(dataset_names)
    schema = ParameterSchema(_without(defaults, names))
    problems = _unknown_sections(params, defaults)
    for section in sorted(set(sections) & set(defaults)):
        value = params.get(section)
        own = _without(value, names)
        problems += schema.check(section, own, section)
        reported = schema.error_locations(own, section)
        for name in sorted(names & set(value if isinstance(value, Mapping) else ())):
            problems += schema.check(f"{section}.{name}", value[name], section, skip=reported)
    return problems


def _without(value: Any, names: set[str]) -> Any:
    """A mapping without the per-dataset keys (anything else unchanged)."""
    if not isinstance(value, Mapping):
        return value
    return {key: item for key, item in value.items() if key not in names}


def _unknown_sections(params: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    known = [*defaults, *REGISTRY_SECTIONS]
    problems = []
    for section in sorted(set(params) - set(known)):
        close = difflib.get_close_matches(section, known, n=1, cutoff=0.6)
        hint = f"did you mean `{close[0]}`?" if close else f"the sections are: {', '.join(known)}."
        problems.append(f"`{section}` is not a known parameter section; {hint}")
    return problems


# ------------------------------------------------------------------ the dataset registry


def registry_problems(params: Mapping[str, Any]) -> list[str]:
    """Problems of the keys and values of the ``datasets``, ``gene_sets`` and
    ``grn_references`` blocks (the names they use from each other: :func:`reference_problems`).
    """
    problems = []
    for name, entry in (params.get("datasets") or {}).items():
        problems += _entry_problems(name, entry)
    for section, model in (("gene_sets", GeneSetCollection), ("grn_references", GrnReference)):
        for name, entry in (params.get(section) or {}).items():
            problems += _model_problems(f"{section}.{name}", model, entry)
    return problems


def _entry_problems(name: str, entry: Any) -> list[str]:
    kind = entry.get("kind") if isinstance(entry, Mapping) else None
    if kind not in _DATASET_MODELS:
        return [
            f"`datasets.{name}.kind` = {kind!r} is not a dataset kind; "
            f"use one of: {', '.join(KINDS)}."
        ]
    return _model_problems(f"datasets.{name}", _DATASET_MODELS[kind], entry)


def reference_problems(params: Mapping[str, Any]) -> list[str]:
    """Names one block uses that another must define (GSEA contrast, collections, GRNs)."""
    problems = []
    for name, entry in (params.get("datasets") or {}).items():
        where = f"datasets.{name}"
        for collection in entry.get("gene_sets") or []:
            problems += _named(
                f"{where}.gene_sets", collection, "gene_sets", params.get("gene_sets")
            )
        if entry.get("grn_reference") is not None:
            references = params.get("grn_references")
            reference = entry["grn_reference"]
            problems += _named(f"{where}.grn_reference", reference, "grn_references", references)
        contrast, comparisons = entry.get("gsea_comparison"), entry.get("comparisons") or []
        problems += _gsea_problems(f"{where}.gsea_comparison", contrast, comparisons)
    return problems


def _named(key: str, value: str, block: str, defined: Mapping[str, Any] | None) -> list[str]:
    if value in (defined or {}):
        return []
    known = ", ".join(defined or {}) or "none"
    return [f"`{key}` = {value!r} is not listed under `{block}` (listed: {known}); add it there."]


def _gsea_problems(key: str, contrast: str | None, comparisons: list[Any]) -> list[str]:
    names = [comparison_name(c) for c in comparisons if c.get("groupby")]
    if contrast is None or contrast in names:
        return []
    return [
        f"`{key}` = {contrast!r} is none of the dataset's comparisons "
        f"({', '.join(names) or 'none'}); name one of them (or give that comparison a `name`), "
        "or set it to null to switch GSEA off."
    ]


# ------------------------------------------------------------------ files and data

Files = set[str] | None  # the files a run reads; None: every file it could read


def required_files(params: Mapping[str, Any], loaded: Iterable[str]) -> set[str]:
    """Paths of the registered raw files among the catalog entries a run ``loaded``."""
    registry = Registry(
        **{section: dict(params.get(section) or {}) for section in REGISTRY_SECTIONS}
    )
    names = {name.split("@", 1)[0] for name in loaded}
    entries = raw_catalog_entries(registry)
    return {spec["filepath"] for name, spec in entries.items() if name in names}


def file_problem(key: str, file: str, root: Path, required: Files = None) -> list[str]:
    """A problem if ``file`` (relative to the project ``root``) is not a readable file.

    A missing file is a problem only if the run reads it (``required``; None: all files).
    """
    path = Path(file) if Path(file).is_absolute() else root / file
    if not path.exists():
        if required is not None and file not in required:
            return []
        return [
            f"`{key}` = {file!r}: no such file ({path}); correct the path, or put the file "
            "there (`make data` fetches the shipped data)."
        ]
    if not path.is_file() or not os.access(path, os.R_OK):
        return [f"`{key}` = {file!r}: {path} is not a readable file; check it and its permissions."]
    return []


def read_obs(path: Path) -> Any:
    """The obs table of an ``.h5ad`` file, read in backed mode: X stays on disk."""
    import anndata

    with warnings.catch_warnings():  # notices about old-format elements other than obs
        warnings.simplefilter("ignore")
        adata = anndata.read_h5ad(path, backed="r")
    try:
        return adata.obs
    finally:
        adata.file.close()


def dataset_problems(
    name: str, params: Mapping[str, Any], root: Path, required: Files = None, vega: bool = False
) -> list[str]:
    """Problems of one registered dataset's files and of its obs keys and labels.

    The obs checks read the raw file; a raw file the run does not read may be absent (a
    model run on processed data), and then they are skipped. ``vega``: the run uses the
    dataset's vega section, whose comparisons are checked too.
    """
    entry = params["datasets"][name]
    where = f"datasets.{name}"
    if entry["kind"] == "bulk":
        files = _bulk_files(where, entry)
        return [p for key, file in files for p in file_problem(key, file, root, required)]
    problems = _collection_file_problems(entry, params, root, required)
    if entry.get("summary_stats"):
        problems += _summary_stats_problems(f"{where}.summary_stats", entry, root, required)
    missing = file_problem(f"{where}.file", entry["file"], root, required)
    if missing or not (root / entry["file"]).exists():
        return missing + problems
    try:
        obs = read_obs(root / entry["file"])
    except Exception as error:  # any reason the file is not an AnnData file
        reason = f"{type(error).__name__}: {error}"
        return [f"`{where}.file` = {entry['file']!r} is not a readable .h5ad file ({reason})."]
    if entry["kind"] == "perturbseq":
        return problems + _perturbseq_obs_problems(where, entry, obs, entry["file"])
    problems += _scrna_obs_problems(where, entry, obs, entry["file"])
    return problems + (_vega_problems(name, params, obs, entry["file"]) if vega else [])


def _bulk_files(where: str, entry: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, file) of a bulk dataset's cohort matrices and optional gene list and colours."""
    files = [(f"{where}.cohorts.{cohort}", file) for cohort, file in entry["cohorts"].items()]
    optional = ("reference_genes", "colors")
    return files + [(f"{where}.{key}", entry[key]) for key in optional if entry.get(key)]


def _collection_file_problems(
    entry: Mapping[str, Any], params: Mapping[str, Any], root: Path, required: Files
) -> list[str]:
    """Files of the gene-set collections and GRN reference the dataset uses."""
    used = [("gene_sets", c) for c in entry.get("gene_sets") or []]
    if entry.get("grn_reference") is not None:
        used.append(("grn_references", entry["grn_reference"]))
    listed = [(block, name, (params.get(block) or {}).get(name)) for block, name in used]
    return [  # names listed nowhere are reference problems
        problem
        for block, name, spec in listed
        if spec is not None
        for problem in file_problem(f"{block}.{name}.file", spec["file"], root, required)
    ]


def _summary_stats_problems(
    key: str, entry: Mapping[str, Any], root: Path, required: Files
) -> list[str]:
    """The summary-statistics table exists, reads, and has the strong-perturbation columns."""
    import pandas as pd

    from genevae.preprocessing.perturbseq_sources import SUMMARY_COLUMNS
    from genevae.registry import summary_stats_entry

    spec = entry["summary_stats"]
    missing = file_problem(f"{key}.file", spec["file"], root, required)
    path = root / spec["file"]
    if missing or not path.exists():
        return missing
    catalog = summary_stats_entry(spec)
    read = pd.read_excel if catalog["type"] == "pandas.ExcelDataset" else pd.read_csv
    try:
        header = read(path, nrows=0, **catalog["load_args"])
    except Exception as error:  # any reason the table does not read
        return [f"`{key}` = {spec['file']!r} does not read as a table ({type(error).__name__}: "
                f"{error}); give a CSV/TSV, or an Excel file and its `sheet`."]  # fmt: skip
    absent = [column for column in SUMMARY_COLUMNS if column not in header.columns]
    if not absent:
        return []
    return [
        f"`{key}` = {spec['file']!r} lacks the column(s) {absent} that the strong-perturbation "
        f"filter reads (Replogle et al. 2022 Table S2: {list(SUMMARY_COLUMNS)})."
    ]


def _labels(obs: Any, column: str) -> list[str]:
    return sorted(obs[column].astype(str).unique())


def _shown(values: list[str], limit: int = 20) -> str:
    more = f", … ({len(values) - limit} more)" if len(values) > limit else ""
    return ", ".join(values[:limit]) + more


def _column_problem(key: str, column: str | None, obs: Any, file: str) -> list[str]:
    if column is None or column in obs.columns:
        return []
    return [
        f"`{key}` = {column!r} is not an obs column of {file}; "
        f"use one of: {_shown(sorted(map(str, obs.columns)))}."
    ]


def _label_problems(key: str, labels: Iterable[Any], column: str, obs: Any) -> list[str]:
    available = _labels(obs, column)
    unknown = [str(label) for label in labels if str(label) not in available]
    if not unknown:
        return []
    return [
        f"`{key}` = {', '.join(map(repr, unknown))} is not a label of obs column {column!r}; "
        f"use one of: {_shown(available)}."
    ]


def _scrna_obs_problems(where: str, entry: Mapping[str, Any], obs: Any, file: str) -> list[str]:
    keys = entry.get("obs") or {}
    problems = [
        p
        for role, column in keys.items()
        for p in _column_problem(f"{where}.obs.{role}", column, obs, file)
    ]
    comparisons = entry.get("comparisons") or []
    cell_type = keys.get("cell_type")
    return problems + _comparison_problems(
        f"{where}.comparisons", comparisons, cell_type, obs, file
    )


def _comparison_problems(
    where: str, comparisons: list[Any], cell_type: str | None, obs: Any, file: str
) -> list[str]:
    """Each comparison's groupby column, group labels and cell types, looked up in obs."""
    problems = []
    for i, comparison in enumerate(comparisons):
        key = f"{where}[{i}]"
        groupby = comparison.get("groupby")
        missing = _column_problem(f"{key}.groupby", groupby, obs, file)
        problems += missing
        for group in ("group1", "group2"):
            if groupby and not missing and comparison.get(group) is not None:
                problems += _label_problems(f"{key}.{group}", [comparison[group]], groupby, obs)
        if comparison.get("cell_types"):
            problems += _cell_type_problems(f"{key}.cell_types", comparison, cell_type, obs)
    return problems


def _vega_problems(name: str, params: Mapping[str, Any], obs: Any, file: str) -> list[str]:
    """The effective ``vega.<name>`` comparisons and GSEA contrast, where they differ from
    the registry entry's (set with ``--params`` or the entry's own ``vega:`` block).
    """
    entry = params["datasets"][name]
    where = f"vega.{name}.analysis"
    analysis = _get(params, where) or {}
    comparisons = list(analysis.get("comparisons") or [])
    own = comparisons != list(entry.get("comparisons") or [])
    cell_type = analysis.get("cell_type_key")
    problems = (
        _comparison_problems(f"{where}.comparisons", comparisons, cell_type, obs, file)
        if own
        else []
    )
    contrast = (analysis.get("gsea") or {}).get("comparison")
    if own or contrast != entry.get("gsea_comparison"):
        problems += _gsea_problems(f"{where}.gsea.comparison", contrast, comparisons)
    return problems


def _cell_type_problems(
    key: str, comparison: Mapping[str, Any], column: Any, obs: Any
) -> list[str]:
    if column is None or column not in obs.columns:
        return [f"`{key}` needs the dataset's `obs.cell_type` column; set it to an obs column."]
    return _label_problems(key, comparison["cell_types"], column, obs)


def _perturbseq_obs_problems(
    where: str, entry: Mapping[str, Any], obs: Any, file: str
) -> list[str]:
    keys = entry["obs"]
    problems = [
        p
        for role, column in keys.items()
        for p in _column_problem(f"{where}.obs.{role}", column, obs, file)
    ]
    if problems:
        return problems
    return _label_problems(
        f"{where}.control_label", [entry["control_label"]], keys["perturbation"], obs
    )


def collection_choice_problems(name: str, params: Mapping[str, Any]) -> list[str]:
    """VEGA's gene-module collection must be one the scRNA dataset builds a mask for."""
    entry = params["datasets"][name]
    chosen = _get(params, f"vega.{name}.gene_module_collection")
    built = [str(c) for c in entry.get("gene_sets") or []]
    if entry["kind"] != "scrna" or chosen is None or chosen in built:
        return []
    return [
        f"`vega.{name}.gene_module_collection` = {chosen!r} is not among the dataset's "
        f"gene_sets ({', '.join(built) or 'none'}); choose one of them, or add it to "
        f"`datasets.{name}.gene_sets`."
    ]


# ------------------------------------------------------------------ everything a run uses


def validate_run(
    params: Mapping[str, Any],
    defaults: Mapping[str, Any],
    sections: Iterable[str],
    datasets: Iterable[str],
    root: Path,
    loaded: Iterable[str] | None = None,
) -> None:
    """Check what a run uses; raise one :class:`GenevaeConfigError` naming every problem.

    ``sections``: the top-level parameter sections the run's nodes read; ``datasets``: the
    registered datasets the run works on (their files and obs are checked); ``root``: the
    project folder that relative file paths start from; ``loaded``: the catalog entries the
    run loads (its registered raw files must exist; None: every file of its datasets).
    """
    sections = set(sections)
    registered = list(params.get("datasets") or {})
    problems = parameter_problems(params, defaults, sections, registered)
    registry = registry_problems(params)
    problems += registry
    if not registry:  # the data checks rely on well-formed entries
        problems += reference_problems(params)
        required = None if loaded is None else required_files(params, loaded)
        for name in sorted(set(datasets) & set(registered)):
            problems += dataset_problems(name, params, root, required, "vega" in sections)
            if "vega" in sections:
                problems += collection_choice_problems(name, params)
    raise_if_problems(problems)
