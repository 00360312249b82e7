"""Saving and showing figures: HTML always, PNG / SVG through kaleido where a browser is found.

`save_figure` writes interactive HTML and, where kaleido finds a Chrome or Chromium, static
images; `png_export` keeps one browser running for many saves; `show` displays a figure in a
notebook. When static export is impossible or fails, a `UserWarning` says why (the HTML is still
written).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import plotly.graph_objects as go

from ._style import HEIGHT, WIDTH

__all__ = ["png_export", "save_figure", "show", "static_export_problem"]


def _find_browser() -> str | None:
    """A Chrome/Chromium kaleido can drive: `$BROWSER_PATH`, else one on PATH or in the usual places."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if os.access(env, os.X_OK) else None
    try:
        from choreographer.browsers.chromium import Chromium
    except ImportError:  # older kaleido without choreographer
        return None
    try:
        return Chromium.find_browser(skip_local=False)
    except Exception:  # a best-effort search; any failure means "not found"
        return None


def static_export_problem() -> str | None:
    """Why PNG/SVG export cannot work here (a one-line reason), or None when it can."""
    if importlib.util.find_spec("kaleido") is None:
        return "kaleido is not installed (pip install 'kaleido>=1')"
    from importlib.metadata import version

    major = int(version("kaleido").split(".")[0])
    if major < 1:
        return f"kaleido {version('kaleido')} is too old for plotly's exporter (pip install 'kaleido>=1')"
    if _find_browser() is None:
        return (
            "no Chrome/Chromium found for kaleido (install Debian's `chromium`, e.g. via "
            "scripts/setup.sh, or set BROWSER_PATH)"
        )
    return None


@contextmanager
def png_export() -> Iterator[None]:
    """Keep one browser running for many `save_figure` calls (a few seconds saved per image)."""
    if static_export_problem() is not None:
        yield
        return
    import kaleido

    try:
        kaleido.start_sync_server(silence_warnings=True)
    except Exception as err:  # no shared browser: each save_figure starts its own, or says why not
        warnings.warn(
            f"steerlens: could not start kaleido's browser once for all figures ({err})",
            stacklevel=3,  # past contextlib's __enter__ to the `with` statement
        )
        yield
        return
    try:
        yield
    finally:
        kaleido.stop_sync_server(silence_warnings=True)


def save_figure(
    fig: go.Figure,
    path_stem: str | os.PathLike[str],
    *,
    formats: Sequence[str] = ("png",),
    width: int | None = None,
    height: int | None = None,
    scale: float = 2.0,
    include_plotlyjs: str | bool = "directory",
) -> list[Path]:
    """Write `path_stem`.html (always) and `path_stem`.png / .svg via kaleido where it can.

    PNGs are rendered at `scale` times the layout's pixel size (2: print resolution).

    Without kaleido or a browser the HTML is still written and a `UserWarning` says why the
    static formats were skipped. `include_plotlyjs="directory"` (default) writes one copy of
    plotly.js beside the HTML files, so they open offline and stay small; True embeds it in each
    file; "cdn" loads it from the internet (blank pages offline).

    Returns:
        The paths written.
    """
    stem = Path(path_stem)
    if stem.suffix in (".html", ".png", ".svg"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    html = stem.with_suffix(".html")
    fig.write_html(html, include_plotlyjs=include_plotlyjs, full_html=True)
    written = [html]
    static = [f for f in formats if f != "html"]
    if not static:
        return written
    problem = static_export_problem()
    if problem is not None:
        warnings.warn(
            f"steerlens: skipped {'/'.join(static).upper()} for {stem.name}: {problem}",
            stacklevel=2,
        )
        return written
    w = width or fig.layout.width or WIDTH
    h = height or fig.layout.height or HEIGHT
    for fmt in static:
        path = stem.with_suffix(f".{fmt}")
        try:
            with warnings.catch_warnings():  # plotly's note when png_export() keeps a browser
                warnings.filterwarnings("ignore", message="The kopts argument is ignored")
                fig.write_image(path, format=fmt, width=w, height=h, scale=scale)
        except Exception as err:  # the browser can fail in many ways; the HTML is already saved
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            warnings.warn(
                f"steerlens: skipped {fmt.upper()} for {stem.name}: {first}", stacklevel=2
            )
            continue
        written.append(path)
    return written


# ---- notebooks ---------------------------------------------------------------------------------

_SERVER_STARTED = False


def _start_export_server() -> None:
    """Start kaleido's browser once per process and stop it at exit (notebooks show many figures)."""
    global _SERVER_STARTED
    if _SERVER_STARTED:
        return
    import atexit

    import kaleido

    kaleido.start_sync_server(silence_warnings=True)
    atexit.register(kaleido.stop_sync_server, silence_warnings=True)
    _SERVER_STARTED = True


def show(fig: go.Figure, *, static: bool | None = None, scale: float = 1.0) -> None:
    """Display `fig` in a notebook: a PNG (light, visible on code hosts) where kaleido and a browser
    work, else the interactive figure through plotly's offline notebook renderer (plotly.js is
    written into the notebook once, with the first figure, never loaded from a CDN).

    Args:
        static: force PNG (True) or HTML (False); default PNG when static export is possible.
    """
    from IPython.display import Image, display

    problem = static_export_problem()
    if static is None:
        static = problem is None
    if static:
        if problem is not None:
            raise RuntimeError(f"Cannot render a PNG: {problem}")
        _start_export_server()
        w, h = fig.layout.width or WIDTH, fig.layout.height or HEIGHT
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The kopts argument is ignored")
            png = fig.to_image(format="png", width=w, height=h, scale=scale)
        display(Image(png))
    else:
        fig.show(renderer="plotly_mimetype+notebook")
