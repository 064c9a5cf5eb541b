"""The HTTP API as an OpenAPI 3.1 document, generated from the route table and its models.

Every schema is pydantic's, for the model a request is read as or an answer is built from:
request bodies and parameters as they are validated, answers as they are serialised. Query,
path and header parameters are the fields of their route's parameter models. An error
answer is the one error shape (`ErrorAnswer`), narrowed to the codes the route may give.
The sockets' GETs are left to the AsyncAPI document (`asyncapi.py`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import core_schema

from orderengine.answers import ErrorAnswer

if TYPE_CHECKING:
    from orderengine.routes import Reply, Route

REF = "#/components/schemas/{model}"
SchemaKey = tuple[Any, JsonSchemaMode]

DESCRIPTION = """\
A DEX order execution engine: submit a swap order, and follow it on its WebSocket as it is
routed to the venue that pays most, built, submitted and confirmed.

- **Amounts and prices** are exact decimal strings on the wire (`"1.5"`); a request may also
  give them as JSON numbers.
- **Errors** all have one shape, `{"error": {"code", "message", "details"}}`; a refused
  request creates nothing. A path the engine does not serve is a 404 `not_found`, a method a
  path does not take a 405 `method_not_allowed`, whose `Allow` each path's `options`
  operation gives.
- **Browsers**: every path here answers a CORS preflight (`OPTIONS` with
  `Access-Control-Request-Method`) from an origin in `ORDERENGINE_CORS_ORIGINS`; any other
  origin's is a 403.
- **Query parameters**: a route takes the ones it lists, and no other: any other (a
  misspelled `limit` or `cursor`, say) is a 422 `unknown_parameter` whose `details` names
  each. The sockets' handshakes ignore other parameters (see the AsyncAPI document).
- **Retries**: send an `Idempotency-Key` with a POST to make its retries safe.
- **Keys**: while the engine has API keys in force, every `/api/...` route but this
  description needs `Authorization: Bearer KEY`.
- **The streams** (an order's: `GET /api/orders/execute` upgraded to a WebSocket, an order
  sent as a socket's first message, a POST that upgrades; and every order's, `GET
  /api/events`) are described by the AsyncAPI document, `/api/asyncapi.json`.
"""

HEADERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Location": ("The order's URL.", {"type": "string", "format": "uri-reference"}),
    "Retry-After": ("Seconds to wait before trying again.", {"type": "integer", "minimum": 0}),
    "WWW-Authenticate": ("How to authenticate: `Bearer`, as RFC 6750.", {"type": "string"}),
    "Allow": ("The methods the path takes.", {"type": "string"}),
    "Access-Control-Allow-Origin": ("The origin asking, allowed.", {"type": "string"}),
    "Access-Control-Allow-Methods": ("The methods its pages may send.", {"type": "string"}),
    "Access-Control-Allow-Headers": ("The headers its pages may send.", {"type": "string"}),
    "Access-Control-Max-Age": (
        "Seconds the browser may keep this answer.",
        {"type": "integer", "minimum": 0},
    ),
}
"""The answer headers a route's reply may name: their descriptions and schemas."""

BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": (
        "An API key, as `Authorization: Bearer KEY`. Required on every `/api/...` route but "
        "the API's own description while the engine has keys in force "
        "(`ORDERENGINE_API_KEYS`, `ORDERENGINE_API_KEYS_FILE`, or keys created with "
        "`python -m orderengine keys create NAME`); an engine without keys needs none."
    ),
}


class WireSchema(GenerateJsonSchema):
    """pydantic's schemas, as the wire has them: no per-field titles, and honest `required`.

    An answer leaves off only what defaults to None (an event's details drop their nulls),
    so in serialisation a field is required unless its default is None. A model is described
    by its docstring's first paragraph: what follows is for the engine's developers.
    """

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        described = super().model_schema(schema)
        if "description" in described:
            described["description"] = described["description"].split("\n\n")[0]
        return described

    def field_is_required(self, field: Any, total: bool) -> bool:
        if self.mode == "serialization":
            inner = field["schema"]
            return inner["type"] != "default" or inner.get("default") is not None
        return super().field_is_required(field, total)


def schemas(
    wanted: Iterable[SchemaKey],
) -> tuple[dict[SchemaKey, JsonSchemaValue], dict[str, JsonSchemaValue]]:
    """The schema of each (type, mode) wanted, and the definitions they refer to."""
    inputs = [(key, key[1], TypeAdapter(key[0])) for key in dict.fromkeys(wanted)]
    by_key, top = TypeAdapter.json_schemas(inputs, ref_template=REF, schema_generator=WireSchema)
    return {key: by_key[key, key[1]] for key, _, _ in inputs}, top.get("$defs", {})


def document(routes: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI document of `routes` (the sockets' GETs aside)."""
    described = [route for route in routes if not route.socket]
    found, definitions = schemas(key for route in described for key in _schema_keys(route))
    paths: dict[str, dict[str, Any]] = {}
    for route in described:
        operation = _operation(route, found, definitions)
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    for name in _parameter_models(described):
        if f'"{REF.format(model=name)}"' not in json.dumps([paths, definitions]):
            definitions.pop(name, None)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "orderengine",
            "version": version("orderengine"),
            "description": DESCRIPTION,
        },
        "tags": [{"name": tag} for tag in dict.fromkeys(route.tag for route in described)],
        "paths": paths,
        "components": {"schemas": definitions, "securitySchemes": {"bearerAuth": BEARER}},
    }


