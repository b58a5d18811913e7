"""Execute the tutorial notebooks headless: the main job, for people and CI alike.

``minist notebooks`` runs every ``notebooks/*.ipynb`` top to bottom in a fresh
kernel and writes the executed notebook and an HTML page of each to ``out``.
A failing cell stops that notebook, is reported, and makes the exit code 1. A cell that runs past ``--timeout``
gets its notebook run once more from the top before it counts as failed (:func:`run_all`).

The HTML pages are a static site that reads offline (:func:`write_site`): ``index.html`` links the chapters and
the glossary, equations render with a local copy of MathJax (from the ``jupyter-server-mathjax`` package), and
nothing is fetched from a CDN. Interactive widgets cannot run without a kernel: each chapter draws a static
figure of the widget's first state next to it, and the page says so where the widget was.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

MATHJAX_URL = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"   # the configs the local copy has
# the local copy ships the STIX-Web fonts only: say so before MathJax starts, or it falls back to image-less glyphs
MATHJAX_FONTS = ('<script type="text/x-mathjax-config">MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], '
                 'preferredFont: null, webFont: "STIX-Web"}});</script>\n')
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = "[an interactive widget: open this notebook in JupyterLab (make lab) to move it]"


def notebook_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "notebooks"


def run_all(out="build/notebooks", quick: bool = False, pattern: str = "*.ipynb", timeout: int = 600,
            tries: int = 2, src: Path | None = None) -> int:
    """Run each notebook of ``src`` (default :func:`notebook_dir`) matching ``pattern``; ``timeout``: seconds a cell
    may run (the longest tutorial cell takes about a minute). A notebook whose cell runs past it is run again from the
    top, up to ``tries`` runs in all: nbclient can wait for a reply that an idle kernel never sends (seen once here, in
    chapter 05; jupyter/nbclient#312), and a second run finishes in about a minute. 0 when every notebook ran."""
    import nbformat  # the Jupyter stack is slow to import: only `minist notebooks` needs it
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    if quick:
        os.environ["MINIST_QUICK"] = "1"   # the kernel inherits this process's environment
    src = Path(src) if src is not None else notebook_dir()
    books = sorted(src.glob(pattern))
    if not books:
        print(f"no notebooks match {pattern!r} in {src}")
        return 1
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for path in books:
        tic = time.time()
        for attempt in range(1, tries + 1):
            nb = nbformat.read(path, as_version=4)
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                    resources={"metadata": {"path": str(src)}})
            try:
                client.execute()
                status = "ok" if attempt == 1 else f"ok on run {attempt} (run {attempt - 1} timed out)"
            except CellExecutionError as e:
                status = f"FAILED: {str(e).splitlines()[-1] if str(e) else e!r}"
            except CellTimeoutError:
                status = (f"FAILED: a cell ran past {timeout} s in each of {attempt} runs (`--timeout` sets the "
                          f"limit)")
                if attempt < tries:
                    print(f"{path.name}: a cell ran past {timeout} s; running the notebook again from the top",
                          flush=True)
                    continue
            break
        if status.startswith("FAILED"):
            failed.append(path.name)
        nbformat.write(nb, out / path.name)
        print(f"{path.name}: {status} in {time.time() - tic:.0f} s → {out / path.name}", flush=True)
    index = write_site([out / p.name for p in books], out)
    if failed:
        print(f"{len(failed)} notebook(s) failed: {', '.join(failed)}")
        return 1
    print(f"all {len(books)} notebook(s) ran; executed copies in {out}/, the site: open {index}")
    return 0


def static_copy(nb):
    """The notebook as a page can show it: widget state and views removed (they need a kernel and a CDN), each
    widget output replaced by its text fallback, or by a note saying where the widget was. Changes ``nb`` in place."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW in data:
                data.pop(WIDGET_VIEW)
                text = data.get("text/plain", "")
                if not text or text.lstrip().startswith(("VBox(", "HBox(", "interactive(", "Output(", "Tab(")):
                    data["text/plain"] = WIDGET_NOTE
    return nb


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
            "<style>body{font-family:sans-serif;max-width:52em;margin:2em auto;line-height:1.5;padding:0 1em}"
            "code{background:#f4f4f4}</style></head>\n<body>\n" + body + "\n</body></html>\n")


def write_site(executed, out) -> Path:
    """The executed chapters as a static site in ``out``: one page per chapter, the glossary, an index, and a local
    MathJax. Reads offline and from any static host; returns the index page."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.filters.markdown import markdown2html
    try:
        import jupyter_server_mathjax
    except ImportError:
        raise RuntimeError("the offline site needs a local MathJax: pip install jupyter-server-mathjax "
                           "(a dependency of minist; reinstall with `make setup`)") from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mathjax = out / "mathjax"
    if not (mathjax / "MathJax.js").is_file():
        shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / "static", mathjax, dirs_exist_ok=True)
    exporter = HTMLExporter(mathjax_url=MATHJAX_URL)
    links = []
    for path in executed:
        nb = static_copy(nbformat.read(path, as_version=4))
        html, _ = exporter.from_notebook_node(nb)
        html = html.replace(f'<script src="{exporter.require_js_url}"></script>', "")    # only widgets use it
        html = html.replace(f'<script src="{MATHJAX_URL}">', MATHJAX_FONTS + f'<script src="{MATHJAX_URL}">')
        html = html.replace('href="glossary.md', 'href="glossary.html')
        page = Path(path).with_suffix(".html").name
        (out / page).write_text(html, encoding="utf-8")
        title = next((c.source.splitlines()[0].lstrip("# ") for c in nb.cells if c.cell_type == "markdown"), page)
        links.append((page, title))
    glossary = notebook_dir() / "glossary.md"
    if glossary.is_file():
        (out / "glossary.html").write_text(_page("Glossary", markdown2html(glossary.read_text())), encoding="utf-8")
        links.append(("glossary.html", "Glossary"))
    items = "\n".join(f"<li><a href='{href}'>{re.sub('<', '&lt;', t)}</a></li>" for href, t in links)
    index = out / "index.html"
    index.write_text(_page("minist: the chapters", "<h1>minist: supervised compression for split computing</h1>\n"
                           "<p>The executed chapters, readable offline.</p>\n<ol>\n" + items + "\n</ol>"),
                     encoding="utf-8")
    return index
