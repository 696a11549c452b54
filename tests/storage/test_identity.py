"""Finding 3 (storage side): a local file rewritten with other bytes of the same size is a new
video; `--content-hash` identifies by bytes; ignored files are counted by reason."""

from __future__ import annotations

import os

from exvad_ray import storage


def _write(path, data: bytes, mtime: float) -> None:
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, (mtime, mtime))


def test_same_size_rewrite_gets_a_new_id(tmp_path):
    p = tmp_path / "cam" / "a.mp4"
    p.parent.mkdir()
    _write(p, b"A" * 1000, 1_700_000_000)
    (before,) = storage.list_videos(str(tmp_path))
    _write(p, b"B" * 1000, 1_700_000_100)  # same size, other bytes, later mtime
    (after,) = storage.list_videos(str(tmp_path))
    assert before.size == after.size and before.video_id != after.video_id
    assert storage.list_videos(str(tmp_path))[0].video_id == after.video_id  # stable while unchanged


def test_content_hash_follows_bytes_not_mtime(tmp_path):
    p = tmp_path / "a.mp4"
    _write(p, b"A" * 1000, 1_700_000_000)
    (h1,) = storage.list_videos(str(tmp_path), hash_content=True)
    os.utime(p, (1_700_000_500, 1_700_000_500))  # touched, same bytes
    (h2,) = storage.list_videos(str(tmp_path), hash_content=True)
    _write(p, b"B" * 1000, 1_700_000_500)  # other bytes, same size, same mtime
    (h3,) = storage.list_videos(str(tmp_path), hash_content=True)
    (plain,) = storage.list_videos(str(tmp_path))
    assert h1.video_id == h2.video_id != h3.video_id
    assert h1.content_hash and len(h1.content_hash) == 64 and plain.content_hash is None


def test_ignored_files_are_counted_by_reason(tmp_path):
    for name in ("a.mp4", "b.MKV", "notes.txt", "thumbs.db", ".hidden.mp4"):
        (tmp_path / name).write_bytes(b"x")
    entries, ignored = storage.list_archive(str(tmp_path))
    assert [os.path.basename(e.uri) for e in entries] == ["a.mp4", "b.MKV"]
    assert ignored == {"not a video extension": 2, "hidden": 1}


def test_s3_replaced_object_gets_a_new_id(s3_bucket):
    uri = storage.join(s3_bucket, "cam/a.mp4")
    storage.write_bytes(uri, b"A" * 1000)
    (e1,) = storage.list_videos(s3_bucket)
    storage.write_bytes(uri, b"B" * 1000)
    fs, _ = storage.filesystem(uri)
    fs.invalidate_cache()
    (e2,) = storage.list_videos(s3_bucket)
    assert e1.etag != e2.etag and e1.video_id != e2.video_id
