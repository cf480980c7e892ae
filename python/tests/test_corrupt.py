import pytest

import ringfeed
from conftest import corrupt_record


def test_fail_names_the_record(text_pack):
    corrupt_record(text_pack, b"document 00042")
    with pytest.raises(ringfeed.CorruptDataError, match=r"\.rfp"):
        for _ in ringfeed.Loader(text_pack, batch_size=10, seed=3):
            pass


def test_skip_leaves_it_out(text_pack):
    corrupt_record(text_pack, b"document 00042")
    seen, skipped = [], []
    for b in ringfeed.Loader(text_pack, batch_size=10, seed=3, on_corrupt="skip"):
        seen += b.indices
        skipped += b.skipped
        assert len(b.images) == len(b.indices) == len(b.labels)
    assert skipped == [42]
    assert sorted(seen) == [i for i in range(100) if i != 42]


def test_replace_keeps_batches_full_and_reproducible(text_pack):
    corrupt_record(text_pack, b"document 00042")

    def once():
        out = []
        for b in ringfeed.Loader(text_pack, batch_size=10, seed=3, on_corrupt="replace"):
            assert len(b.images) == 10
            out.append((list(b.indices), b.replaced, b.images))
        return out

    a, b = once(), once()
    assert a == b
    replaced = [r for _, rs, _ in a for r in rs]
    assert len(replaced) == 1 and replaced[0][0] == 42 and replaced[0][1] != 42
    assert all(not p.startswith(b"document 00042") for _, _, ps in a for p in ps)


def test_corrupt_image_fails_with_decode_error(image_folder, tmp_path):
    import shutil

    src = tmp_path / "photos"
    shutil.copytree(image_folder, src)
    (src / "class0" / "000.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    ringfeed.pack(src, tmp_path / "bad.rf")
    with pytest.raises(ringfeed.DecodeError):
        for _ in ringfeed.Loader(tmp_path / "bad.rf", batch_size=8, pipeline="val", size=32):
            pass
    n = sum(len(b.indices) for b in ringfeed.Loader(tmp_path / "bad.rf", batch_size=8, pipeline="val", size=32,
                                                    on_corrupt="skip"))
    assert n == 49
