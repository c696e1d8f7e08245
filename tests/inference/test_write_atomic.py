"""`write_atomic`: runs, checkpoints and reports are never left half-written."""

import os

import pytest

from astroprob.inference import _checkpoint
from astroprob.inference._checkpoint import write_atomic, write_json_atomic


def test_writes_the_bytes_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "run.json"
    write_atomic(path, b"first")
    write_atomic(path, b"second")
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary_one(
    tmp_path, monkeypatch, error
):
    path = tmp_path / "catalog.fits"
    path.write_bytes(b"old")

    def fail(fd):
        raise error

    monkeypatch.setattr(_checkpoint.os, "fsync", fail)
    with pytest.raises(type(error)):
        write_atomic(path, b"new, half written")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.fits"]


def test_a_replaced_file_keeps_its_mode_and_a_new_one_gets_the_umask_default(tmp_path):
    kept = tmp_path / "kept.msgpack"
    kept.write_bytes(b"")
    os.chmod(kept, 0o640)
    write_atomic(kept, b"weights")
    assert kept.stat().st_mode & 0o777 == 0o640

    umask = os.umask(0o027)
    try:
        fresh = tmp_path / "fresh.json"
        write_json_atomic(fresh, {"b": 1, "a": [2]})
    finally:
        os.umask(umask)
    # mkstemp's own mode would be 0o600.
    assert fresh.stat().st_mode & 0o777 == 0o640
    assert fresh.read_text() == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'
