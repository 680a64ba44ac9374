from eventlens.words import counted, span


def test_one_is_singular_and_every_other_count_plural():
    assert counted(1, "duplicate") == "1 duplicate"
    assert counted(0, "duplicate") == "0 duplicates"
    assert counted(2620, "event") == "2,620 events"
    assert counted(2620, "event", grouped=False) == "2620 events"


def test_an_irregular_plural_is_given():
    assert counted(1, "entry", "entries") == "1 entry"
    assert counted(3, "entry", "entries") == "3 entries"


def test_a_span_reads_in_the_largest_unit_that_keeps_it_at_one_or_more():
    assert span(30 * 86_400) == "30.0 days"
    assert span(9_000) == "2.5 hours"
    assert span(90) == "1.5 min"
    assert span(45) == "45 s"
    assert span(0.001) == "1 ms"


def test_a_bar_fills_its_share_of_the_width():
    from eventlens.words import bar

    assert bar(0.0, 10) == ".........." and bar(0.55, 10) == "#####....." and bar(1.0, 4) == "####"
