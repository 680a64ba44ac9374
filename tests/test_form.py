"""The Submit form's rules: what it offers for a type, what a switch keeps, a stale answer."""

from __future__ import annotations

import pytest

from eventlens import analytics, form, model
from eventlens.form import Tables


@pytest.fixture
def cart_store(store, write_bodies, load):
    """Three add_to_cart events (amount on all, coupon on one) and one search."""

    def cart(amount: float, country: str, **extra: str) -> dict:
        details = {"country": country, **extra}
        return {"trace_id": "t", "event_type": "add_to_cart", "metrics": {"amount": amount},
                "event_details": details}  # fmt: skip

    bodies = [cart(10, "DE"), cart(20, "US", coupon="X"), cart(31.123456789, "US")]
    bodies.append({"trace_id": "t", "event_type": "search", "metrics": {"results": 3}})
    load(write_bodies(bodies))
    return store


@pytest.mark.parametrize("event_type", list(model.PREDEFINED_RULES))
def test_a_predefined_type_is_offered_its_rule_with_values_that_pass(store, event_type):
    rule = model.PREDEFINED_RULES[event_type]
    offered = form.offer(store, event_type)
    assert [key for key, _ in offered.metrics] == [rule.metric]
    assert [key for key, _ in offered.details] == ([rule.detail] if rule.detail else [])
    body = {"trace_id": "t", "event_type": event_type, "metrics": dict(offered.metrics)}
    body["event_details"] = dict(offered.details)
    assert model.validate_body(body) == []


def test_thumbs_up_down_is_offered_an_up_vote_and_feedback(store):
    assert form.offer(store, "thumbs_up_down") == Tables(
        (("vote", 1),), (("feedback", "great answer"),)
    )


def test_a_stored_type_is_offered_the_keys_most_of_its_events_carry(cart_store):
    # coupon is on 1 of 3 events: not offered; the median amount, the most common country.
    assert form.offer(cart_store, "add_to_cart") == Tables(
        (("amount", 20.0),), (("country", "US"),)
    )
    assert form.offer(cart_store, "never_seen") == Tables()


def test_typical_fields_honour_the_share(cart_store):
    metrics, details = analytics.typical_fields(cart_store, "add_to_cart", min_share=0.3)
    assert metrics == {"amount": 20.0}
    assert details == {"country": "US", "coupon": "X"}
    assert analytics.typical_fields(cart_store, "search") == ({"results": 3.0}, {})


def test_typical_fields_round_the_median_and_keep_a_null_detail(store, write_bodies, load):
    body = {"trace_id": "t", "event_type": "x", "metrics": {"third": 1 / 3}}
    load(write_bodies([{**body, "event_details": {"note": None}}]))
    assert analytics.typical_fields(store, "x") == ({"third": 0.333333}, {"note": None})


CART = Tables((("amount", 17.5),), (("product_id", "sku_1"),))
VOTE = Tables((("vote", 1),), (("feedback", "great answer"),))


def test_untouched_rows_give_way_to_the_new_offer():
    assert form.switch(CART, CART, VOTE) == form.Switch(VOTE, ())


def test_rows_the_user_typed_or_changed_are_kept_after_the_offer():
    current = Tables((("amount", 20.0), ("extra", 2.0)), (("product_id", "sku_1"),))
    switched = form.switch(current, CART, VOTE)
    assert switched.tables == Tables(
        (("vote", 1), ("amount", 20.0), ("extra", 2.0)), (("feedback", "great answer"),)
    )
    assert switched.kept == ("metrics.amount", "metrics.extra")


def test_the_users_value_wins_on_an_offered_key_in_the_offers_place():
    current = Tables((("amount", 17.5), ("vote", -1.0)), ())
    switched = form.switch(current, CART, Tables((("vote", 1), ("other", 0)), ()))
    assert switched.tables.metrics == (("vote", -1.0), ("other", 0))
    assert switched.kept == ("metrics.vote",)


def test_rows_the_user_deleted_stay_deleted():
    assert form.switch(Tables(), CART, VOTE).tables == VOTE


BODY = {"trace_id": "t", "event_type": "e", "metrics": {"a": 1.0}, "timestamp": 1_000}


def test_two_now_stamped_bodies_are_the_same_event_whatever_their_timestamps():
    assert form.same_event(BODY, True, {**BODY, "timestamp": 2_000}, True)


def test_any_other_change_makes_another_event():
    assert not form.same_event(BODY, True, {**BODY, "trace_id": ""}, True)
    assert not form.same_event(BODY, True, {**BODY, "metrics": {"a": 2.0}}, True)
    assert not form.same_event(BODY, True, {**BODY, "event_id": "x"}, True)
    # A picked time is part of the event; so is choosing "now" instead of it.
    assert form.same_event(BODY, False, dict(BODY), False)
    assert not form.same_event(BODY, False, {**BODY, "timestamp": 2_000}, False)
    assert not form.same_event(BODY, False, dict(BODY), True)
    no_time = {k: v for k, v in BODY.items() if k != "timestamp"}
    assert not form.same_event(BODY, True, no_time, False)
