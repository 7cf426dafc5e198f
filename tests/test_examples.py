"""The teaching notebooks in examples/ run, cell by cell, against the package under test."""
import json
import time
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.ipynb"))


@pytest.mark.parametrize("nb", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_notebook_runs(nb, capsys):
    cells = json.loads(nb.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code, nb
    ns = {"__name__": "__main__"}
    t0 = time.perf_counter()
    for i, c in enumerate(code):
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        exec(compile(src, f"{nb.name}[cell {i}]", "exec"), ns)  # noqa: S102 - our own notebook
    print(f"{nb.name}: {time.perf_counter() - t0:.1f} s")


def test_there_is_a_lab():
    assert EXAMPLES, "examples/ should hold at least one notebook"
