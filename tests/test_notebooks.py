"""Execute every tutorial notebook top to bottom at the smoke size, so they can't rot.

Notebooks are stored without outputs (STYLE.md "Notebooks and docs"); that is asserted
here too. Each runs in a fresh ``python3`` kernel with ``OVERPARAM_JAX_SMOKE=1``; any cell
that raises fails the test.
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


@pytest.mark.skipif(os.environ.get("OVERPARAM_JAX_NOTEBOOKS_EXECUTED_BY_DOCS") == "1",
                    reason="the docs build (.ci/run) has just executed every notebook the same way, "
                    "with a failing cell failing it")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("OVERPARAM_JAX_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    book = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(book, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [out for cell in book.cells if cell.cell_type == "code"
              for out in cell.outputs if out.output_type == "error"]
    assert not errors, errors
