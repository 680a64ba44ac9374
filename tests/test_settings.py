from eventlens import settings


def test_a_setting_reads_the_environment_else_its_default(monkeypatch):
    monkeypatch.delenv("LANGWATCH_ENDPOINT", raising=False)
    assert settings.ENDPOINT.from_env() is None
    assert settings.ENDPOINT.value() == "https://app.langwatch.ai"
    monkeypatch.setenv("LANGWATCH_ENDPOINT", "")  # empty counts as unset
    assert settings.ENDPOINT.value() == "https://app.langwatch.ai"
    monkeypatch.setenv("LANGWATCH_ENDPOINT", "http://staging:5560")
    assert settings.ENDPOINT.value() == "http://staging:5560"


def test_a_variable_named_at_run_time(monkeypatch):
    monkeypatch.delenv("EVENTLENS_SANDBOX_KEY", raising=False)
    monkeypatch.delenv("MY_STAGING_KEY", raising=False)
    assert settings.named("EVENTLENS_SANDBOX_KEY") == "sandbox-key"
    assert settings.named("MY_STAGING_KEY") is None
    monkeypatch.setenv("MY_STAGING_KEY", "k")
    assert settings.named("MY_STAGING_KEY") == "k"


def test_names_are_unique():
    names = [s.name for s in settings.SETTINGS]
    assert len(names) == len(set(names))


def test_every_error_of_eventlens_has_one_root():
    from eventlens.analytics import QueryError
    from eventlens.errors import EventlensError
    from eventlens.ingest import NotAnExport
    from eventlens.replay import ReplayError
    from eventlens.store import StoreError

    for error in (StoreError, QueryError, NotAnExport, ReplayError):
        assert issubclass(error, EventlensError)
    assert issubclass(QueryError, ValueError)  # callers that caught ValueError still do
