"""The Data page, driven through Streamlit's AppTest (no browser)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from apptest_helpers import metric, plain
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ROOT / "sample_data" / "formats"


@pytest.fixture
def app(sample_store_file, tmp_path, monkeypatch) -> AppTest:
    """The Data page on a copy of the sample store, as a first start leaves it."""
    shutil.copyfile(sample_store_file, tmp_path / "app.duckdb")
    monkeypatch.setenv("EVENTLENS_DB", str(tmp_path / "app.duckdb"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.switch_page("pages/data.py").run()  # as a browser opening /data: no Explore run first
    assert not at.exception, [e.value for e in at.exception]
    return at


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def text_input(at: AppTest, label: str, nth: int = 0):
    return [t for t in at.text_input if t.label == label][nth]


def load_path(at: AppTest, path: object, dataset: str | None = None) -> None:
    """Type a server path (and a dataset name), then press Load as a user would."""
    text_input(at, "File or folder on the machine running eventlens").input(str(path))
    if dataset is not None:  # the two fields are drawn whatever they hold: one run for both
        text_input(at, "Dataset name", 1).input(dataset)
    at.run()
    button(at, "Load from path").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]


def delete_dataset(at: AppTest, name: str | None = None) -> None:
    """Choose a dataset (else the first one listed), confirm, then press Delete dataset."""
    if name is not None:
        at.selectbox(key="delete_choice").select(name)
    at.checkbox(key="delete_sure").check()
    at.run()
    button(at, "Delete dataset").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]


def test_first_start_loads_the_sample_data(tmp_path, monkeypatch):
    """A store file that does not exist yet: the app's first run loads the sample export."""
    monkeypatch.setenv("EVENTLENS_DB", str(tmp_path / "new.duckdb"))
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    app.switch_page("pages/data.py").run()  # app.py opens the store before any page runs
    assert not app.exception, [e.value for e in app.exception]
    assert metric(app, "Events") == "50,000"
    assert int(metric(app, "Event types")) >= 8
    datasets = app.dataframe[0].value
    assert datasets["dataset"].tolist() == ["sample"]
    assert datasets["events"].tolist() == [50_000]


def test_loading_a_file_with_bad_lines_reports_rejects_and_keeps_good_rows(app):
    load_path(app, str(FORMATS / "bad_lines.jsonl"), "qa")
    assert not app.exception
    assert any("8 rejected" in w.value for w in app.warning)
    assert metric(app, "Rejected rows") == "8"
    rejects = app.dataframe[-1].value
    assert "metrics.amount: must be a number, got string" in rejects["reason"].tolist()
    assert set(rejects["dataset"]) == {"qa"}


def test_a_missing_path_is_named_without_a_traceback(app):
    load_path(app, "/no/such/file.jsonl")
    assert not app.exception
    assert any("Nothing exists at" in e.value for e in app.error)


