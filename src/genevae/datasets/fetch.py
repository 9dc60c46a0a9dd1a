"""Raw inputs with their public origin and checksum, fetched into ``data/01_raw``.

`fetch` looks in three places, in order: the raw folder itself (a file with the right
sha256 is kept as is), a local mirror folder (``GENEVAE_DATA_MIRROR``, by default
``../shared/data`` beside the project when it exists), and the upstream URL. Every copy or
download goes to a temporary file that is renamed into place only after its sha256 matches,
so ``data/01_raw`` never holds a partial or wrong file.

Command line::

    python -m genevae.datasets.fetch --list
    python -m genevae.datasets.fetch [NAME ...] [--raw-dir data/01_raw] [--mirror PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm.auto import tqdm

from genevae.errors import GenevaeInputError

logger = logging.getLogger(__name__)

MIRROR_ENV = "GENEVAE_DATA_MIRROR"
DEFAULT_RAW_DIR = Path("data/01_raw")
_CHUNK = 1 << 20
_TIMEOUT_SECONDS = 60

_VEGA_REPRO = (
    "https://raw.githubusercontent.com/LucasESBS/vega-reproducibility/"
    "2474b51dc50654f0c6a5509cdebd179747c9e8f5/data"
)
_TYBALT = "https://raw.githubusercontent.com/greenelab/tybalt/644f34ab0d4b0835f1b7ae5e9074f5ae4b6b45c8/data"
_TCGABIOLINKS_DEB = (
    "https://deb.debian.org/debian/pool/main/r/r-bioc-tcgabiolinks/"
    "r-bioc-tcgabiolinks_2.25.3+dfsg-1_all.deb"
)


class DataFetchError(GenevaeInputError):
    """A raw input could not be fetched or failed its checksum; the message says what to do."""


@dataclass(frozen=True)
class RawSource:
    """One raw input file: where it comes from and how to recognise the right bytes.

    ``derived_from`` is set when the stored file is not the upstream bytes (a gzip or an R
    export of them); such files cannot be downloaded byte-identically and come from a mirror.
    """

    name: str
    filename: str
    url: str
    sha256: str
    mirror_path: str
    description: str
    derived_from: str | None = None


SOURCES: dict[str, RawSource] = {
    source.name: source
    for source in (
        RawSource(
            name="hallmark_vega",
            filename="msigdb_hallmark_v7x_symbols_vega.gmt",
            url=f"{_VEGA_REPRO}/hallmarks.gmt",
            sha256="0445cf5f5bb68c14f32d0b11df2afc606506c27161f734a846b102d1d2f12d9a",
            mirror_path="genesets/msigdb_hallmark_v7x_symbols_vega.gmt",
            description="MSigDB Hallmark (50 sets, v7.2+ symbols) as used by VEGA; default gene modules",
        ),
        RawSource(
            name="hallmark_gseapy",
            filename="msigdb_hallmark_v7.0_symbols_gseapy.gmt",
            url=(
                "https://raw.githubusercontent.com/zqfang/GSEApy/"
                "08cb2b689def365f7dee1f5da50c49d3a149cf5a/tests/extdata/h.all.v7.0.symbols.gmt"
            ),
            sha256="4803c09aae50bbd96d53fc681bd5545a4c89278993c15145dd7b7c994f893516",
            mirror_path="genesets/msigdb_hallmark_v7.0_symbols_gseapy.gmt",
            description="MSigDB Hallmark v7.0 (older symbols); tests symbol-version handling",
        ),
        RawSource(
            name="reactome_vega",
            filename="msigdb_c2cp_reactome_674_symbols_vega.gmt",
            url=f"{_VEGA_REPRO}/reactomes.gmt",
            sha256="3168f672fca6eabf5d21d99181b87fd8c4304866acd0930712a61e9140c7b4ae",
            mirror_path="genesets/msigdb_c2cp_reactome_674_symbols_vega.gmt",
            description="MSigDB C2:CP:REACTOME, the 674 sets used by VEGA",
        ),
        RawSource(
            name="chipatlas_k562",
            filename="chipatlas_K562_ChipSeq_causalbench.csv.gz",
            url="https://pypi.org/project/causalbench/1.1.2/#files",
            sha256="b3740a5e2941c643c03cddce46d43426913c3a40f8843e0bc540234fd978b3f7",
            mirror_path="grn/chipatlas_K562_ChipSeq_causalbench.csv.gz",
            description="ChIP-Atlas K562 TF→target edges (173 TFs, 892,990 edges), GRN ground truth",
            derived_from=(
                "gzip -9 -n of causalscbench/data_access/data/K562_ChipSeq.csv in the PyPI "
                "wheel causalbench-1.1.2-py3-none-any.whl"
            ),
        ),
        RawSource(
            name="gbm_aracne",
            filename="gbm_aracne_regulons_vega.gmt",
            url=f"{_VEGA_REPRO}/gbm_aracne.gmt",
            sha256="75fada46fa00c8f5fcc0a8b688b0a39b96241796792f949fce253401b153c307",
            mirror_path="grn/gbm_aracne_regulons_vega.gmt",
            description="Glioblastoma ARACNe regulons (6,056 regulators) used by VEGA as TF modules",
        ),
        RawSource(
            name="kang2018_pbmc",
            filename="kang2018_pbmc_ifnb_scgen_valid.h5ad",
            url=(
                "https://raw.githubusercontent.com/theislab/scgen/"
                "dd7e178f9b42b9dfef9eb18d0da4b8e3caea4cf7/data/valid.h5ad"
            ),
            sha256="83f89f5356a4c01f65bbcee225eb45d8d8b13b6c962724431a26c1bf568ff09e",
            mirror_path="scrna/kang2018_pbmc_ifnb_scgen_valid.h5ad",
            description="Kang 2018 PBMC ctrl vs IFN-beta, scGen validation split (1,975 cells x 6,998 genes)",
        ),
        RawSource(
            name="adamson2016_pilot",
            filename="adamson2016_pilot_upr_360x1000.h5ad",
            url=(
                "https://raw.githubusercontent.com/helenhuangmath/perturbflow-analyzer/"
                "b2d99ac70b2e7d1178990f1119b3317ea37374d9/examples/data/"
                "adamson_2016_upr_360x1000.h5ad"
            ),
            sha256="36e8a610b2385fa55c9f44e114a6cbf694ad8e1978226607c9ddc65ad348eb0b",
            mirror_path="perturbseq/adamson2016_pilot_upr_360x1000.h5ad",
            description="Adamson 2016 K562 CRISPRi Perturb-seq subset (360 cells x 1,000 genes, raw counts)",
        ),
        RawSource(
            name="tcga_brca",
            filename="tcga_brca_rnaseqv2_tcgabiolinks_dataBRCA.tsv.gz",
            url=_TCGABIOLINKS_DEB,
            sha256="76793a6d09be35a85f6f71de218573f29b3d43fe34c9c128ddf74ac9235c0cf7",
            mirror_path="bulk/tcga_brca_rnaseqv2_tcgabiolinks_dataBRCA.tsv.gz",
            description="TCGA-BRCA RSEM counts, 20,530 genes x 10 samples (5 tumour, 5 normal)",
            derived_from="TSV export (R lazyLoad + write.table) of TCGAbiolinks object dataBRCA",
        ),
        RawSource(
            name="tcga_read",
            filename="tcga_read_rnaseqv2_tcgabiolinks_dataREAD_df.tsv.gz",
            url=_TCGABIOLINKS_DEB,
            sha256="a411bcd9006a31f7d94eda9b1ad1cac90520ee41e3f48760eeaccfb75600e9c5",
            mirror_path="bulk/tcga_read_rnaseqv2_tcgabiolinks_dataREAD_df.tsv.gz",
            description="TCGA-READ normalised counts, 20,531 genes x 2 tumours (label handling)",
            derived_from="TSV export (R lazyLoad + write.table) of TCGAbiolinks object dataREAD_df",
        ),
        RawSource(
            name="tybalt_mad_genes",
            filename="tybalt_5000_mad_genes.txt",
            url=f"{_TYBALT}/background_genes.txt",
            sha256="22d4bcd572de1999ea61deec2f851dcd5afb4b321f0a395e2211669a700f469d",
            mirror_path="bulk/tybalt_5000_mad_genes.txt",
            description="Tybalt's 5,000 top-MAD TCGA PanCan genes (its input features)",
        ),
        RawSource(
            name="tybalt_tcga_colors",
            filename="tybalt_tcga_colors.tsv",
            url=f"{_TYBALT}/tcga_colors.tsv",
            sha256="3bfd2764909c29e4c854fde50aa175ddd6759c6ce00bb354a57e2d2cf7ef6e8a",
            mirror_path="bulk/tybalt_tcga_colors.tsv",
            description="The 33 TCGA study abbreviations with their standard colours",
        ),
    )
}


def project_root() -> Path:
    """The source checkout holding this package, or the working directory when installed."""
    checkout = Path(__file__).resolve().parents[3]
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()


def default_mirror() -> Path | None:
    """``$GENEVAE_DATA_MIRROR`` if set (it must exist), else ``../shared/data`` if present."""
    configured = os.environ.get(MIRROR_ENV)
    if configured:
        return _checked_mirror(configured)
    fallback = project_root().parent / "shared" / "data"
    return fallback if fallback.is_dir() else None


def _checked_mirror(mirror: str | Path) -> Path:
    path = Path(mirror).expanduser()
    if not path.is_dir():
        raise DataFetchError(
            f"Data mirror '{mirror}' (--mirror or {MIRROR_ENV}) is not a directory. Point it at "
            f"a folder laid out like shared/data (scrna/..., bulk/...), or leave it unset."
        )
    return path


def resolve_data_path(path: str | Path, project_root: Path) -> Path:
    """Resolve a relative ``path`` against ``project_root``, refusing escapes from ``data/``.

    Relative paths from configuration must stay inside ``<project_root>/data`` so that a typo
    such as ``../../`` cannot make the pipeline write elsewhere; absolute paths are trusted.
    """
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    data_root = (project_root / "data").resolve()
    resolved = (project_root / path).resolve()
    if not resolved.is_relative_to(data_root):
        raise GenevaeInputError(
            f"Relative data path '{path}' resolves to '{resolved}', outside the project data "
            f"folder '{data_root}'. Use a path under data/ or give an absolute path."
        )
    return resolved


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def get_source(name: str) -> RawSource:
    """The registered source called ``name``."""
    if name not in SOURCES:
        raise GenevaeInputError(
            f"Unknown raw source {name!r}; known sources are {sorted(SOURCES)} "
            f"(python -m genevae.datasets.fetch --list)."
        )
    return SOURCES[name]


def fetch(
    source: RawSource | str,
    raw_dir: str | Path = DEFAULT_RAW_DIR,
    mirror: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Make ``raw_dir/<filename>`` hold the verified file and return its path.

    ``mirror=None`` uses `default_mirror`. Raises `DataFetchError` on a checksum mismatch or
    when the file is neither cached, mirrored nor downloadable.
    """
    source = get_source(source) if isinstance(source, str) else source
    raw_dir = Path(raw_dir)
    target = raw_dir / source.filename
    if target.is_file():
        if sha256_of(target) == source.sha256:
            logger.debug("%s is cached at %s", source.name, target)
            return target
        logger.warning("%s has the wrong checksum; fetching it again", target)
    raw_dir.mkdir(parents=True, exist_ok=True)
    mirror = _checked_mirror(mirror) if mirror is not None else default_mirror()
    mirrored = mirror / source.mirror_path if mirror is not None else None
    if mirrored is not None and mirrored.is_file():
        with mirrored.open("rb") as handle:
            _stream_verified(
                handle, mirrored.stat().st_size, source, target, str(mirrored), progress
            )
        logger.info("Copied %s from mirror %s", source.filename, mirrored)
    else:
        _download(source, target, mirror, progress)
    return target


