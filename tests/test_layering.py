"""Only eventlens.ui may depend on Streamlit: the core loads, stores and validates without it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lib" / "eventlens"
UI = PACKAGE / "ui"
CORE_MODULES = ("eventlens.ingest", "eventlens.store", "eventlens.model", "eventlens.cli")


def streamlit_imports(path: Path) -> list[int]:
    """Line numbers where a module imports streamlit (import streamlit / from streamlit...)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(n == "streamlit" or n.startswith("streamlit.") for n in names):
            lines.append(node.lineno)
    return lines


def core_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if UI not in p.parents)


def test_there_are_core_modules_to_check():
    names = {p.relative_to(PACKAGE).as_posix() for p in core_files()}
    assert {"ingest/pipeline.py", "store.py", "model.py", "cli.py"} <= names


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_module_does_not_import_streamlit(path):
    assert streamlit_imports(path) == []


def test_the_checker_sees_both_import_forms(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text(
        "import os\nimport streamlit as st\nfrom streamlit.runtime import x\n"
        "def f():\n    import streamlit.components.v1\nfrom streamlit_extras import y\n"
    )
    assert streamlit_imports(sample) == [2, 3, 5]


def test_importing_the_core_does_not_load_streamlit():
    code = (
        f"import sys, {', '.join(CORE_MODULES)}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'streamlit'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_cli_imports_without_pandas():
    """`eventlens load` starts fast: pandas (over a second to import) loads only when needed."""
    import subprocess
    import sys

    code = "import sys, eventlens.cli; print('pandas' in sys.modules, 'plotly' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_info_runs_without_pandas(tmp_path):
    """`eventlens info` reads the datasets as rows, not a DataFrame: pandas stays unloaded."""
    import subprocess
    import sys

    code = (
        "import sys; from click.testing import CliRunner; from eventlens.cli import main;"
        f" r = CliRunner().invoke(main, ['info', '--db', {str(tmp_path / 'i.duckdb')!r}]);"
        " print(r.exit_code, 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "False"], out.stderr
