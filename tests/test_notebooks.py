"""Execute every tutorial notebook top to bottom at the smoke size, so they can't rot.

Notebooks are stored without outputs (STYLE.md "Notebooks and docs"); that is asserted
here too. Each runs in a fresh ``python3`` kernel with ``OVERPARAM_JAX_SMOKE=1``; any cell
that raises fails the test. In CI (``OVERPARAM_JAX_NOTEBOOKS_EXECUTED_BY_DOCS=1``) the docs
build has just executed them the same way, so the test reads the pages it built instead: every
code cell there, outputs present, no error output.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbclient  # in the `dev` extra, with nbformat and ipykernel (the python3 kernel)
import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
TUTORIALS = {"01_quickstart", "02_end_to_end_dynamics", "03_convergence", "04_acceleration_by_depth",
             "05_sweeps_and_devices", "06_deep_matrix_factorization"}
CELL_TIMEOUT_S = 300  # per cell; at the smoke size a whole notebook takes 15-35 s of CPU


def test_the_tutorials_are_collected():
    missing = TUTORIALS - {p.stem for p in NOTEBOOKS}
    assert not missing, f"notebooks/ lacks {sorted(missing)}"


def _stale_cells(book) -> list[int]:
    """Indices of code cells that carry outputs or an execution count."""
    return [i for i, cell in enumerate(book.cells)
            if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]


def test_stale_cells_are_detected():
    v4 = nbformat.v4
    book = v4.new_notebook(cells=[v4.new_markdown_cell("x"), v4.new_code_cell("1"),
                                  v4.new_code_cell("2", execution_count=3),
                                  v4.new_code_cell("3", outputs=[v4.new_output("stream", text="3")])])
    assert _stale_cells(book) == [2, 3]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_without_outputs(path):
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    stale = _stale_cells(book)
    assert not stale, f"{path.name}: cells {stale} have outputs or execution counts; clear them before committing"


def _built_page_problems(book, html: str | None) -> list[str]:
    """What is wrong with a tutorial page that the docs build executed: missing, a code cell
    without its container, no output at all, or an error output."""
    if html is None:
        return ["the docs build wrote no page"]
    code_cells = sum(cell.cell_type == "code" for cell in book.cells)
    problems = []
    page_cells = html.count('class="cell docutils container"')
    if page_cells != code_cells:
        problems.append(f"{page_cells} code cells on the page, {code_cells} in the notebook")
    if 'class="cell_output' not in html:
        problems.append("no cell output (not executed)")
    if "traceback" in html.lower():
        problems.append("an error output")
    return problems


def test_built_page_problems_are_detected():
    v4 = nbformat.v4
    book = v4.new_notebook(cells=[v4.new_code_cell("1"), v4.new_markdown_cell("x")])
    good = '<div class="cell docutils container"><div class="cell_output docutils container">1</div></div>'
    assert _built_page_problems(book, good) == []
    assert _built_page_problems(book, None) == ["the docs build wrote no page"]
    assert _built_page_problems(book, '<div class="cell docutils container"></div>') == ["no cell output (not executed)"]
    assert _built_page_problems(book, good.replace(">1<", ">Traceback (most recent call last)<")) == ["an error output"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    book = nbformat.read(path, as_version=4)
    if os.environ.get("OVERPARAM_JAX_NOTEBOOKS_EXECUTED_BY_DOCS") == "1":
        # .ci/run's docs build has just executed every notebook the same way (a failing cell
        # fails it): read what it built instead of executing a second time.
        page = Path(__file__).resolve().parents[1] / "docs" / "_build" / "html" / "tutorials" / f"{path.stem}.html"
        problems = _built_page_problems(book, page.read_text() if page.is_file() else None)
        assert not problems, f"{page}: {problems}"
        return
    monkeypatch.setenv("OVERPARAM_JAX_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = nbclient.NotebookClient(book, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [out for cell in book.cells if cell.cell_type == "code"
              for out in cell.outputs if out.output_type == "error"]
    assert not errors, errors
