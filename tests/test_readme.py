"""The README's Python snippets run as written (those that need no internet)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


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
    import json
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                for block in re.findall(r"```python\n(.*?)```", "".join(cell["source"]), flags=re.S):
                    yield path.name, block


def test_notebook_snippets_call_only_what_they_import_and_what_exists():
    """The chapters' shown (not run) snippets need the internet or hours; each must still compile, use no name it
    never imports or assigns, and call only functions the imported minist modules have."""
    import ast
    import builtins
    import importlib
    blocks = list(_notebook_python_blocks())
    assert blocks, "the chapters show Python snippets"
    for name, block in blocks:
        tree = ast.parse(block, filename=name)
        modules, known = {}, set(dir(builtins))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "minist":
                for a in node.names:
                    known.add(a.asname or a.name)
                    obj = getattr(importlib.import_module(node.module), a.name, None)
                    if obj is None:
                        obj = importlib.import_module(f"{node.module}.{a.name}")
                    modules[a.asname or a.name] = obj
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                known.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                known.add(node.id)
            elif isinstance(node, ast.arg):
                known.add(node.arg)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                assert node.id in known, f"{name}: the snippet uses {node.id!r} but never imports or assigns it"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                assert hasattr(modules[node.value.id], node.attr), \
                    f"{name}: {node.value.id}.{node.attr} does not exist"


def test_every_chapter_links_the_glossary_and_the_glossary_explains_the_issue_terms():
    glossary = (NOTEBOOKS / "glossary.md").read_text()
    for term in ("GDN", "rANS", "bpp", "CR+BQ", "KD", "mAP@[.5:.95]", "mIoU", "β"):
        assert term in glossary, f"the glossary does not explain {term}"
    for path in sorted(NOTEBOOKS.glob("0*.ipynb")):
        assert "(glossary.md)" in path.read_text(), f"{path.name} does not link the glossary"
