import errno
import json

import pytest

import ringfeed
from conftest import corrupt_record


def test_pack_and_read_back(text_pack):
    ds = ringfeed.Dataset(text_pack)
    assert len(ds) == 100
    rec = ds[7]
    assert rec.payload.startswith(b"document 00007")
    assert rec.key == "doc00007.txt"
    assert ds[-1].key == "doc00099.txt"
    assert [r.key for r in ds[2:5]] == ["doc00002.txt", "doc00003.txt", "doc00004.txt"]
    with pytest.raises(IndexError):
        ds[100]
    with pytest.raises(IndexError):
        ds[-101]
    assert ds.manifest["records"] == 100
    assert ringfeed.verify(text_pack)["problems"] == []


def test_image_folder_labels(image_pack, image_folder):
    ds = ringfeed.Dataset(image_pack)
    assert ds.classes == ["class0", "class1", "class2"]
    for rec in ds:
        cls, name = rec.key.split("/")
        assert ds.classes[rec.label] == cls
        assert rec.payload == (image_folder / cls / name).read_bytes()


def test_corrupt_record_is_reported_not_returned(text_pack):
    corrupt_record(text_pack, b"document 00042")
    report = ringfeed.verify(text_pack)
    records = [p["record"] for p in report["problems"] if p["record"] is not None]
    assert records == [42], report  # and the shard's whole-file checksum fails too
    ds = ringfeed.Dataset(text_pack)
    assert ds[41].payload.startswith(b"document 00041")
    with pytest.raises(ringfeed.CorruptDataError, match="rfp"):
        ds[42]


def test_missing_dataset_is_an_os_error(tmp_path):
    with pytest.raises(ringfeed.IoError) as e:
        ringfeed.Dataset(tmp_path / "nope.rf")
    assert isinstance(e.value, OSError)
    assert e.value.errno == errno.ENOENT
    assert "nope.rf" in str(e.value)


def test_hostile_manifest_is_refused(text_pack):
    manifest = text_pack / "manifest.json"
    m = json.loads(manifest.read_text())
    m["records"] = 10**15
    manifest.write_text(json.dumps(m))
    with pytest.raises(ringfeed.RingfeedError):
        ringfeed.Dataset(text_pack)


def test_pack_refuses_bad_arguments(tmp_path):
    with pytest.raises(ringfeed.ConfigError):
        ringfeed.pack(tmp_path, tmp_path / "out.rf", format="nonsense")
    with pytest.raises(ringfeed.RingfeedError):
        ringfeed.pack(tmp_path / "missing", tmp_path / "out.rf")
