"""Atomic writes never leave partial output; progress degrades to log lines off a terminal."""

from __future__ import annotations

import json
import logging

import pytest

from sciml.io import atomic_path, atomic_write_json, atomic_write_text
from sciml.progress import LogProgress, NoProgress, default_progress


def test_atomic_file_replaces_only_on_success(tmp_path):
    dest = tmp_path / "out" / "metrics.json"
    atomic_write_json(dest, {"a": 1.5})
    assert json.loads(dest.read_text()) == {"a": 1.5}
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("{partial")
            raise RuntimeError("crash mid-write")
    assert json.loads(dest.read_text()) == {"a": 1.5}
    assert sorted(p.name for p in dest.parent.iterdir()) == ["metrics.json"]  # no temp litter


def test_atomic_directory(tmp_path):
    dest = tmp_path / "store.zarr"
    with atomic_path(dest, directory=True) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(ValueError):
        with atomic_path(dest, directory=True) as tmp:
            (tmp / "b").write_text("2")
            raise ValueError("boom")
    assert sorted(p.name for p in dest.iterdir()) == ["a"]
    with atomic_path(dest, directory=True) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in dest.iterdir()) == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.zarr"]


def test_atomic_text(tmp_path):
    assert atomic_write_text(tmp_path / "x.txt", "hi").read_text() == "hi"


def test_log_progress_emits_periodic_lines(caplog):
    caplog.set_level(logging.INFO, logger="sciml.progress")
    prog = LogProgress(log_every=0.0)
    prog.start(4, "train")
    for i in range(4):
        prog.update(1, {"loss": 1.0 / (i + 1)})
    prog.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("train: 1/4 (25%) loss=1.000e+00 eta")
    assert "4/4 (100%)" in lines[-1] and "done in" in lines[-1]


def test_default_progress_off_tty_is_log_lines():
    assert isinstance(default_progress(quiet=True), NoProgress)
    assert isinstance(default_progress(), LogProgress)  # pytest captures stderr: not a TTY


def test_cli_logging_follows_the_current_stderr(monkeypatch):
    """The handler must write to sys.stderr as it is at emit time, not a stream captured at set-up."""
    import io

    from sciml.logs import setup_logging

    setup_logging(0)
    buf = io.StringIO()
    monkeypatch.setattr("sys.stderr", buf)
    logging.getLogger("sciml.test").info("hello from a later stream")
    assert "hello from a later stream" in buf.getvalue()
