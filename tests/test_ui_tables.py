import pandas as pd

from eventlens.ui.tables import COUNT, counts_config


def test_whole_number_columns_get_thousands_separators_and_others_are_left_alone():
    frame = pd.DataFrame(
        {"events": [2620], "nullable": pd.array([None], "Int64"), "ms": [1.5], "name": ["x"]}
    )
    config = counts_config(frame, name="kept")
    assert config == {"events": COUNT, "nullable": COUNT, "name": "kept"}
    assert COUNT["type_config"]["format"] == "%,d"
