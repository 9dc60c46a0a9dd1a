"""Raw-data fetching: mirror copies, cache hits, checksums, downloads and offline errors."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import urllib.error
from pathlib import Path

import pytest

from genevae.datasets import fetch as fetch_module
from genevae.datasets.fetch import (
    MIRROR_ENV,
    SOURCES,
    DataFetchError,
    RawSource,
    fetch,
    fetch_all,
    main,
    resolve_data_path,
    sha256_of,
)
from genevae.errors import GenevaeInputError

TYBALT_COLORS = SOURCES["tybalt_tcga_colors"]


def _source_for(
    tmp_path: Path, content: bytes, url: str = "https://example.org/x.txt"
) -> RawSource:
    """A registry entry for a small file written into a tmp mirror."""
    (tmp_path / "mirror" / "misc").mkdir(parents=True)
    (tmp_path / "mirror" / "misc" / "x.txt").write_bytes(content)
    return RawSource(
        name="x",
        filename="x.txt",
        url=url,
        sha256=hashlib.sha256(content).hexdigest(),
        mirror_path="misc/x.txt",
        description="test file",
    )


class _FakeResponse(io.BytesIO):
    """What urlopen returns: a readable body with HTTP headers."""

    def __init__(self, body: bytes) -> None:
        super().__init__(body)
        self.headers = {"Content-Length": str(len(body))}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", offline)


def test_fetch_all_from_the_real_mirror(tmp_path: Path, shared_data: Path, no_network) -> None:
    fetched = fetch_all(raw_dir=tmp_path / "raw", mirror=shared_data, progress=False)
    assert set(fetched) == set(SOURCES)
    for name, path in fetched.items():
        assert path == tmp_path / "raw" / SOURCES[name].filename
        assert sha256_of(path) == SOURCES[name].sha256
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(
        s.filename for s in SOURCES.values()
    )


def test_every_file_in_the_mirror_is_registered(shared_data: Path) -> None:
    files = {p.relative_to(shared_data).as_posix() for p in shared_data.rglob("*") if p.is_file()}
    assert files - {"SOURCES.md", "UPSTREAM.md"} == {s.mirror_path for s in SOURCES.values()}


def test_default_mirror_comes_from_environment(tmp_path, monkeypatch, no_network) -> None:
    source = _source_for(tmp_path, b"hello\n")
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "mirror"))
    path = fetch(source, tmp_path / "raw", progress=False)
    assert path.read_bytes() == b"hello\n"


def test_cache_hit_copies_nothing(tmp_path, monkeypatch, no_network) -> None:
    source = _source_for(tmp_path, b"cached\n")
    path = fetch(source, tmp_path / "raw", mirror=tmp_path / "mirror", progress=False)
    before = path.stat().st_mtime_ns

    def must_not_copy(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached file was copied again")

    monkeypatch.setattr(fetch_module, "_stream_verified", must_not_copy)
    assert fetch(source, tmp_path / "raw", mirror=tmp_path / "mirror", progress=False) == path
    assert path.stat().st_mtime_ns == before


def test_stale_cached_file_is_replaced(tmp_path: Path, no_network) -> None:
    source = _source_for(tmp_path, b"good\n")
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "x.txt").write_bytes(b"stale\n")
    path = fetch(source, tmp_path / "raw", mirror=tmp_path / "mirror", progress=False)
    assert path.read_bytes() == b"good\n"


def test_checksum_mismatch_names_file_and_hashes_and_leaves_nothing(tmp_path: Path) -> None:
    source = _source_for(tmp_path, b"published\n")
    (tmp_path / "mirror" / "misc" / "x.txt").write_bytes(b"corrupted\n")
    actual = hashlib.sha256(b"corrupted\n").hexdigest()

    with pytest.raises(DataFetchError) as info:
        fetch(source, tmp_path / "raw", mirror=tmp_path / "mirror", progress=False)

    message = str(info.value)
    assert "x.txt" in message and source.sha256 in message and actual in message
    assert list((tmp_path / "raw").iterdir()) == []


def test_real_source_with_corrupted_mirror_copy(tmp_path: Path, shared_data: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "bulk").mkdir(parents=True)
    original = (shared_data / TYBALT_COLORS.mirror_path).read_bytes()
    (mirror / TYBALT_COLORS.mirror_path).write_bytes(original.replace(b"BRCA", b"BRCX"))
    with pytest.raises(
        DataFetchError, match=f"tybalt_tcga_colors.tsv.*expected sha256 {TYBALT_COLORS.sha256}"
    ):
        fetch("tybalt_tcga_colors", tmp_path / "raw", mirror=mirror, progress=False)
    assert list((tmp_path / "raw").iterdir()) == []


def test_offline_without_mirror_explains_options(tmp_path, monkeypatch, no_network) -> None:
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path))  # an empty mirror folder
    with pytest.raises(DataFetchError) as info:
        fetch("kang2018_pbmc", tmp_path / "raw", progress=False)
    message = str(info.value)
    assert "kang2018_pbmc_ifnb_scgen_valid.h5ad" in message
    assert SOURCES["kang2018_pbmc"].url in message
    assert MIRROR_ENV in message and "Temporary failure in name resolution" in message
    assert list((tmp_path / "raw").iterdir()) == []


def test_derived_file_needs_a_mirror(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFetchError, match=rf"derived .*causalbench.*{MIRROR_ENV}"):
        fetch("chipatlas_k562", tmp_path / "raw", mirror=tmp_path / "empty", progress=False)


def test_missing_mirror_folder_is_an_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataFetchError, match=f"{MIRROR_ENV}.*is not a directory"):
        fetch("kang2018_pbmc", tmp_path / "raw", progress=False)


def test_download_from_file_url(tmp_path: Path) -> None:
    upstream = tmp_path / "upstream.txt"
    upstream.write_bytes(b"downloaded\n" * 1000)
    source = dataclasses.replace(
        _source_for(tmp_path, b"downloaded\n" * 1000),
        url=upstream.as_uri(),
        mirror_path="absent.txt",
    )
    path = fetch(source, tmp_path / "raw", mirror=tmp_path / "mirror", progress=True)
    assert path.read_bytes() == upstream.read_bytes()
    assert [p.name for p in (tmp_path / "raw").iterdir()] == ["x.txt"]


def test_download_with_bad_checksum_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    source = dataclasses.replace(_source_for(tmp_path, b"expected\n"), mirror_path="absent.txt")
    monkeypatch.setattr(
        fetch_module.urllib.request, "urlopen", lambda url, timeout: _FakeResponse(b"tampered\n")
    )
    with pytest.raises(
        DataFetchError, match=r"Checksum mismatch for 'x.txt' from https://example.org/x.txt"
    ):
        fetch(source, tmp_path / "raw", mirror=tmp_path / "mirror", progress=False)
    assert list((tmp_path / "raw").iterdir()) == []


def test_unknown_source_name() -> None:
    with pytest.raises(GenevaeInputError, match="Unknown raw source 'kang'.*'kang2018_pbmc'"):
        fetch_all(["kang"])


def test_resolve_data_path(tmp_path: Path) -> None:
    assert resolve_data_path("data/01_raw", tmp_path) == (tmp_path / "data" / "01_raw").resolve()
    assert resolve_data_path("/srv/mirror", tmp_path) == Path("/srv/mirror")
    for escaping in ("../../etc", "data/../../elsewhere", "src"):
        with pytest.raises(GenevaeInputError, match="outside the project data folder"):
            resolve_data_path(escaping, tmp_path)


def test_cli_list_fetch_and_error(tmp_path, shared_data, capsys, no_network) -> None:
    assert main(["--list"]) == 0
    assert "kang2018_pbmc" in capsys.readouterr().out

    raw = tmp_path / "raw"
    assert (
        main(["tybalt_mad_genes", "--raw-dir", str(raw), "--mirror", str(shared_data), "--quiet"])
        == 0
    )
    assert (raw / "tybalt_5000_mad_genes.txt").is_file()

    assert main(["--raw-dir", "../../outside", "--quiet"]) == 1
    assert "outside the project data folder" in capsys.readouterr().err
