"""flowerlib.download against a real HTTP server on 127.0.0.1 serving a small synthetic dataset."""

from __future__ import annotations

import io
import shutil
import tarfile

import pytest

from flowerlib import download
from flowerlib.artifacts import Layout
from flowerlib.config import Config
from flowerlib.download import DownloadError, RemoteFile, Sources

NUM_IMAGES = 12  # 3 classes x 4 images
FAST = {"progress": False, "retries": 0, "retry_wait": 0.0, "timeout": 5.0}


from conftest import remote_file as _remote  # noqa: E402


@pytest.fixture()
def served(dataset, http_server):
    """The loopback server holding the three files."""
    root, _ = dataset
    for name in ("102flowers.tgz", "imagelabels.mat", "setid.mat"):
        shutil.copy(root / name, http_server.root / name)
    return http_server


def _config(tmp_path, **kw) -> Config:
    return Config(data_dir=tmp_path / "data", **kw)


def _trusted_leftovers(layout: Layout) -> list[str]:
    """Files a later run could mistake for good ones."""
    found = []
    if layout.dataset_marker.exists():
        found.append("dataset.json")
    if layout.archive.exists():
        found.append("archive")
    if download.verified_marker(layout.archive).exists():
        found.append("archive marker")
    if layout.jpg_dir.exists():
        found.append("jpg/")
    found += [p.name for p in layout.downloads.glob("tmp*")] if layout.downloads.exists() else []
    return found


def _assert_complete(layout: Layout) -> None:
    assert download.is_complete(layout)
    assert sorted(p.name for p in layout.jpg_dir.iterdir()) == [
        f"image_{i:05d}.jpg" for i in range(1, NUM_IMAGES + 1)
    ]
    assert not list(layout.root.glob(".extract-*"))


# --- downloads -------------------------------------------------------------------------------


def test_download_verifies_extracts_and_records(served, dataset, tmp_path):
    _, sources = dataset
    layout = download.fetch_dataset(_config(tmp_path, mirror=served.url), sources=sources, **FAST)
    _assert_complete(layout)
    assert layout.archive.is_file() and download.verified_marker(layout.archive).is_file()
    info = download.dataset_info(layout)
    assert info["source"] == "download" and info["num_images"] == info["num_labels"] == NUM_IMAGES
    assert not info["partial"]
    assert sorted(served.requests) == ["102flowers.tgz", "imagelabels.mat", "setid.mat"]


def test_second_run_is_offline(served, dataset, tmp_path):
    _, sources = dataset
    cfg = _config(tmp_path, mirror=served.url)
    download.fetch_dataset(cfg, sources=sources, **FAST)
    served.shutdown()
    layout = download.fetch_dataset(cfg, sources=sources, **FAST)
    _assert_complete(layout)
    assert len(served.requests) == 3


def test_damaged_images_are_re_extracted_from_the_kept_archive_without_network(served, dataset, tmp_path):
    _, sources = dataset
    cfg = _config(tmp_path, mirror=served.url)
    layout = download.fetch_dataset(cfg, sources=sources, **FAST)
    layout.image_path(5).unlink()
    assert not download.is_complete(layout)
    served.shutdown()
    _assert_complete(download.fetch_dataset(cfg, sources=sources, **FAST))


def test_checksum_mismatch_leaves_nothing_trusted(served, dataset, tmp_path):
    _, sources = dataset
    cfg = _config(tmp_path, mirror=served.url)
    served.fail("102flowers.tgz", "corrupt")
    with pytest.raises(DownloadError, match="checksum mismatch.*Nothing was kept"):
        download.fetch_dataset(cfg, sources=sources, **FAST)
    layout = Layout(cfg.data_dir)
    assert _trusted_leftovers(layout) == []
    assert not download.is_complete(layout)


def test_truncated_transfer_is_an_error_and_leaves_nothing_trusted(served, dataset, tmp_path):
    _, sources = dataset
    cfg = _config(tmp_path, mirror=served.url)
    served.fail("102flowers.tgz", "truncate")
    with pytest.raises(
        DownloadError, match="failed after 1 attempt.*bytes received so far are kept in 102flowers.tgz.part"
    ):
        download.fetch_dataset(cfg, sources=sources, **FAST)
    assert _trusted_leftovers(Layout(cfg.data_dir)) == []


def test_complete_but_short_file_is_a_wrong_file_and_not_retried(served, dataset, tmp_path):
    _, sources = dataset
    cfg = _config(tmp_path, mirror=served.url)
    served.fail("102flowers.tgz", "short")
    with pytest.raises(
        DownloadError, match="Wrong file at .*announces [0-9,]+ bytes, expected .*Nothing was kept"
    ):
        download.fetch_dataset(cfg, sources=sources, **{**FAST, "retries": 3})
    assert served.requests.count("102flowers.tgz") == 1
    assert _trusted_leftovers(Layout(cfg.data_dir)) == []
    assert not download.partial_file(Layout(cfg.data_dir).archive).exists()


