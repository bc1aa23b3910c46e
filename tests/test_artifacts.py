"""Artifact files: written atomically, with the mode any new file gets under the process umask."""

import os
import stat

import pytest

from palaestra.artifacts import atomic_write, write_json


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_write_respects_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_write(tmp_path / "report.html", "<html></html>")
        write_json(tmp_path / "metrics.json", {"accuracy": 1.0})
        atomic_write(tmp_path / "report.html", "<html>again</html>")  # replacing keeps the umask's mode too
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "report.html") == 0o666 & ~umask
    assert _mode(tmp_path / "metrics.json") == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left behind


def test_a_run_directory_is_readable_by_others_under_the_usual_umask(penguins_run):
    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("report.html", "metrics.json", "model.safetensors", "config.yaml", "plots/loss.png"):
        assert _mode(penguins_run / name) == 0o666 & ~mask, name