def test_a_file_that_is_not_an_export_loads_nothing_and_says_so(app, tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello\nworld\n")
    load_path(app, str(junk))
    assert not app.exception
    assert any("not an event export" in e.value for e in app.error)
    assert metric(app, "Events") == "50,000"


def test_a_folder_loads_every_file_in_it(app):
    load_path(app, str(FORMATS), "formats")
    assert not app.exception
    files = app.dataframe[0].value
    assert len(files) == len(list(FORMATS.iterdir()))
    assert (files["problem"] == "").all()


def test_deleting_a_dataset_removes_its_events(app):
    delete_dataset(app)
    assert any("Deleted sample" in s.value for s in app.success)
    assert metric(app, "Events") == "0"


def test_profile_of_one_event_type_lists_its_metrics_and_details(app):
    app.selectbox(key="profile_type").select("llm_call")
    app.run()
    frames = [f.value for f in app.dataframe]
    metrics = next(f for f in frames if "metric" in f.columns)
    assert {"latency_ms", "prompt_tokens"} <= set(metrics["metric"])
    assert (metrics["min"] <= metrics["median"]).all()
    assert (metrics["median"] <= metrics["max"]).all()
    details = next(f for f in frames if "detail" in f.columns)
    assert "model" in set(details["detail"])


def test_profile_scoped_to_a_dataset(app):
    load_path(app, str(FORMATS / "search_response.json"), "search")
    app.selectbox(key="profile_dataset").select("search")
    app.run()
    assert not app.exception
    profile = next(f.value for f in app.dataframe if "event type" in f.value.columns)
    assert profile["events"].sum() == 120


def test_the_cached_profiles_follow_a_load_and_a_delete(app):
    """The profiles are cached per store version (ui/cache.py): a load or a delete shows at once."""

    def profiled() -> tuple[int, int]:
        """Events in the by-type profile of all datasets, and rows of the chosen type's details."""
        frames = [f.value for f in app.dataframe]
        by_type = next(f for f in frames if "event type" in f.columns)
        details = next(f for f in frames if "detail" in f.columns)
        return int(by_type["events"].sum()), len(details)

    before = profiled()
    assert before[0] == 50_000
    load_path(app, str(FORMATS / "search_response.json"), "search")
    assert profiled()[0] == 50_120
    delete_dataset(app, "search")
    assert profiled() == before


def test_rejects_can_be_filtered_and_downloaded(app):
    load_path(app, FORMATS / "bad_lines.jsonl", "qa")
    app.text_input(key="reject_words").input("metrics.vote")
    app.run()
    assert not app.exception
    rejects = app.dataframe[-1].value
    assert rejects["reason"].tolist() == [
        "metrics.vote: must be a number from -1 to 1 for thumbs_up_down, got 5"
    ]
    assert rejects["location"].tolist() == ["line 15"]
    app.text_input(key="reject_words").input("no such words")
    app.run()
    assert any("No rejected rows match" in c.value for c in app.caption)


UX_NOTES = (
    "The upload flow felt slow on the first try, and it was not clear which formats it takes.\n\n"
    "Users said the page should explain, in plain words, why a file was refused.\n"
)


def messages(at: AppTest) -> list[tuple[str, str]]:
    """The page's message boxes in the order they are drawn: (kind, text without Markdown)."""
    kinds = ("Error", "Warning", "Info", "Success")
    return [
        (type(n).__name__, plain(n.value).replace("**", ""))
        for n in at.main
        if type(n).__name__ in kinds
    ]


def test_a_prose_file_leads_with_why_it_was_not_loaded(app, tmp_path):
    notes = tmp_path / "ux-notes.txt"
    notes.write_text(UX_NOTES)
    load_path(app, notes)
    (first, *rest) = messages(app)
    assert first[0] == "Error"
    assert first[1].startswith(f"{notes}: it is not an event export: its first line is neither")
    assert "eventlens reads JSON lines" in first[1]  # what would have been accepted
    # No "0 loaded, 0 rejected, 0 duplicates" box, no per-file table, no empty dataset.
    assert not [text for _, text in rest if "loaded" in text], rest
    assert app.dataframe[0].value["dataset"].tolist() == ["sample"]
    assert metric(app, "Events") == "50,000"


def test_a_failed_file_beside_a_good_one_is_named_before_the_counts(app, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a-notes.txt").write_text(UX_NOTES)
    (folder / "b-events.ndjson").write_bytes((FORMATS / "events.ndjson").read_bytes())
    load_path(app, folder, "mixed")
    kinds = [kind for kind, _ in messages(app)]
    assert kinds[:2] == ["Error", "Warning"]
    error, summary = (text for _, text in messages(app)[:2])
    assert "a-notes.txt: it is not an event export" in error
    assert summary == (
        "Dataset mixed: 120 loaded, 0 rejected, 0 duplicates. 1 file not loaded (see above)."
    )
    files = app.dataframe[0].value
    assert files["format"].tolist() == ["?", "jsonl"]


def test_loading_the_same_file_again_says_why_nothing_was_added(app):
    load_path(app, FORMATS / "events.ndjson", "again")
    load_path(app, FORMATS / "events.ndjson", "again")
    assert messages(app)[0] == (
        "Info",
        "Dataset again: 0 loaded, 0 rejected, 120 duplicates. "
        "Nothing new was added: those events were already in the store.",
    )


def test_counts_of_one_read_in_the_singular(app, tmp_path):
    one_each = tmp_path / "one.jsonl"
    one_each.write_text(
        '{"trace_id": "t-one", "event_type": "click", "metrics": {"n": 1}, "event_id": "e1"}\n'
        '{"trace_id": "t-one", "event_type": "click", "metrics": {"n": 1}, "event_id": "e1"}\n'
        '{"trace_id": "t-one", "event_type": "click", "metrics": {"n": "x"}}\n'
    )
    load_path(app, one_each, "one")
    assert ("Warning", "Dataset one: 1 loaded, 1 rejected, 1 duplicate.") in messages(app)
    app.selectbox(key="profile_dataset").select("one")
    app.run()
    assert any("1 row did not pass LangWatch's rules in one." in c.value for c in app.caption)
    assert [b.label for b in app.get("download_button")] == ["Download this reject as CSV"]
    delete_dataset(app, "one")
    assert [plain(s.value) for s in app.success] == ["Deleted one: 1 event removed."]


def test_a_dataset_is_marked_as_test_data_and_back(app):
    def marks() -> dict[str, bool]:
        table = next(d.value for d in app.dataframe if "test" in d.value.columns)
        return table.set_index("dataset")["test"].to_dict()

    load_path(app, str(FORMATS / "events.ndjson"), "qa")
    assert marks() == {
        "qa": False,
        "sample": False,
    }
    app.selectbox(key="mark_choice").set_value("qa").run()
    button(app, "Mark as test data").click().run()
    assert not app.exception
    assert [plain(s.value) for s in app.success] == ["qa is test data now."]
    assert marks() == {
        "qa": True,
        "sample": False,
    }
    button(app, "Analyse it again").click().run()
    assert [plain(s.value) for s in app.success] == ["qa is data to analyse now."]