def test_interrupted_download_then_rerun_succeeds(served, dataset, tmp_path):
    _, sources = dataset
    cfg = _config(tmp_path, mirror=served.url)
    served.fail("102flowers.tgz", "truncate", times=1)
    with pytest.raises(DownloadError):
        download.fetch_dataset(cfg, sources=sources, **FAST)
    _assert_complete(download.fetch_dataset(cfg, sources=sources, **FAST))


def test_transient_failures_are_retried(served, dataset, tmp_path):
    _, sources = dataset
    served.fail("102flowers.tgz", "truncate", times=1)
    served.fail("setid.mat", "500", times=1)
    layout = download.fetch_dataset(
        _config(tmp_path, mirror=served.url), sources=sources, **{**FAST, "retries": 2}
    )
    _assert_complete(layout)
    assert served.requests.count("102flowers.tgz") == 2 and served.requests.count("setid.mat") == 2


def test_html_page_instead_of_archive_is_reported_as_such(served, dataset, tmp_path):
    _, sources = dataset
    cfg = _config(tmp_path, mirror=served.url)
    served.fail("102flowers.tgz", "html")
    with pytest.raises(
        DownloadError, match="HTML page instead of 102flowers.tgz.*check the URL/mirror/proxy"
    ):
        download.fetch_dataset(cfg, sources=sources, **{**FAST, "retries": 3})
    assert served.requests.count("102flowers.tgz") == 1, "an HTML page is not retried"
    assert _trusted_leftovers(Layout(cfg.data_dir)) == []


def test_mirror_without_the_files_says_http_404(http_server, dataset, tmp_path):
    _, sources = dataset
    with pytest.raises(DownloadError, match=r"HTTP 404.*FLOWERS_MIRROR"):
        download.fetch_dataset(
            _config(tmp_path, mirror=http_server.url + "nothing/"), sources=sources, **FAST
        )


def test_unreachable_mirror_is_a_clear_error(http_server, dataset, tmp_path):
    _, sources = dataset
    url = http_server.url
    http_server.shutdown()  # its port now refuses connections
    with pytest.raises(
        DownloadError, match="failed after 2 attempt.*ConnectionError.*Nothing was received.*FLOWERS_SOURCE"
    ) as info:
        download.fetch_dataset(_config(tmp_path, mirror=url), sources=sources, **{**FAST, "retries": 1})
    assert info.value.__suppress_context__ or info.value.__cause__ is None
    assert "kept in" not in str(info.value)  # no bytes, no .part file: it does not claim one
    assert "FLOWERS_PROFILE=smoke" in str(info.value)  # offline, the synthetic data still works


def test_file_already_there_without_marker_is_hashed_not_downloaded(served, dataset, tmp_path):
    root, sources = dataset
    layout = Layout(tmp_path / "data")
    layout.downloads.mkdir(parents=True)
    shutil.copy(root / "102flowers.tgz", layout.archive)
    download.fetch_dataset(_config(tmp_path, mirror=served.url), sources=sources, **FAST)
    assert "102flowers.tgz" not in served.requests
    assert download.verified_marker(layout.archive).is_file()


# --- unsafe archives -----------------------------------------------------------------------


def _evil_archive(dataset_root, path, evil: tarfile.TarInfo, payload: bytes = b"") -> RemoteFile:
    """The tiny archive plus one hostile member (traversal or link) at the end."""
    with tarfile.open(dataset_root / "102flowers.tgz") as good, tarfile.open(path, "w:gz") as tar:
        for member in good:
            tar.addfile(member, good.extractfile(member) if member.isfile() else None)
        tar.addfile(evil, io.BytesIO(payload) if payload else None)
    return _remote(path)