def _schema_keys(route: Route) -> list[SchemaKey]:
    keys: list[SchemaKey] = [
        (model, "validation")
        for model in (route.body, route.query, route.path_parameters, route.headers)
        if model is not None
    ]
    for reply in route.answers():
        if reply.body is not None:
            keys.append((reply.body, "serialization"))
        if reply.errors:
            keys.append((ErrorAnswer, "serialization"))
        if reply.details is not None:
            keys.append((reply.details, "serialization"))
    return keys


def _parameter_models(routes: Sequence[Route]) -> set[str]:
    models = (
        model
        for route in routes
        for model in (route.query, route.path_parameters, route.headers)
        if model is not None
    )
    return {model.__name__ for model in models}


def _operation(
    route: Route, found: dict[SchemaKey, JsonSchemaValue], definitions: dict[str, Any]
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "description": route.description,
        "tags": [route.tag],
        "security": _security(route),
    }
    parameters = [
        parameter
        for where, model in (
            ("path", route.path_parameters),
            ("query", route.query),
            ("header", route.headers),
        )
        if model is not None
        for parameter in _parameters(where, found[model, "validation"], definitions)
    ]
    for parameter in parameters:
        if parameter["in"] == "query" and parameter["name"] in route.query_example:
            parameter["example"] = route.query_example[parameter["name"]]
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        body: dict[str, Any] = {"schema": found[route.body, "validation"]}
        if route.examples:
            body["examples"] = {name: {"value": value} for name, value in route.examples.items()}
        operation["requestBody"] = {"required": True, "content": {"application/json": body}}
    operation["responses"] = {
        str(reply.status): _response(reply, found) for reply in route.answers()
    }
    if route.allow:
        allow = operation["responses"]["405"]["headers"]["Allow"]
        allow["schema"] = {**allow["schema"], "const": ",".join(sorted(route.allow))}
    return operation


def _security(route: Route) -> list[dict[str, list[str]]]:
    """What the route asks of its caller: none, or a key.

    The OPTIONS of a path behind a key takes either: a browser's preflight carries no key
    and is answered without one; any other OPTIONS is a 401 without one.
    """
    if route.public:
        return []
    if route.method == "OPTIONS":
        return [{}, {"bearerAuth": []}]
    return [{"bearerAuth": []}]


def _parameters(
    where: str, schema: JsonSchemaValue, definitions: dict[str, Any]
) -> list[dict[str, Any]]:
    """Each field of a parameter model as a parameter `where` (path, query or header)."""
    model = _resolved(schema, definitions)
    required = set(model.get("required", ()))
    parameters = []
    for name, field in model["properties"].items():
        schema = parameter_schema(field)
        description = field.get("description")
        parameter: dict[str, Any] = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": schema,
        }
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def parameter_schema(field: JsonSchemaValue) -> JsonSchemaValue:
    """A parameter model's field as a parameter's schema: left out, it is absent, never null."""
    schema = {key: value for key, value in field.items() if key != "description"}
    if schema.get("default", ...) is None:
        del schema["default"]
    choices = [choice for choice in schema.pop("anyOf", ()) if choice != {"type": "null"}]
    if len(choices) == 1:
        schema.update(choices[0])
    elif choices:
        schema["anyOf"] = choices
    return schema


def _resolved(schema: JsonSchemaValue, definitions: dict[str, Any]) -> JsonSchemaValue:
    """The definition a model's schema refers to (pydantic refers to every model)."""
    resolved: JsonSchemaValue = definitions[schema["$ref"].removeprefix(REF.format(model=""))]
    return resolved


def _response(reply: Reply, found: dict[SchemaKey, JsonSchemaValue]) -> dict[str, Any]:
    response: dict[str, Any] = {"description": reply.description}
    shapes = []
    if reply.body is not None:
        shapes.append(found[reply.body, "serialization"])
    if reply.errors:
        shapes.append(_error_schema(reply, found))
    if shapes:
        choices = [choice for shape in shapes for choice in _choices(shape)]
        schema = choices[0] if len(choices) == 1 else {"anyOf": choices}
        response["content"] = {media: {"schema": schema} for media in reply.media_types}
    if reply.headers:
        response["headers"] = {
            name: {"description": HEADERS[name][0], "schema": HEADERS[name][1]}
            for name in reply.headers
        }
    return response


def _choices(schema: JsonSchemaValue) -> list[JsonSchemaValue]:
    """The schemas `schema` is one of: its `anyOf`'s, when that is all it says."""
    return list(schema["anyOf"]) if set(schema) == {"anyOf"} else [schema]


def _error_schema(reply: Reply, found: dict[SchemaKey, JsonSchemaValue]) -> JsonSchemaValue:
    """The error shape, with the codes this answer may carry (and its details' type)."""
    narrowed: dict[str, Any] = {"code": {"enum": list(reply.errors)}}
    if reply.details is not None:
        narrowed["details"] = found[reply.details, "serialization"]
    return {
        "allOf": [
            found[ErrorAnswer, "serialization"],
            {"properties": {"error": {"properties": narrowed}}},
        ]
    }
