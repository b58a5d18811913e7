"""The chapters' static site reads offline: a local MathJax, no script from a CDN, widgets replaced by a note."""

import re

import nbformat

from minist.experiments.notebooks import MATHJAX_URL, WIDGET_NOTE, write_site


def test_the_site_loads_nothing_from_the_network_and_links_the_glossary(tmp_path):
    nb = nbformat.v4.new_notebook()
    text = "# 09 · A chapter\n\nRate $R = -\\log_2 p$, see the [glossary](glossary.md)."
    nb.cells = [nbformat.v4.new_markdown_cell(text),
                nbformat.v4.new_code_cell("w", outputs=[nbformat.v4.new_output(
                    "display_data", data={"application/vnd.jupyter.widget-view+json":
                                          {"model_id": "abc", "version_major": 2, "version_minor": 0},
                                          "text/plain": "VBox(children=(FloatSlider(value=0.02),))"})])]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2,
                                                                             "version_minor": 0}}
    path = tmp_path / "09_chapter.ipynb"
    nbformat.write(nb, path)
    index = write_site([path], tmp_path / "site")
    site = index.parent
    page = (site / "09_chapter.html").read_text()
    scripts = re.findall(r'<script[^>]*src="([^"]*)"', page)
    assert scripts and not [s for s in scripts if "//" in s], scripts          # every script is a local file
    assert "mathjax/MathJax.js" in page and (site / "mathjax" / "MathJax.js").is_file()
    assert 'webFont: "STIX-Web"' in page and (site / "mathjax" / "fonts" / "HTML-CSS" / "STIX-Web").is_dir()
    for config in MATHJAX_URL.split("config=")[1].split(","):                 # the configs the page asks for
        assert (site / "mathjax" / "config" / f"{config}.js").is_file(), config
    assert 'href="glossary.html"' in page and (site / "glossary.html").is_file()
    assert WIDGET_NOTE in page and "widget-state" not in page
    text = index.read_text()
    assert "09_chapter.html" in text and "A chapter" in text and "glossary.html" in text


def test_a_notebook_whose_cell_runs_past_the_timeout_runs_once_more_then_fails_by_name(tmp_path, capsys):
    """``run_all``: a cell past the timeout gets its notebook one more run from the top (a kernel reply that never
    comes, nbclient#312, costs one run, not an hour); a notebook that times out every run fails, named."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from minist.experiments.notebooks import run_all

    src = tmp_path / "nb"
    src.mkdir()
    once = ("import pathlib, time\nm = pathlib.Path('ran-once')\nif not m.exists():\n    m.write_text('1')\n"
            "    time.sleep(60)\nprint('finished')")
    nbformat.write(new_notebook(cells=[new_code_cell(once)]), src / "a_once.ipynb")
    nbformat.write(new_notebook(cells=[new_code_cell("import time\ntime.sleep(60)")]), src / "b_always.ipynb")
    assert run_all(tmp_path / "out", src=src, timeout=4) == 1
    said = capsys.readouterr().out
    assert "a_once.ipynb: ok on run 2 (run 1 timed out)" in said
    assert "b_always.ipynb: FAILED: a cell ran past 4 s in each of 2 runs" in said
    assert "1 notebook(s) failed: b_always.ipynb" in said
    done = nbformat.read(tmp_path / "out" / "a_once.ipynb", as_version=4)
    assert done.cells[0].outputs[0]["text"] == "finished\n"
