"""The rule of query parameters on every service route: only those the route declares, each once.

Starlette hands a route every parameter of the URL and FastAPI reads the ones the route declares, so any other
was ignored without a word: `GET /v1/documents?lable=negative` answered every story unfiltered,
`DELETE /v1/items/{id}?soft=true` deleted for good, and `?k=5&k=50` (a URL built by appending) served the
last value. `KnownQuery`, a dependency of every route of a `service_app` (given to the app, so no route can
do without it), answers each with a 422 whose `errors` name the parameter, as an unknown or malformed field
of a body is:

- ``{"loc": ["query", name], "type": "extra_forbidden"}``: the route declares no parameter of that name;
- ``{"loc": ["query", name], "type": "repeated", "msg": "expected one value, found N"}``: a parameter that
  takes one value was sent N times.

What a route declares is read from its `Dependant`: its own query parameters and those of its dependencies,
the fields of a query model (``Annotated[Model, Query()]``) by their aliases; a list parameter (``name:
list[str]``) may repeat. It is the route as its router declares it (its router's dependencies included): a
parameter of a dependency given to `include_router` or to the app would be refused (the services give none). A
route whose endpoint is marked with `any_query` (the health probes and ``/metrics``, which take none and
answer alike whatever they are sent) is left alone, as are the routes that are no FastAPI path operations (the
API docs).
"""

from __future__ import annotations

import types
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.params import Query
from fastapi.routing import APIRoute
from pydantic import AliasChoices, BaseModel
from starlette.requests import HTTPConnection

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
_ANY_QUERY = "__textcore_any_query__"  # the mark `any_query` sets on an endpoint
_SEQUENCES = (list, tuple, set, frozenset, Sequence)


def any_query(endpoint: Endpoint) -> Endpoint:
    """Mark an endpoint whose route takes whatever query it is sent (a probe's or a scraper's)."""
    setattr(endpoint, _ANY_QUERY, True)
    return endpoint


@dataclass(frozen=True)
class QueryRule:
    """The query parameters a route declares: `names`, of which `lists` may repeat (`any_name`: a query
    model that allows extra fields takes any other name too)."""

    names: frozenset[str]
    lists: frozenset[str]
    any_name: bool = False

    @classmethod
    def of(cls, dependant: Dependant) -> QueryRule:
        """The rule of the route whose dependency tree `dependant` is."""
        names: set[str] = set()
        lists: set[str] = set()
        any_name = False
        for field in _query_fields(dependant):
            model = _query_model(field.field_info)
            if model is None:
                field_names = _aliases(field.name, field.alias, field.field_info.validation_alias)
                names.update(field_names)
                if _is_sequence(field.field_info.annotation):
                    lists.update(field_names)
                continue
            any_name = any_name or model.model_config.get("extra") == "allow"
            for name, info in model.model_fields.items():
                field_names = _aliases(name, info.alias, info.validation_alias)
                if model.model_config.get("validate_by_name") or model.model_config.get("populate_by_name"):
                    field_names.add(name)
                names.update(field_names)
                if _is_sequence(info.annotation):
                    lists.update(field_names)
        return cls(frozenset(names), frozenset(lists), any_name)

    def errors(self, query: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """One validation error per parameter of `query` (its items, in order) the route does not take
        (first) or takes once but was sent more often; none when the query follows the rule."""
        counts = Counter(name for name, _ in query)
        unknown = [name for name in counts if name not in self.names and not self.any_name]
        repeated = [(n, c) for n, c in counts.items() if c > 1 and n in self.names and n not in self.lists]
        expected = f"one of {', '.join(sorted(self.names))}" if self.names else "no query parameter"
        return [
            {
                "loc": ("query", name),
                "msg": f"expected {expected}; found one this endpoint does not take",
                "type": "extra_forbidden",
            }
            for name in unknown
        ] + [
            {"loc": ("query", name), "msg": f"expected one value, found {count}", "type": "repeated"}
            for name, count in repeated
        ]


class KnownQuery:
    """The dependency that refuses a query its route does not take (see the module's docstring).

    One per app: it keeps the rule of each route it has served, read once from the route's `Dependant`.
    """

    def __init__(self) -> None:
        self._rules: dict[int, tuple[APIRoute, QueryRule]] = {}  # by id(route); the route keeps its id alive

    def __call__(self, connection: HTTPConnection) -> None:
        """Raise `RequestValidationError` (a 422 problem) naming each parameter the route does not take
        or takes once but was sent more often."""
        route = connection.scope.get("route")
        if not isinstance(route, APIRoute) or getattr(route.endpoint, _ANY_QUERY, False):
            return
        errors = self.rule(route).errors(connection.query_params.multi_items())
        if errors:
            raise RequestValidationError(errors)

    def rule(self, route: APIRoute) -> QueryRule:
        """The rule of `route`, read on its first request."""
        known = self._rules.get(id(route))
        if known is None or known[0] is not route:
            known = self._rules[id(route)] = (route, QueryRule.of(route.dependant))
        return known[1]


def _query_fields(dependant: Dependant) -> Iterator[Any]:
    """The query fields of `dependant` and of every dependency below it (FastAPI's `ModelField`s)."""
    yield from dependant.query_params
    for dependency in dependant.dependencies:
        yield from _query_fields(dependency)


def _query_model(info: Any) -> type[BaseModel] | None:
    """The model of a query model parameter (``Annotated[Model, Query()]``), else None."""
    annotation = info.annotation
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if isinstance(info, Query) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _aliases(name: str, alias: str | None, validation_alias: Any) -> set[str]:
    """The names a parameter is read from: its alias (its name without one), or each of its validation
    aliases."""
    if isinstance(validation_alias, str):
        return {validation_alias}
    if isinstance(validation_alias, AliasChoices):
        return {choice for choice in validation_alias.choices if isinstance(choice, str)}
    return {alias or name}


def _is_sequence(annotation: Any) -> bool:
    """Whether a parameter of this type takes several values (``list[str]``, ``list[str] | None``)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _is_sequence(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return any(_is_sequence(arg) for arg in get_args(annotation))
    candidate = origin if origin is not None else annotation
    return isinstance(candidate, type) and issubclass(candidate, _SEQUENCES) and candidate is not str
