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
