"""Hostile HTTP requests for every operation of an OpenAPI document, generated from its schemas.

`all_cases` walks the document: for each operation (path and method) it builds the valid request of those
that take a body (`seed`), then requests with one thing wrong at a time (`cases_of`): path parameters that
are very long, non-ASCII, NUL, invalid UTF-8, negative or huge; query parameters of the wrong type, huge,
negative, empty, very long or repeated; JSON bodies that are no JSON, of the wrong type, deeply nested,
missing fields, with unknown fields, and with each field in turn over-long (past its declared bound and at
least 100,000 characters or items), NUL, a lone surrogate, infinite, NaN, huge or of the wrong type; and
valid JSON under the wrong content type. Each `Case` says whether the request may still be valid (a
non-ASCII id, a NUL in a text the schema does not forbid) or can only be refused. `read_backs` are the
valid reads, to check that what was stored can still be read.

Valid values are small (``probe``, the least number, the shortest list) and URLs are on loopback
(``http://127.0.0.1:9/``, where nothing listens), so no case can reach beyond the machine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

LONG = 100_000  # characters of an over-long body string, items of an over-long list or mapping
LONG_PARAMETER = 10_000  # characters of an over-long path or query value
DEEP = 10_000  # levels of nesting
NUL = "pro\x00be"
NON_ASCII = "ünïcødé-✓-日本"
INVALID_UTF8 = "%FF%FEprobe"  # sent percent-encoded as is: the bytes decode to no text


@dataclass(frozen=True)
class Case:
    """One request and whether it may be valid (then 2xx is fine) or can only be refused."""

    method: str
    path: str  # already percent-encoded
    what: str
    params: list[tuple[str, str]] = field(default_factory=list)
    content: bytes | None = None
    content_type: str | None = None
    may_succeed: bool = False

    def describe(self) -> str:
        shown = self.path if len(self.path) <= 80 else f"{self.path[:60]}...({len(self.path)} chars)"
        return f"{self.method} {shown} [{self.what}]"


class Schemas:
    """JSON Schema helpers over one OpenAPI document: resolution, valid baselines, fields to corrupt."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.components: dict[str, Any] = document.get("components", {}).get("schemas", {})

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.components[schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def options(self, schema: dict[str, Any]) -> list[dict[str, Any]]:
        """The alternatives of a schema (``anyOf``/``oneOf``), each resolved."""
        schema = self.resolve(schema)
        alternatives = schema.get("anyOf") or schema.get("oneOf")
        if alternatives is None:
            return [schema]
        return [option for alt in alternatives for option in self.options(alt)]

    def nullable(self, schema: dict[str, Any]) -> bool:
        return any(option.get("type") == "null" for option in self.options(schema))

    def value_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The first alternative that is not null."""
        return next((o for o in self.options(schema) if o.get("type") != "null"), self.resolve(schema))

    def kind(self, schema: dict[str, Any]) -> str:
        """``string``, ``integer``, ``number``, ``boolean``, ``array``, ``model`` (properties),
        ``mapping`` (free keys) or ``any``."""
        schema = self.value_schema(schema)
        if "properties" in schema:
            return "model"
        kind = schema.get("type", "any")
        if kind == "object":
            return "mapping"
        return str(kind)

    def baseline(self, schema: dict[str, Any], name: str = "") -> Any:
        """A small valid value: required fields only, the shortest list, URLs on loopback."""
        schema = self.value_schema(schema)
        if "enum" in schema:
            return schema["enum"][0]
        if "const" in schema:
            return schema["const"]
        kind = self.kind(schema)
        if kind == "model":
            required = schema.get("required", [])
            return {key: self.baseline(schema["properties"][key], key) for key in required}
        if kind == "array":
            return [self.baseline(schema["items"], name) for _ in range(schema.get("minItems", 0))]
        if kind == "string":
            return _string_baseline(schema, name)
        if kind == "integer":
            return max(int(schema.get("minimum", 1)), int(schema.get("exclusiveMinimum", 0)) + 1)
        if kind == "number":
            return 0.5
        if kind == "boolean":
            return True
        return {} if kind == "mapping" else "probe"

    def fields(
        self, schema: dict[str, Any], path: tuple[Any, ...] = ()
    ) -> Iterator[tuple[tuple[Any, ...], str]]:
        """Every field under `schema` as (path, kind); a path step is a property name, ``[]`` (the first
        item of a list) or ``{}`` (a value of a mapping)."""
        schema = self.value_schema(schema)
        kind = self.kind(schema)
        if path:
            yield path, kind
        if kind == "model":
            for key, sub in schema["properties"].items():
                yield from self.fields(sub, (*path, key))
        elif kind == "array":
            yield from self.fields(schema["items"], (*path, "[]"))
        elif kind == "mapping" and isinstance(schema.get("additionalProperties"), dict):
            yield from self.fields(schema["additionalProperties"], (*path, "{}"))

    def at(self, schema: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
        """The schema of the field at `path`."""
        for step in path:
            schema = self.value_schema(schema)
            if step == "[]":
                schema = schema["items"]
            elif step == "{}":
                schema = schema["additionalProperties"]
            else:
                schema = schema["properties"][step]
        return self.value_schema(schema)

    def put(self, schema: dict[str, Any], value: Any, path: tuple[Any, ...], leaf: Any) -> Any:
        """`value` (valid for `schema`) with the field at `path` set to `leaf`, creating what lies between."""
        if not path:
            return leaf
        schema = self.value_schema(schema)
        step, rest = path[0], path[1:]
        if step == "[]":
            items = list(value) if isinstance(value, list) and value else [self.baseline(schema["items"])]
            items[0] = self.put(schema["items"], items[0], rest, leaf)
            return items
        mapping = dict(value) if isinstance(value, dict) else {}
        if step == "{}":
            sub, key = schema["additionalProperties"], "probe"
        else:
            sub, key = schema["properties"][step], step
        current = mapping[key] if key in mapping else self.baseline(sub, key)
        mapping[key] = self.put(sub, current, rest, leaf)
        return mapping


def _string_baseline(schema: dict[str, Any], name: str) -> str:
    if schema.get("format") == "date-time":
        return "2024-01-02T03:04:05Z"
    if "url" in name:
        return "http://127.0.0.1:9/probe"  # loopback, where nothing listens on port 9 (discard)
    for candidate in ("probe", "probe-1", "a", "1"):
        value = candidate.ljust(schema.get("minLength", 0), "e")
        if "pattern" not in schema or re.search(schema["pattern"], value):
            return value
    return "probe"


class Raw:
    """JSON text put as is into a body (``NaN``, ``1e309``, deep nesting), which `json.dumps` cannot write."""

    def __init__(self, text: str) -> None:
        self.text = text


def dumps(value: Any) -> bytes:
    """JSON of `value`, with `Raw` pieces written as they are."""
    raws: dict[str, str] = {}

    def mark(item: Any) -> Any:
        if isinstance(item, Raw):
            token = f"__raw_{len(raws)}__"
            raws[token] = item.text
            return token
        if isinstance(item, dict):
            return {key: mark(sub) for key, sub in item.items()}
        if isinstance(item, list):
            return [mark(sub) for sub in item]
        return item

    text = json.dumps(mark(value))
    for token, raw in raws.items():
        text = text.replace(json.dumps(token), raw)
    return text.encode()


def _too_long(schema: dict[str, Any]) -> str:
    return "x" * max(LONG, int(schema.get("maxLength", 0)) + 1)


def _too_many(schema: dict[str, Any]) -> int:
    return max(LONG, int(schema.get("maxItems", schema.get("maxProperties", 0))) + 1)


def field_values(schemas: Schemas, schema: dict[str, Any]) -> Iterator[tuple[str, Any, bool]]:
    """Hostile values for a field: (what, value, may the request still be valid)."""
    kind = schemas.kind(schema)
    if kind == "string":
        yield f"string of {len(_too_long(schema)):,} chars", _too_long(schema), False
        yield "NUL character", NUL, True
        yield "lone surrogate", Raw('"pro\\ud800be"'), True  # valid JSON, no UTF-8 can hold it
    if schema.get("format") == "date-time":
        yield "year 1", "0001-01-01T00:00:00Z", True
        yield "year 9999", "9999-12-31T23:59:59Z", True
        yield "no time zone", "2024-01-02T03:04:05", True
        yield "Unix seconds 10**30", 10**30, False
    if kind in {"integer", "number"}:
        # Past any database integer; a float that large is finite, wrong only where the schema bounds it.
        yield "10**30", 10**30, kind == "number" and "maximum" not in schema
        yield "-10**30", -(10**30), kind == "number" and "minimum" not in schema
        yield "1e309", Raw("1e309"), False
        yield "NaN", Raw("NaN"), False
        yield "-Infinity", Raw("-Infinity"), False
    if kind == "array":
        count = _too_many(schema)
        element = schemas.baseline(schema["items"])
        yield f"list of {count:,} items", [element] * count, False
    if kind == "mapping":
        count = _too_many(schema)
        sub = schema.get("additionalProperties")
        value = schemas.baseline(sub) if isinstance(sub, dict) else 1
        yield f"mapping of {count:,} entries", {f"k{i}": value for i in range(count)}, False
    if kind != "string":
        yield "a string instead", "probe", False
    if kind in {"string", "integer", "number", "boolean"}:
        yield "an object instead", {"probe": 1}, False


def deep(levels: int, closed: bool) -> bytes:
    return ("[" * levels + ("]" * levels if closed else "")).encode()


def body_cases(schemas: Schemas, method: str, path: str, body: dict[str, Any]) -> Iterator[Case]:
    """Hostile JSON bodies for an operation, the rest of its request valid."""
    content = body["content"]
    media = "application/json" if "application/json" in content else next(iter(content))
    schema = content[media]["schema"]
    base = schemas.baseline(schema)
    required = body.get("required", False)

    def case(what: str, raw: bytes, may: bool = False, content_type: str = "application/json") -> Case:
        return Case(method, path, what, content=raw, content_type=content_type, may_succeed=may)

    yield case("not JSON", b"{not json")
    yield case("empty body", b"", may=not required)
    yield case("truncated JSON", dumps(base)[:-1] or b"{")
    for what, value in (("a list", []), ("a string", "probe"), ("a number", 42), ("true", True)):
        yield case(f"JSON {what} instead of an object", dumps(value))
    yield case("JSON null", b"null", may=not required or schemas.nullable(schema))
    yield case(f"{DEEP:,} nested lists, unclosed", deep(DEEP, closed=False))
    yield case(f"{DEEP:,} nested lists", deep(DEEP, closed=True))
    yield case(f"{DEEP:,} nested objects", ('{"a":' * DEEP + "1" + "}" * DEEP).encode())
    if schemas.kind(schema) == "model":
        model = schemas.value_schema(schema)
        yield case("{} (required fields missing)", b"{}", may=not model.get("required"))
        yield case("an unknown field", dumps({**base, "unknown_field": 1}))
        for field_path, _kind in schemas.fields(schema):
            leaf_schema = schemas.at(schema, field_path)
            name = ".".join(str(step) for step in field_path)
            for what, value, may in field_values(schemas, leaf_schema):
                yield case(f"{name}: {what}", dumps(schemas.put(schema, base, field_path, value)), may=may)
            if "[]" not in field_path and "{}" not in field_path:
                yield case(f"{name}: null", dumps(schemas.put(schema, base, field_path, None)), may=True)
    valid = dumps(base)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        yield case(f"valid JSON as {content_type}", valid, content_type=content_type)


def parameter_values(schemas: Schemas, schema: dict[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """Hostile values of a path or query parameter: (what, value, may the request still be valid)."""
    kinds = {schemas.kind(option) for option in schemas.options(schema) if option.get("type") != "null"}
    numeric = bool(kinds & {"integer", "number"}) and "string" not in kinds
    formats = {o.get("format") for o in schemas.options(schema)}
    minimum = min((o.get("minimum", 0) for o in schemas.options(schema) if "minimum" in o), default=None)
    yield f"{LONG_PARAMETER:,} chars", "x" * LONG_PARAMETER, False
    yield "non-ASCII", NON_ASCII, not numeric
    yield "NUL", "\x00", not numeric
    yield "invalid UTF-8", INVALID_UTF8, not numeric  # servers decode it with replacement characters
    yield "10**30", str(10**30), not numeric
    negative_allowed = minimum is not None and minimum < 0
    yield (
        "-1",
        "-1",
        not numeric or negative_allowed,
    )  # an id, or a time in Unix seconds (1969-12-31T23:59:59Z)
    if numeric or kinds & {"boolean"} or "date-time" in formats:
        yield "wrong type", "abc", False
    if numeric:
        yield "1.5", "1.5", "number" in kinds
        yield "NaN", "NaN", False
    if "date-time" in formats:
        yield "naive time", "2024-01-02T03:04:05", True
        yield "year 99999", "99999-01-01T00:00:00Z", False


@dataclass
class Operation:
    method: str
    template: str
    parameters: list[dict[str, Any]]
    body: dict[str, Any] | None


def operations(document: dict[str, Any]) -> Iterator[Operation]:
    for template, methods in document["paths"].items():
        for method, operation in methods.items():
            yield Operation(
                method.upper(), template, operation.get("parameters", []), operation.get("requestBody")
            )


def query_value(schemas: Schemas, param: dict[str, Any]) -> str:
    """A valid query parameter (one value of a list)."""
    schema = schemas.value_schema(param["schema"])
    if schemas.kind(schema) == "array":
        schema = schema["items"]
    return str(schemas.baseline(schema, param["name"]))


def path_value(schemas: Schemas, param: dict[str, Any]) -> str:
    """A valid path parameter, named after it so that different resources get different ids."""
    schema = schemas.value_schema(param["schema"])
    named = f"probe-{param['name'].replace('_', '-')}"
    if schemas.kind(schema) == "string" and re.search(schema.get("pattern", ""), named):
        return named
    return str(schemas.baseline(schema, param["name"]))


def seed(schemas: Schemas, operation: Operation) -> Case | None:
    """The valid request of an operation that takes a body and may store it (what the hostile cases of
    other operations find stored: an item that events can refer to, a source to change)."""
    if operation.body is None or operation.method not in {"POST", "PUT", "PATCH"}:
        return None
    path = operation.template
    for param in operation.parameters:
        if param["in"] == "path":
            path = path.replace("{" + param["name"] + "}", quote(path_value(schemas, param), safe=""))
    body = dumps(schemas.baseline(next(iter(operation.body["content"].values()))["schema"]))
    return Case(
        operation.method, path, "valid", content=body, content_type="application/json", may_succeed=True
    )


def cases_of(schemas: Schemas, operation: Operation) -> Iterator[Case]:
    """Every hostile request of one operation: path, query and body, one thing wrong at a time."""
    path_params = [p for p in operation.parameters if p["in"] == "path"]
    query_params = [p for p in operation.parameters if p["in"] == "query"]

    def path_with(values: dict[str, str]) -> str:
        path = operation.template
        for param in path_params:
            value = values.get(param["name"], path_value(schemas, param))
            encoded = value if value == INVALID_UTF8 else quote(value, safe="")
            path = path.replace("{" + param["name"] + "}", encoded)
        return path

    required_query = [(p["name"], query_value(schemas, p)) for p in query_params if p.get("required")]
    valid_body = b""
    if operation.body is not None:
        content = operation.body["content"]
        valid_body = dumps(schemas.baseline(next(iter(content.values()))["schema"]))
    body_type = "application/json" if operation.body is not None else None

    for param in path_params:
        for what, value, may in parameter_values(schemas, param["schema"]):
            yield Case(
                operation.method,
                path_with({param["name"]: value}),
                f"path {param['name']}: {what}",
                params=required_query,
                content=valid_body or None,
                content_type=body_type,
                may_succeed=may,
            )
    for param in query_params:
        name = param["name"]
        others = [(n, v) for n, v in required_query if n != name]
        baseline = query_value(schemas, param)
        hostile = [*parameter_values(schemas, param["schema"]), ("empty", "", True)]
        for what, value, may in hostile:
            params = [*others, (name, value)]
            path = path_with({})
            if value == INVALID_UTF8:  # written into the URL as is, not encoded again
                path, params = f"{path}?{urlencode(others)}&{name}={value}", []
            yield Case(
                operation.method,
                path,
                f"query {name}: {what}",
                params=params,
                content=valid_body or None,
                content_type=body_type,
                may_succeed=may,
            )
        yield Case(
            operation.method,
            path_with({}),
            f"query {name}: repeated",
            params=[*others, (name, baseline)] * 2,
            content=valid_body or None,
            content_type=body_type,
            may_succeed=True,
        )
    if operation.body is not None:
        yield from body_cases(schemas, operation.method, path_with({}), operation.body)


def read_backs(document: dict[str, Any]) -> list[Case]:
    """Every read with valid parameters, one optional query parameter at a time: what was stored must
    still be readable."""
    schemas = Schemas(document)
    reads = []
    for operation in operations(document):
        if operation.method != "GET":
            continue
        path = operation.template
        for param in operation.parameters:
            if param["in"] == "path":
                path = path.replace("{" + param["name"] + "}", quote(path_value(schemas, param), safe=""))
        query = [(p["name"], query_value(schemas, p)) for p in operation.parameters if p["in"] == "query"]
        required = [p["name"] for p in operation.parameters if p["in"] == "query" and p.get("required")]
        for extra in [None, *query]:
            params = [(n, v) for n, v in query if n in required or (n, v) == extra]
            reads.append(Case("GET", path, f"read back with {params}", params=params, may_succeed=True))
    return reads


def all_cases(document: dict[str, Any]) -> tuple[list[Case], list[Case]]:
    """The valid requests that store something, then every hostile request."""
    schemas = Schemas(document)
    seeds = [case for operation in operations(document) if (case := seed(schemas, operation)) is not None]
    hostile = [case for operation in operations(document) for case in cases_of(schemas, operation)]
    return seeds, hostile