def _download(source: RawSource, target: Path, mirror: Path | None, progress: bool) -> None:
    where = f"not in the mirror '{mirror}'" if mirror is not None else "no mirror is configured"
    how_to_mirror = (
        f"Set {MIRROR_ENV}=/path/to/mirror (or pass --mirror PATH) to a folder holding "
        f"'{source.mirror_path}'."
    )
    if source.derived_from is not None:
        raise DataFetchError(
            f"'{source.filename}' is derived ({source.derived_from}; origin {source.url}) and "
            f"cannot be downloaded byte-identically, and it is {where}. {how_to_mirror}"
        )
    try:
        with urllib.request.urlopen(source.url, timeout=_TIMEOUT_SECONDS) as response:
            size = int(response.headers.get("Content-Length") or 0) or None
            _stream_verified(response, size, source, target, source.url, progress)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise DataFetchError(
            f"Could not download '{source.filename}' from {source.url} ({exc}), and it is "
            f"{where}. Check the internet connection, or: {how_to_mirror}"
        ) from exc
    logger.info("Downloaded %s from %s", source.filename, source.url)


def _stream_verified(
    stream: BinaryIO,
    size: int | None,
    source: RawSource,
    target: Path,
    origin: str,
    progress: bool,
) -> None:
    """Copy ``stream`` to a temporary file beside ``target``; rename it only if sha256 matches."""
    digest = hashlib.sha256()
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part")
    try:
        with (
            partial.open("xb") as handle,
            tqdm(
                total=size, unit="B", unit_scale=True, desc=source.filename, disable=not progress
            ) as bar,
        ):
            while chunk := stream.read(_CHUNK):
                handle.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        actual = digest.hexdigest()
        if actual != source.sha256:
            raise DataFetchError(
                f"Checksum mismatch for '{source.filename}' from {origin}: expected sha256 "
                f"{source.sha256}, got {actual}. The copy was discarded; replace the source "
                f"file with the published version."
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def fetch_all(
    names: Iterable[str] | None = None,
    raw_dir: str | Path = DEFAULT_RAW_DIR,
    mirror: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Fetch the named sources (all when ``names`` is None); return name → local path."""
    selected = [get_source(name) for name in (names if names is not None else SOURCES)]
    return {source.name: fetch(source, raw_dir, mirror, progress) for source in selected}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m genevae.datasets.fetch", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("names", nargs="*", help="sources to fetch (default: all)")
    parser.add_argument("--list", action="store_true", help="list the sources and exit")
    parser.add_argument("--raw-dir", default=str(DEFAULT_RAW_DIR), help="destination folder")
    parser.add_argument("--mirror", default=None, help=f"local mirror folder (or ${MIRROR_ENV})")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    args = _parse_args(argv)
    if args.list:
        for source in SOURCES.values():
            print(f"{source.name:20s} {source.filename}\n{'':20s} {source.description}")
        return 0
    try:
        raw_dir = resolve_data_path(args.raw_dir, project_root())
        fetched = fetch_all(args.names or None, raw_dir, args.mirror, progress=not args.quiet)
    except GenevaeInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, path in fetched.items():
        print(f"{name:20s} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
