"""Reports as a person sees them: rendered by headless Chromium at 1280 px, screenshot taken, nothing wider
than the window. Skipped where Chromium is not installed, except in CI (.ci/run installs it)."""

import os
import re
import shutil
import struct
import subprocess

import pytest
from testkit import tiny

WIDTH = 1280
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("headless Chromium is not installed (apt-get install chromium)", allow_module_level=True)


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    assert CHROMIUM is not None, "CI must have chromium: .ci/run installs it"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _render(run_dir, tmp_path):
    """The screenshot (PNG bytes) and the page's scroll width at a 1280 px window."""
    shot = tmp_path / f"{run_dir.name}.png"
    r = _chromium(tmp_path, f"--window-size={WIDTH},2400", f"--screenshot={shot}", (run_dir / "report.html").as_uri())
    assert shot.is_file(), r.stderr[-2000:]
    # The same page with a line of script that reports how wide the laid-out document is.
    probe = run_dir / ".width-probe.html"
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    probe.write_text(page.replace("</body>", "<script>document.title = 'W' + "
                                  "document.documentElement.scrollWidth;</script></body>"), encoding="utf-8")
    dom = _chromium(tmp_path, f"--window-size={WIDTH},800", "--dump-dom", probe.as_uri()).stdout
    probe.unlink()
    width = re.search(r"<title>W(\d+)</title>", dom)
    assert width, dom[:500]
    return shot.read_bytes(), int(width.group(1)), page


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory):
    from palaestra.pipeline import train

    out = tmp_path_factory.mktemp("diabetes") / "run"
    train(tiny("diabetes", epochs=6), out=out, quiet=True)
    return out


def _order(page: str, titles: list[str]) -> list[int]:
    return [page.index(t) for t in titles]


def test_classification_report_renders_at_1280px(penguins_run, tmp_path):
    shot, width, page = _render(penguins_run, tmp_path)
    assert _png_size(shot)[0] == WIDTH and len(shot) > 10_000
    assert width <= WIDTH, f"the page is {width}px wide at a {WIDTH}px window"
    where = _order(page, ["<h2>Test metrics", "<h2>Doctor", "<h2>Plots", "<h2>Per-class metrics (test)",
                          "<h2>History", "<summary>Resolved config"])
    assert where == sorted(where)
    assert 'src="plots/loss.png"' in page and 'src="plots/confusion_matrix.png"' in page


def test_regression_report_renders_at_1280px(diabetes_run, tmp_path):
    shot, width, page = _render(diabetes_run, tmp_path)
    assert _png_size(shot)[0] == WIDTH and len(shot) > 10_000
    assert width <= WIDTH, f"the page is {width}px wide at a {WIDTH}px window"
    where = _order(page, ["<h2>Test metrics", "<h2>Doctor", "<h2>Plots", 'src="plots/predicted_vs_actual.png"',
                          'src="plots/residuals.png"', "<h2>History", "<summary>Resolved config"])
    assert where == sorted(where)
    assert "Per-class" not in page and "confusion" not in page
    assert "palaestra report: diabetes-progression" in page
