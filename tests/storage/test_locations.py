import os

import pytest

from exvad_ray import storage
from exvad_ray.errors import StorageError


def test_normalize_and_join(tmp_path):
    assert storage.normalize("s3a://b/k/") == "s3://b/k"
    assert storage.normalize(f"file://{tmp_path}") == str(tmp_path)
    assert storage.join("s3://b", "x", "y.mp4") == "s3://b/x/y.mp4"
    assert storage.join(str(tmp_path), "a", "b") == os.path.join(str(tmp_path), "a", "b")
    for bad in ("", "s3://", "gs://bucket/x", "http://h/x"):
        with pytest.raises(StorageError):
            storage.normalize(bad)


def test_video_id_is_stable_and_versioned():
    a = storage.video_id("s3://b/cam/x.mp4", "abc", 10)
    assert a == storage.video_id("s3a://b/cam/x.mp4/", '"abc"', 99)  # etag wins over size
    assert a != storage.video_id("s3://b/cam/x.mp4", "abd", 10)
    assert storage.video_id("/x.mp4", None, 10) != storage.video_id("/x.mp4", None, 11)


def test_list_local_filters_and_sorts(tmp_path):
    for rel in ("b/2.mp4", "a/1.MP4", "a/notes.txt", "a/.hidden.mp4", "c/3.mkv"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * len(rel))
    got = storage.list_videos(str(tmp_path))
    assert [os.path.relpath(e.uri, tmp_path) for e in got] == ["a/1.MP4", "b/2.mp4", "c/3.mkv"]
    assert got[0].size == len("a/1.MP4") and got[0].name == "1"
    everything = storage.list_videos(str(tmp_path), extensions=None)
    assert len(everything) == 4
    single = storage.list_videos(str(tmp_path / "b/2.mp4"))
    assert [e.name for e in single] == ["2"]
    with pytest.raises(StorageError, match="archive not found"):
        storage.list_videos(str(tmp_path / "missing"))


def test_list_s3_has_etags_and_local_copy(s3_bucket, tmp_path):
    src = tmp_path / "v.mp4"
    src.write_bytes(b"0123456789")
    storage.put_file(str(src), storage.join(s3_bucket, "cam1/2026-01-01/v.mp4"))
    storage.write_bytes(storage.join(s3_bucket, "cam1/readme.txt"), b"hi")
    got = storage.list_videos(s3_bucket)
    assert [e.uri for e in got] == [s3_bucket + "/cam1/2026-01-01/v.mp4"]
    assert got[0].size == 10 and got[0].etag
    with storage.local_copy(got[0].uri) as path:
        assert open(path, "rb").read() == b"0123456789"
    assert not os.path.exists(path)
    with pytest.raises(StorageError, match="not found"):
        with storage.local_copy(s3_bucket + "/nope.mp4"):
            pass


def test_settings_repr_hides_secrets(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSECRETID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "supersecretvalue")
    text = repr(storage.S3Settings.from_env()) + str(storage.S3Settings.from_env())
    assert "supersecretvalue" not in text and "AKIDSECRETID" not in text


def test_video_key_is_the_uuid5_of_video_id():
    """The planner compares 16-byte keys: they must be exactly the uuid5 behind `video_id`."""
    import uuid

    from exvad_ray.storage.locations import VIDEO_ID_NAMESPACE

    for uri, etag, size, mtime, digest in [("/a/b.mp4", None, 10, 1.5, None), ("/a/./é b.mp4", None, 0, None, None),
                                           ("s3a://b/k.mp4/", '"e1"', 3, None, None), ("/x.mp4", None, 1, 2.0, "ff")]:
        version = (f"sha256={digest}" if digest else etag.strip('"') if etag else
                   f"size={size}" + (f",mtime={mtime:.6f}" if mtime is not None else ""))
        want = uuid.uuid5(VIDEO_ID_NAMESPACE, f"{storage.normalize(uri)}#{version}")
        assert storage.video_id(uri, etag, size, mtime, digest) == str(want)
        assert storage.video_key(uri, etag, size, mtime, digest) == want.bytes


def test_normalize_keeps_what_abspath_gives():
    for p in ("/a/b", "/a//b", "/a/./b", "/a/../b", "/a/b/", "/a/.h", "/", "/a/b/..", "//a", "/a b/é"):
        assert storage.normalize(p) == os.path.abspath(p)
