"""Execute the tutorial notebooks headless: the main job, for people and CI alike.

``minist notebooks`` runs every ``notebooks/*.ipynb`` top to bottom in a fresh
kernel and writes the executed notebook and an HTML page of each to ``out``.
A failing cell stops that notebook, is reported, and makes the exit code 1.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def notebook_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "notebooks"


def run_all(out="build/notebooks", quick: bool = False, pattern: str = "*.ipynb", timeout: int = 3600) -> int:
    import nbformat  # the Jupyter stack is slow to import: only `minist notebooks` needs it
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    if quick:
        os.environ["MINIST_QUICK"] = "1"   # the kernel inherits this process's environment
    src = notebook_dir()
    books = sorted(src.glob(pattern))
    if not books:
        print(f"no notebooks match {pattern!r} in {src}")
        return 1
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for path in books:
        nb = nbformat.read(path, as_version=4)
        tic = time.time()
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(src)}})
        try:
            client.execute()
            status = "ok"
        except CellExecutionError as e:
            failed.append(path.name)
            status = f"FAILED: {str(e).splitlines()[-1] if str(e) else e!r}"
        nbformat.write(nb, out / path.name)
        html, _ = HTMLExporter().from_notebook_node(nb)
        (out / path.with_suffix(".html").name).write_text(html, encoding="utf-8")
        print(f"{path.name}: {status} in {time.time() - tic:.0f} s → {out / path.name}", flush=True)
    if failed:
        print(f"{len(failed)} notebook(s) failed: {', '.join(failed)}")
        return 1
    print(f"all {len(books)} notebook(s) ran; executed copies and HTML in {out}/")
    return 0
