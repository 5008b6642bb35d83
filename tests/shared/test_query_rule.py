"""The rule of query parameters (`textcore.web.query`) on routes of every shape a service may declare,
through a real `service_app`: aliases, lists, parameters of dependencies and of a router's dependencies,
query models, routes added to the app itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

import pytest
from fastapi import APIRouter, Depends, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field

from tests.conftest import QueryPairs, problem
from textcore.settings import ServiceSettings
from textcore.web import service_app


def order(order: Literal["asc", "desc"] = "asc") -> str:
    return order


def region(region: str = "eu") -> str:
    return region


class Search(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(alias="q")
    tags: list[str] = []


def router() -> APIRouter:
    routes = APIRouter(prefix="/v1", dependencies=[Depends(region)])

    @routes.get("/pages")
    def pages(
        sort: Annotated[str, Depends(order)],
        area: Annotated[str, Depends(region)],
        size: Annotated[int, Query(alias="page-size")] = 10,
        tag: Annotated[list[str] | None, Query()] = None,
    ) -> dict[str, object]:
        return {"size": size, "tag": tag, "sort": sort, "region": area}

    @routes.get("/search")
    def search(query: Annotated[Search, Query()]) -> dict[str, object]:
        return {"q": query.text, "tags": query.tags}

    @routes.delete("/pages/{page_id}", status_code=204)
    def delete_page(page_id: int) -> None:
        return None

    return routes


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = service_app(title="t", distribution="textcore", description="d", settings=ServiceSettings())
    app.include_router(router())

    @app.get("/direct")
    def direct() -> dict[str, str]:
        return {"ok": "yes"}

    with TestClient(app) as test_client:
        yield test_client


def errors(client: TestClient, path: str, params: QueryPairs, method: str = "GET") -> list[object]:
    body = problem(client.request(method, path, params=params), 422)
    return [(e["loc"][-1], e["type"]) for e in body["errors"]]


def test_the_parameters_a_route_declares_are_taken_and_a_list_may_repeat(client: TestClient) -> None:
    params: QueryPairs = [("page-size", "5"), ("tag", "a"), ("tag", "b"), ("order", "desc"), ("region", "us")]
    assert client.get("/v1/pages", params=params).json() == {
        "size": 5,
        "tag": ["a", "b"],
        "sort": "desc",
        "region": "us",
    }
    found = client.get("/v1/search", params=[("q", "x"), ("tags", "a"), ("tags", "b")])
    assert found.json() == {"q": "x", "tags": ["a", "b"]}
    assert client.get("/direct").json() == {"ok": "yes"}
    assert client.delete("/v1/pages/3").status_code == 204


def test_any_other_parameter_or_one_sent_twice_is_a_422_naming_it(client: TestClient) -> None:
    # A parameter is named by its alias: `size` is no parameter of /v1/pages, `page-size` is.
    assert errors(client, "/v1/pages", [("size", "5")]) == [("size", "extra_forbidden")]
    assert errors(client, "/v1/pages", [("order", "asc"), ("order", "desc"), ("region", "eu")]) == [
        ("order", "repeated")
    ]
    mixed: QueryPairs = [
        ("tag", "a"),
        ("page-size", "1"),
        ("x", "1"),
        ("tag", "b"),
        ("page-size", "2"),
        ("y", ""),
    ]
    assert errors(client, "/v1/pages", mixed) == [
        ("x", "extra_forbidden"),
        ("y", "extra_forbidden"),
        ("page-size", "repeated"),
    ]
    assert errors(client, "/v1/search", [("q", "a"), ("q", "b")]) == [("q", "repeated")]
    assert errors(client, "/v1/search", [("text", "a")]) == [("text", "extra_forbidden")]
    assert errors(client, "/direct", [("x", "1")]) == [("x", "extra_forbidden")]
    assert errors(client, "/v1/pages/3", [("soft", "true")], "DELETE") == [("soft", "extra_forbidden")]
    # the router's own dependency (`region`) is a parameter of its every route
    assert errors(client, "/v1/pages/3", [("region", "eu"), ("region", "us")], "DELETE") == [
        ("region", "repeated")
    ]


def test_the_message_says_what_the_route_takes(client: TestClient) -> None:
    unknown = problem(client.get("/v1/pages", params={"size": "5"}), 422)["errors"][0]["msg"]
    assert unknown == "expected one of order, page-size, region, tag; found one this endpoint does not take"
    none = problem(client.get("/direct", params={"x": "1"}), 422)["errors"][0]["msg"]
    assert none == "expected no query parameter; found one this endpoint does not take"
    twice = problem(client.get("/v1/pages", params=[("order", "asc")] * 3), 422)["errors"][0]["msg"]
    assert twice == "expected one value, found 3"
