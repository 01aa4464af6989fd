"""Request and response bodies of the HTTP API (pydantic; they are also the OpenAPI schema)."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    field_validator,
    model_validator,
)

MAX_K = 1000
MAX_LIST = 10_000
MAX_RATINGS = 1000
MAX_KEY = 128
FUTURE_SLACK_S = 86_400.0  # event times up to a day ahead of the server's clock (clock skew)


def text_problem(text: str) -> str | None:
    """Why `text` cannot be an id or a search string (a NUL, a lone surrogate), or None when it can.

    NUL cannot be stored in PostgreSQL TEXT and lone surrogates cannot be encoded as UTF-8 at
    all, so such ids are refused at the door (422) whatever the store.
    """
    if "\x00" in text:
        return "must not contain a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    return None


def clean_text(text: str) -> str:
    problem = text_problem(text)
    if problem:
        raise ValueError(problem)
    return text


SafeText = Annotated[StrictStr, AfterValidator(clean_text)]
IdText = Annotated[StrictStr, StringConstraints(min_length=1, max_length=256), AfterValidator(clean_text)]
RawId = StrictInt | IdText  # ids keep their JSON type; "42" still finds 42 in an integer vocabulary
# JSON numbers only: true/false and "4" are refused rather than read as 1.0 and 4.0
Finite = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-1e9, le=1e9)]
EventKey = Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_KEY), AfterValidator(clean_text)]
ModelName = Annotated[StrictStr, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Rating(Body):
    item: RawId
    rating: Finite


class NewUserRequest(Body):
    """A user the model has never seen, described by a few ratings, by liked items, or by an ordered
    history (exactly one of the three)."""

    ratings: list[Rating] = Field(default_factory=list, max_length=MAX_RATINGS)
    liked: list[RawId] = Field(default_factory=list, max_length=MAX_RATINGS)
    history: list[RawId] = Field(
        default_factory=list, max_length=MAX_RATINGS,
        description="item ids in the order the user touched them, oldest first: a next-item model (capability "
                    "next_items: sasrec, gru4rec, transitions, knn_last) reads the order; other models fold the "
                    "items in as liked items")
    repeats: StrictBool = Field(False, description="allow items of the user's ratings, liked items or history in the "
                                             "answer (default: leave them out)")
    k: int = Field(10, ge=1, le=MAX_K)
    include: list[RawId] | None = Field(None, max_length=MAX_LIST)
    exclude: list[RawId] | None = Field(None, max_length=MAX_LIST)
    genre: Annotated[SafeText, StringConstraints(max_length=100)] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> NewUserRequest:
        if sum(map(bool, (self.ratings, self.liked, self.history))) != 1:
            raise ValueError("give exactly one of 'ratings' (item + rating pairs), 'liked' (item ids) or "
                             "'history' (item ids, oldest first)")
        return self


class Pair(Body):
    user: RawId
    item: RawId


class PredictRequest(Body):
    pairs: list[Pair] = Field(min_length=1, max_length=MAX_LIST)
    allow_unknown: bool = Field(False, description="answer unknown ids with the model's fallback instead of 404")


class FeedbackEvent(Body):
    """One piece of feedback; ids need not be known to the model (the log feeds the next fit).

    `value` must also lie in the server's feedback range (`--feedback-range`), checked by the route.
    """

    user: RawId
    item: RawId
    value: Finite
    time: Annotated[float, Field(strict=True)] | Annotated[SafeText, StringConstraints(max_length=64)] | None = Field(
        None, description="unix seconds or ISO 8601 (UTC when no offset), from 1970 to a day ahead of the "
                          "server's clock; the server's clock when absent")
    event_id: EventKey | None = Field(
        None, description="a client key for this event (like the Idempotency-Key header): a retry with the same "
                          "key is stored once and answered with the stored event")

    @field_validator("time")
    @classmethod
    def _seconds(cls, value: float | str | None) -> float | None:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError("time must be unix seconds or an ISO 8601 date-time") from None
            value = (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
        if not math.isfinite(value) or not 0 <= value <= time.time() + FUTURE_SLACK_S:
            raise ValueError("time must lie between 1970 and a day from now (unix seconds)")
        return float(value)


class ReloadRequest(Body):
    model: ModelName = Field(description="a model directory name under the server's --models-root")


class Because(BaseModel):
    item: int | str
    title: str | None
    similarity: float


class ItemOut(BaseModel):
    item: int | str
    title: str | None = None
    name: str | None = Field(None, description="the title in reading order (\"The Godfather\"), for display")
    year: int | None = None
    genres: list[str] = []
    score: float | None = None
    n_ratings: int | None = None
    because: Because | None = None


class RecommendationsOut(BaseModel):
    user: int | str | None
    model: str
    items: list[ItemOut]
    scored_by: Literal["next_items", "fold_in"] | None = Field(
        None, description="POST /recommendations only: how the anonymous user was scored: next_items (a "
                          "next-item model read the ordered history) or fold_in (the model's fold-in of the items)")


class SimilarOut(BaseModel):
    item: int | str
    model: str
    items: list[ItemOut]


class SearchOut(BaseModel):
    total: int
    items: list[ItemOut]


class PredictionOut(BaseModel):
    user: int | str
    item: int | str
    prediction: float
    known: bool


class PredictOut(BaseModel):
    model: str
    predictions: list[PredictionOut]


class StoredEvent(BaseModel):
    user: str
    item: str
    value: float
    time: float
    event_id: str | None = None


class FeedbackOut(BaseModel):
    id: int
    stored: bool
    duplicate: bool = Field(False, description="true when this key was seen before: nothing new was stored")
    event: StoredEvent


class ReloadOut(BaseModel):
    model: str
    previous: str
    load_seconds: float


class CategoryOut(BaseModel):
    column: str = Field(description="a category column of the item catalogue")
    values: list[str]


class RatingScaleOut(BaseModel):
    min: float
    max: float


class InfoOut(BaseModel):
    """The served model and what its data looks like (the web page adapts to it)."""

    model_config = ConfigDict(extra="allow")  # more model details from the runtime

    version: str
    model: str
    task: str = Field(description="'rating' (explicit ratings) or 'ranking' (0/1 or count data)")
    n_users: int
    n_items: int
    genres: list[str] = Field(description="values of the category column (`category_column`), for `genre=`")
    feedback: str = Field(description="what a user gives: 'rating' (on `rating_scale`) or 'like' (0/1)")
    rating_scale: RatingScaleOut | None = Field(description="lowest and highest rating (rating models)")
    feedback_range: tuple[float, float] = Field(description="values POST /feedback accepts")
    has_titles: bool = Field(description="whether items have names (else they are shown by id)")
    category_column: str | None = Field(description="the column behind `genres` and the `genre` filter")
    categories: list[CategoryOut] = Field(description="every category column of the catalogue")
