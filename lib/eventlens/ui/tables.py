"""How tables show numbers: every whole-number column with thousands separators ("2,620", as the
tiles above the tables write it), kept numeric so that a column still sorts by value."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

COUNT = st.column_config.NumberColumn(format="%,d")


def counts_config(frame: pd.DataFrame, **config: Any) -> dict[str, Any]:
    """st.dataframe column settings: COUNT for each integer column; `config` adds or overrides."""
    counts = {c: COUNT for c in frame.columns if pd.api.types.is_integer_dtype(frame[c])}
    return {**counts, **config}
