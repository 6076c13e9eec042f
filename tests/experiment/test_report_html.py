"""report.html of the quick demo in a real browser (headless Chromium): the numbers, the pictures, a non-blank page."""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

try:
    from tests.conftest import _require
except ImportError:  # pytest imported tests/conftest.py as the top-level module `conftest`
    from conftest import _require

# Known to work as root in containers: no sandbox, no GPU, nothing fetched from the network.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=10000"]


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    _require("chromium", exe is not None, "apt-get install chromium (scripts/install.sh does it when root)")
    return exe


def _browse(chromium, tmp_path, url, *args, timeout=180) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    profile.mkdir()
    proc = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args, url], capture_output=True,
                          text=True, timeout=timeout, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def rendered(exp_demo_quick, chromium, tmp_path_factory) -> dict:
    """The DOM after the page's scripts ran, and a full-width screenshot, of the demo's report.html."""
    tmp = tmp_path_factory.mktemp("browser")
    page = exp_demo_quick["report"].with_name("report.html")
    url = page.as_uri()
    dom = _browse(chromium, tmp, url, "--dump-dom").stdout
    shot = tmp / "report.png"
    _browse(chromium, tmp, url, "--window-size=1700,2400", f"--screenshot={shot}")
    return {"dom": dom, "shot": shot, "page": page, "dir": page.parent}


def test_page_is_self_contained(rendered):
    text = rendered["page"].read_text()
    srcs = re.findall(r'<img[^>]* src="([^"]*)"', text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'(src|href)="(https?:)?//', text)  # nothing to fetch


def test_dom_holds_the_numbers_of_the_result_files(rendered):
    dom = html.unescape(rendered["dom"])
    with open(rendered["dir"] / "table.csv") as fh:
        cells = list(csv.DictReader(fh))
    for c in cells:  # the study's table: mean ± std of every cell
        assert f"{float(c['accuracy_mean']):.4f} ± {float(c['accuracy_std']):.4f}" in dom, c
    with open(rendered["dir"] / "runs.csv") as fh:
        for r in csv.DictReader(fh):
            assert r["name"] in dom
    comps = json.loads((rendered["dir"] / "comparisons.json").read_text())
    for c in comps:
        assert c["verdict"] in dom and f"{c['a']} vs {c['b']}" in dom
    memo = json.loads((rendered["dir"].parent / "image_metrics.json").read_text())
    (res,) = memo.values()
    assert f"{res['generated']['ssim']['mean']:.4f} ± {res['generated']['ssim']['std']:.4f}" in dom
    import torch

    assert f"<td>{torch.__version__}</td>" in rendered["dom"]
    for section in ("Real and generated images", "Memorisation check", "Every run", "Configs and software",
                    "The GAN: training curve and image metrics"):
        assert section in dom, section


def test_every_image_loads(rendered):
    tag = re.search(r'<p id="image-check" data-widths="([^"]*)" data-broken="([^"]*)"', rendered["dom"])
    assert tag, "the page's image check did not run"
    widths = [int(w) for w in tag.group(1).split(",")]
    n_img = len(re.findall(r"<img ", rendered["page"].read_text()))
    assert len(widths) == n_img and tag.group(2) == "0" and min(widths) > 0, tag.groups()
    # sample grids: 32 px images drawn at >= 96 px each; 8 per row
    assert max(widths) >= 8 * 96


def test_screenshot_is_not_blank(rendered):
    from PIL import Image

    img = np.asarray(Image.open(rendered["shot"]).convert("L"), dtype=np.float64)
    assert img.shape == (2400, 1700)
    assert img.std() > 20  # text, tables and X-ray grids, not a white page
    assert (img < 128).mean() > 0.02 and (img > 200).mean() > 0.3
