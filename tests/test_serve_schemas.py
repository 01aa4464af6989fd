"""Property-based tests (Hypothesis) of the request schemas and of the 422 body built from their errors."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("hypothesis")

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from recotorch.serve.errors import MAX_ERRORS, validation_detail
from recotorch.serve.schemas import FeedbackEvent, NewUserRequest, PredictRequest, text_problem

SCALAR = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
JSON = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                      max_size=4), max_leaves=12)
ID = st.integers() | st.text(max_size=40)
FEEDBACK = st.fixed_dictionaries({"user": ID | JSON, "item": ID | JSON, "value": st.floats() | st.integers() | JSON},
                                 optional={"time": st.floats() | st.integers() | st.text(max_size=30) | JSON,
                                           "event_id": st.text(max_size=200) | JSON, "extra": JSON})


def _usable_text(value: object) -> bool:
    return not isinstance(value, str) or ("\x00" not in value and text_problem(value) is None)


@settings(max_examples=300, deadline=None)
@given(FEEDBACK)
def test_a_feedback_body_is_valid_or_a_validation_error(body):
    try:
        event = FeedbackEvent.model_validate(body)
    except ValidationError as exc:
        detail = validation_detail(list(exc.errors()))
        assert len(detail) <= MAX_ERRORS + 1 and all(set(e) == {"loc", "msg", "type"} for e in detail)
        assert len(json.dumps(detail)) < 20_000
        return
    assert math.isfinite(event.value) and not isinstance(body["value"], bool)
    assert isinstance(event.value, float) and -1e9 <= event.value <= 1e9
    for raw in (event.user, event.item, event.event_id):
        assert raw is None or (isinstance(raw, int) and not isinstance(raw, bool)) or _usable_text(raw)
    assert event.time is None or event.time >= 0


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_text_problem_matches_what_utf8_and_postgresql_accept(text):
    problem = text_problem(text)
    encodable = True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        encodable = False
    assert (problem is None) == (encodable and "\x00" not in text)


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({}, optional={"ratings": JSON, "liked": JSON, "k": JSON, "include": JSON,
                                           "genre": JSON, "pairs": JSON}))
def test_other_bodies_are_valid_or_a_validation_error(body):
    for schema in (NewUserRequest, PredictRequest):
        try:
            schema.model_validate(body)
        except ValidationError as exc:
            assert validation_detail(list(exc.errors()))


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=5000))
def test_the_422_body_never_carries_the_input(secret):
    secret = "Z" * 60 + secret  # long enough that an echo would show
    with pytest.raises(ValidationError) as info:
        FeedbackEvent.model_validate({"user": 1, "item": 2, "value": secret, secret: 1})
    text = json.dumps(validation_detail(list(info.value.errors())))
    assert "Z" * 45 not in text