@pytest.mark.parametrize("kind", ["traversal", "symlink", "absolute", "hardlink", "device"])
def test_unsafe_member_refuses_the_whole_archive(served, dataset, tmp_path, kind):
    root, sources = dataset
    if kind == "traversal":
        evil = tarfile.TarInfo("../evil.jpg")
        evil.size = 4
    elif kind == "absolute":
        evil = tarfile.TarInfo(str(tmp_path / "evil.jpg"))
        evil.size = 4
    elif kind == "symlink":
        evil = tarfile.TarInfo("jpg/image_99999.jpg")
        evil.type, evil.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "hardlink":
        evil = tarfile.TarInfo("jpg/image_99999.jpg")
        evil.type, evil.linkname = tarfile.LNKTYPE, "jpg/image_00001.jpg"
    else:
        evil = tarfile.TarInfo("jpg/console")
        evil.type = tarfile.CHRTYPE
    archive = served.root / "102flowers.tgz"
    evil_archive = _evil_archive(root, archive, evil, b"evil" if evil.isfile() else b"")
    evil_sources = Sources(archive=evil_archive, labels=sources.labels, setid=sources.setid)
    cfg = _config(tmp_path, mirror=served.url)
    with pytest.raises(DownloadError, match="Refusing to extract.*unsafe"):
        download.fetch_dataset(cfg, sources=evil_sources, **FAST)
    layout = Layout(cfg.data_dir)
    assert not layout.jpg_dir.exists() and not list(layout.root.glob(".extract-*"))
    assert not list(tmp_path.rglob("evil.jpg")) and not download.is_complete(layout)


def test_archive_with_missing_images_is_refused(served, dataset, tmp_path):
    root, sources = dataset
    archive = served.root / "102flowers.tgz"
    with tarfile.open(root / "102flowers.tgz") as good, tarfile.open(archive, "w:gz") as tar:
        for member in good:
            if member.name != "jpg/image_00007.jpg":
                tar.addfile(member, good.extractfile(member) if member.isfile() else None)
    short = Sources(archive=_remote(archive), labels=sources.labels, setid=sources.setid)
    cfg = _config(tmp_path, mirror=served.url)
    with pytest.raises(DownloadError, match=r"holds 11 of the 12 images.*image_00007\.jpg"):
        download.fetch_dataset(cfg, sources=short, **FAST)
    assert not Layout(cfg.data_dir).jpg_dir.exists()


# --- local sources -------------------------------------------------------------------------


def test_local_archive_with_mat_files_beside_it_needs_no_network(dataset, tmp_path):
    root, sources = dataset
    layout = download.fetch_dataset(
        _config(tmp_path, source=root / "102flowers.tgz"), sources=sources, **FAST
    )
    _assert_complete(layout)
    assert download.dataset_info(layout)["source"] == "archive"


def test_local_archive_alone_downloads_only_the_mat_files(served, dataset, tmp_path):
    root, sources = dataset
    alone = tmp_path / "mine" / "102flowers.tgz"
    alone.parent.mkdir()
    shutil.copy(root / "102flowers.tgz", alone)
    _assert_complete(
        download.fetch_dataset(_config(tmp_path, source=alone, mirror=served.url), sources=sources, **FAST)
    )
    assert sorted(served.requests) == ["imagelabels.mat", "setid.mat"]


def test_local_archive_with_wrong_checksum_is_refused(dataset, tmp_path):
    _, sources = dataset
    wrong = tmp_path / "102flowers.tgz"
    wrong.write_bytes(b"x" * sources.archive.size)
    with pytest.raises(DownloadError, match="Checksum mismatch"):
        download.fetch_dataset(_config(tmp_path, source=wrong), sources=sources, **FAST)


def test_local_folder_is_linked_or_copied_and_verified(dataset, tmp_path):
    root, sources = dataset
    layout = download.fetch_dataset(_config(tmp_path, source=root / "extracted"), sources=sources, **FAST)
    _assert_complete(layout)
    info = download.dataset_info(layout)
    assert info["source"] == "folder" and not info["partial"]
    assert (root / "extracted" / "jpg").is_dir(), "the source folder is left alone"


def test_local_folder_with_some_images_is_used_with_a_warning(dataset, tmp_path):
    root, sources = dataset
    folder = tmp_path / "partial"
    shutil.copytree(root / "extracted", folder)
    for image_id in (2, 3):
        (folder / "jpg" / f"image_{image_id:05d}.jpg").unlink()
    with pytest.warns(UserWarning, match="holds 10 of the 12 labelled images"):
        layout = download.fetch_dataset(_config(tmp_path, source=folder), sources=sources, **FAST)
    info = download.dataset_info(layout)
    assert info["partial"] and info["num_images"] == 10 and download.is_complete(layout)


def test_local_folder_without_mat_files_says_what_it_needs(dataset, tmp_path):
    root, sources = dataset
    folder = tmp_path / "only-images"
    shutil.copytree(root / "extracted" / "jpg", folder / "jpg")
    with pytest.raises(DownloadError, match=r"lacks \['imagelabels.mat', 'setid.mat'\]"):
        download.fetch_dataset(_config(tmp_path, source=folder), sources=sources, **FAST)


def test_missing_source_path_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match="does not exist.*102flowers.tgz"):
        download.fetch_dataset(_config(tmp_path, source=tmp_path / "nope.tgz"), **FAST)


