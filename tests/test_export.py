"""CSV exports cannot smuggle formulas into a spreadsheet."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from eventlens.export import neutralise, safe_csv


@pytest.mark.parametrize("cell", ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\t=x", "\r=x"])
def test_formula_cells_are_prefixed(cell):
    assert neutralise(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["sku_1", "", "a=b", 17.5, -3, None])
def test_other_cells_are_untouched(cell):
    assert neutralise(cell) == cell


def test_safe_csv_keeps_numbers_and_neutralises_text():
    frame = pd.DataFrame({"reason": ['=HYPERLINK("x")', "fine"], "line": [-1, 2]})
    back = pd.read_csv(io.BytesIO(safe_csv(frame)))
    assert back["reason"].tolist() == ['\'=HYPERLINK("x")', "fine"]
    assert back["line"].tolist() == [-1, 2]
