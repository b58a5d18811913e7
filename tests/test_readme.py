"""The README's Python snippets run as written (those that need no internet)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_snippets_run():
    blocks = [b for b in _python_blocks() if "download=True" not in b]
    assert blocks, "the README should show Python usage"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})


def test_readme_names_the_two_commands_and_ci_calls_the_test_one():
    text = README.read_text()
    assert "make tutorial" in text and "make test" in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci


NOTEBOOKS = README.parent / "notebooks"


def _notebook_python_blocks():
    """``(notebook, its code cells' source, snippet)`` for every ```python block in a markdown cell (dedented: the
    exercises' solutions sit inside list items)."""
    import json
    import textwrap
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for cell in cells:
            if cell["cell_type"] == "markdown":
                for block in re.findall(r"```python\n(.*?)```", "".join(cell["source"]), flags=re.S):
                    yield path.name, code, textwrap.dedent(block)


def _names(tree, modules: dict, known: set) -> None:
    """What a piece of code imports (minist modules and objects into ``modules``) and binds (into ``known``)."""
    import ast
    import importlib
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "minist":
            for a in node.names:
                known.add(a.asname or a.name)
                obj = getattr(importlib.import_module(node.module), a.name, None)
                modules[a.asname or a.name] = obj if obj is not None else \
                    importlib.import_module(f"{node.module}.{a.name}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                known.add((a.asname or a.name).split(".")[0])
                if a.name.split(".")[0] == "minist":
                    modules[a.asname or a.name] = importlib.import_module(a.name)
        elif isinstance(node, ast.ImportFrom):
            known.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            known.add(node.id)
        elif isinstance(node, ast.arg):
            known.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.ExceptHandler)) and node.name:
            known.add(node.name)


def test_notebook_snippets_call_only_what_they_import_and_what_exists():
    """The chapters' shown (not run) snippets, solutions included, run in their notebook's context but need the
    internet, hours, or a learner's hand; each must still compile, use no name that neither it nor its notebook
    binds, and call only functions the imported minist modules have."""
    import ast
    import builtins
    blocks = list(_notebook_python_blocks())
    assert blocks, "the chapters show Python snippets"
    for name, code, block in blocks:
        modules, known = {}, set(dir(builtins))
        _names(ast.parse(code.replace("%", "#")), modules, known)        # the notebook's own imports and names
        tree = ast.parse(block, filename=name)
        _names(tree, modules, known)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                assert node.id in known, f"{name}: the snippet uses {node.id!r} but nothing imports or assigns it"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                assert hasattr(modules[node.value.id], node.attr), \
                    f"{name}: {node.value.id}.{node.attr} does not exist"


def test_every_chapter_links_the_glossary_and_the_glossary_explains_the_issue_terms():
    glossary = (NOTEBOOKS / "glossary.md").read_text()
    for term in ("GDN", "rANS", "bpp", "CR+BQ", "KD", "mAP@[.5:.95]", "mIoU", "β"):
        assert term in glossary, f"the glossary does not explain {term}"
    for path in sorted(NOTEBOOKS.glob("0*.ipynb")):
        assert "(glossary.md)" in path.read_text(), f"{path.name} does not link the glossary"


def test_live_cells_use_every_core_when_quiet_and_fewer_when_busy(monkeypatch):
    from minist.utils import live_threads
    monkeypatch.delenv("MINIST_THREADS", raising=False)
    assert live_threads(load=0.1, cores=2) == 2          # quiet laptop
    assert live_threads(load=1.3, cores=2) == 1          # one other job: do not oversubscribe
    assert live_threads(load=5.0, cores=2) == 1          # never fewer than one
    assert live_threads(load=3.0, cores=16) == 13
    monkeypatch.setenv("MINIST_THREADS", "3")
    assert live_threads(load=5.0, cores=2) == 3          # the learner's choice wins


@pytest.mark.skipif(not (ROOT / "data" / "results_test_mini.json").is_file(), reason="no test-split results shipped")
def test_the_readme_quotes_the_test_split_table_as_the_code_writes_it():
    """The README's headline table is `minist test-study --markdown`, verbatim: its numbers cannot drift from
    data/results_test_mini.json."""
    from minist.experiments import test_study
    readme = (ROOT / "README.md").read_text()
    table = test_study.markdown()
    assert table in readme, "README's test-split table differs: paste `minist test-study --markdown` into it"
