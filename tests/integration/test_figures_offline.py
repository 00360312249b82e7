"""The committed HTML figures draw their plots in a browser with the network cut off.

Headless Chromium opens each file with every host unresolvable and dumps the DOM after the
scripts ran; plotly draws into an SVG of class `main-svg`, so a drawn plot leaves one there. The
same figure written with plotly.js from the CDN stays blank under the same conditions (the
control: the check can fail).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import plotly.graph_objects as go
import pytest

from steerlens.figures import save_figure

pytestmark = pytest.mark.integration
FIGURES = Path(__file__).resolve().parents[2] / "figures"
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


def dom_offline(path: Path) -> str:
    """The DOM of `path` after its scripts ran, in headless Chromium with no network."""
    assert BROWSER is not None
    command = [
        BROWSER,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # every host unresolvable: no network
        "--virtual-time-budget=10000",
        "--dump-dom",
        path.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-500:]
    return done.stdout


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine")
@pytest.mark.parametrize("name", ["fig1_head_heatmap", "fig9_method_comparison"])
def test_committed_figures_draw_without_network(name: str) -> None:
    dom = dom_offline(FIGURES / f"{name}.html")
    assert 'class="main-svg"' in dom, f"{name}.html drew no plot offline"


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine")
def test_a_cdn_figure_stays_blank_offline(tmp_path) -> None:
    fig = go.Figure(go.Bar(x=[1, 2], y=[3, 4]))
    local = save_figure(fig, tmp_path / "local" / "f", formats=("html",))[0]
    cdn = save_figure(fig, tmp_path / "cdn" / "f", formats=("html",), include_plotlyjs="cdn")[0]
    assert 'class="main-svg"' in dom_offline(local)
    assert 'class="main-svg"' not in dom_offline(cdn)


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine")
def test_inspector_report_draws_without_network(tmp_path) -> None:
    from steerlens import collect_differences, inspect, sadi_mask
    from tests.reference import make_examples
    from tests.tiny import tiny_model

    model = tiny_model()
    examples = make_examples(10)
    diffs = collect_differences(model, examples, site="head", progress=False)
    report = inspect(model, examples, sadi_mask(diffs, 3), diffs=diffs, n_dev=4).report(
        tmp_path / "report.html", units=2
    )
    dom = dom_offline(report)
    assert 'class="main-svg"' in dom and "L" in dom
