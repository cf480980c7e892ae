"""Datasets in S3-compatible storage from Python: a real server (moto) on
loopback, the dataset uploaded with `ringfeed pack SRC s3://...`, then read
by `Dataset`, `verify` and `Loader` with the same batches as the local
copy, with and without the local cache."""

import json
import os
import socket
import subprocess
import threading

import pytest

import ringfeed


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto_server on a free loopback port, ready when it says so."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ready = threading.Event()

    def watch():
        for line in proc.stderr:
            if "Running on" in line:
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    assert ready.wait(120), "moto_server did not start"
    endpoint = f"http://127.0.0.1:{port}"
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(f"PUT /data HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n"
                  "Connection: close\r\n\r\n".encode())
        assert c.recv(100).startswith(b"HTTP/1.1 200")
    yield endpoint
    proc.kill()
    proc.wait()


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch):
    env = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("RINGFEED_CACHE_DIR", raising=False)
    return env


def test_loader_reads_an_uploaded_dataset_like_the_local_one(image_folder, image_pack, cli, s3_env, tmp_path,
                                                            monkeypatch):
    url = "s3://data/photos"
    subprocess.run([cli, "pack", "-q", "--staging", str(tmp_path), str(image_folder), url],
                   check=True, env={**os.environ, **s3_env})
    ds = ringfeed.Dataset(url)
    local = ringfeed.Dataset(image_pack)
    assert len(ds) == len(local) == 50
    assert ds[7] == local[7]
    assert json.dumps(ringfeed.verify(url)["problems"]) == "[]"

    def digest(path):
        loader = ringfeed.Loader(path, batch_size=8, seed=3, epochs=2, pipeline="train", size=32, cores=2,
                                 shuffle="global", digest=True)
        n = sum(len(b.indices) for b in loader)
        assert n == 100
        return loader.digest()

    want = digest(image_pack)
    assert digest(url) == want
    monkeypatch.setenv("RINGFEED_CACHE_DIR", str(tmp_path / "cache"))
    assert digest(url) == want  # cold cache
    assert digest(url) == want  # warm cache
    assert any((tmp_path / "cache").rglob("*.rfp.*"))


def test_a_missing_dataset_is_a_clear_error(s3_env):
    with pytest.raises(ringfeed.errors.IoError, match="not a ringfeed dataset"):
        next(iter(ringfeed.Loader("s3://data/nothing", batch_size=4)))
    with pytest.raises(ringfeed.errors.IoError, match="not a ringfeed dataset"):
        ringfeed.Dataset("s3://data/nothing")