# --- synthetic ----------------------------------------------------------------------------


def test_synthetic_is_generated_once_and_regenerated_when_parameters_change(tmp_path):
    cfg = Config.for_profile("smoke", data_dir=tmp_path / "data", num_classes=3, synthetic_images_per_class=4)
    layout = download.fetch_dataset(cfg, progress=False)
    assert download.is_complete(layout)
    assert download.dataset_info(layout)["synthetic"]["num_classes"] == 3
    stamp = layout.image_path(1).stat().st_mtime_ns
    download.fetch_dataset(cfg, progress=False)
    assert layout.image_path(1).stat().st_mtime_ns == stamp, "a complete dataset is not regenerated"
    download.fetch_dataset(cfg.replace(synthetic_images_per_class=8), progress=False)
    assert len(list(layout.jpg_dir.iterdir())) == 24


def test_synthetic_data_says_it_does_not_use_a_source_folder(tmp_path):
    smoke = Config.for_profile("smoke", data_dir=tmp_path / "data", source=tmp_path / "flowers")
    with pytest.warns(UserWarning, match="synthetic data: FLOWERS_SOURCE=.*flowers is not used"):
        download.fetch_dataset(smoke, progress=False)


def test_synthetic_never_overwrites_a_real_dataset(dataset, tmp_path):
    root, sources = dataset
    download.fetch_dataset(_config(tmp_path, source=root / "extracted"), sources=sources, **FAST)
    smoke = Config.for_profile("smoke", data_dir=tmp_path / "data")
    with pytest.raises(DownloadError, match="holds the real dataset.*FLOWERS_DATA_DIR"):
        download.fetch_dataset(smoke, progress=False)
    assert download.is_complete(Layout(tmp_path / "data"))


def test_the_real_dataset_is_never_fetched_into_a_folder_of_synthetic_data(served, dataset, tmp_path):
    _, sources = dataset
    smoke = Config.for_profile("smoke", data_dir=tmp_path / "data")
    layout = download.fetch_dataset(smoke, progress=False)
    before = sorted(p.name for p in layout.root.iterdir())
    with pytest.raises(DownloadError, match="holds synthetic data.*another FLOWERS_DATA_DIR.*clean-data"):
        download.fetch_dataset(_config(tmp_path, mirror=served.url), sources=sources, **FAST)
    assert sorted(p.name for p in layout.root.iterdir()) == before  # nothing deleted or half-written
    assert download.fetch_dataset(smoke, progress=False) == layout  # still complete, not regenerated


@pytest.mark.parametrize("mirror", ["http://", "http://exa mple/"])
def test_garbage_mirror_url_is_a_clear_error(tmp_path, mirror):
    with pytest.raises(DownloadError, match="is not a valid download URL"):
        download.fetch_dataset(_config(tmp_path, mirror=mirror), **FAST)


def test_official_sources_are_the_published_files():
    official = download.OFFICIAL
    assert (
        official.url(official.archive) == "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz"
    )
    assert (official.archive.size, official.labels.size, official.setid.size) == (344_862_509, 502, 14_989)
    assert official.archive.sha256.startswith("2d01ecc807db") and official.setid.sha256.startswith("46b8678f")
    assert (
        official.with_base_url("http://mirror/x/").url(official.labels) == "http://mirror/x/imagelabels.mat"
    )


def test_progress_bars_for_downloads_and_extraction(served, dataset, tmp_path, capfd):
    _, sources = dataset
    served.fail("102flowers.tgz", "truncate", times=1)  # a failed attempt's bar is closed too
    cfg = _config(tmp_path, mirror=served.url)
    download.fetch_dataset(cfg, sources=sources, **{**FAST, "progress": True, "retries": 1})
    err = capfd.readouterr().err
    assert "102flowers.tgz" in err and "imagelabels.mat" in err and "extracting" in err
    _assert_complete(Layout(cfg.data_dir))


def test_quiet_downloads_say_nothing_and_progress_shows_the_bars(served, dataset, tmp_path, capfd):
    _, sources = dataset
    quiet = {**FAST, "progress": False}
    download.fetch_dataset(_config(tmp_path / "quiet", mirror=served.url), sources=sources, **quiet)
    said = capfd.readouterr()
    assert said.out == "" and said.err == ""  # --quiet: no bar, no pooch line, nothing
    loud = {**FAST, "progress": True}
    download.fetch_dataset(_config(tmp_path / "loud", mirror=served.url), sources=sources, **loud)
    said = capfd.readouterr()
    assert "102flowers.tgz" in said.err and "extracting" in said.err  # the download and extraction bars
