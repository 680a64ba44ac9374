from eventlens.words import counted


def test_one_is_singular_and_every_other_count_plural():
    assert counted(1, "duplicate") == "1 duplicate"
    assert counted(0, "duplicate") == "0 duplicates"
    assert counted(2620, "event") == "2,620 events"
    assert counted(2620, "event", grouped=False) == "2620 events"


def test_an_irregular_plural_is_given():
    assert counted(1, "entry", "entries") == "1 entry"
    assert counted(3, "entry", "entries") == "3 entries"
