"""The rules of query parameters: only the documented ones, each once.

A parameter the endpoint does not take was ignored without a word: `?limt=5` answered the first 100 items,
and `POST /v1/items?dry_run=true` or `DELETE /v1/items/{id}?soft=true` wrote anyway. A parameter sent twice
(`?k=5&k=50`, a URL built by appending) took the last value as silently. Each is now a 422 whose `errors`
name the parameter (`"loc": ["query", name]`), as an unknown or malformed field of a body is.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict


class NoQuery(BaseModel):
    """The query of an endpoint that takes no parameters: each one sent is `extra_forbidden`."""

    model_config = ConfigDict(extra="forbid")


def _no_query(query: Annotated[NoQuery, Query()]) -> None:
    """Refuse every query parameter (the validation of `NoQuery` does it)."""


def _each_once(request: Request) -> None:
    """Refuse a query parameter sent more than once, naming each such parameter and its count."""
    counts = Counter(name for name, _ in request.query_params.multi_items())
    repeated = {name: count for name, count in counts.items() if count > 1}
    if repeated:
        raise RequestValidationError(
            [
                {"loc": ("query", name), "msg": f"expected one value, found {count}", "type": "repeated"}
                for name, count in repeated.items()
            ]
        )


NO_QUERY = Depends(_no_query)  # in `dependencies=[...]` of a route that takes no query parameters
EACH_ONCE = Depends(_each_once)  # in `dependencies=[...]` of a route that takes some
