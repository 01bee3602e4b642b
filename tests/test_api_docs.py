"""docs/openapi.json and docs/asyncapi.json must not drift from the code.

Pure and fast: no server, no network. Routes come from ``server.make_app`` (built with a fake
context), event schemas from ``streaming.events.SCHEMAS``, client-message rules and error codes
from ``streaming/protocol.py``, close codes from ``streaming.closecodes.CloseCode``.
"""

from __future__ import annotations

import inspect
import json
import re
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import tornado.web
import ujson
from tornado.websocket import WebSocketHandler

import handlers
import server
from handlers.base import BaseHandler, NotFoundHandler
from handlers.ws import PortfolioSocket
from streaming import events, protocol
from streaming.closecodes import CloseCode
from streaming.manager import StreamManager
from streaming.memory_broker import MemoryBroker
from streaming.redis_ingest import RedisIngest
from streaming.service import PortfolioService

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HANDLERS_DIR = Path(handlers.__file__).parent

#: Routes that are not part of the API: the SPA, its assets and the JSON 404 catch-all.
NOT_API = {server.NOT_FOUND_PATHS, r"/assets/(.*)", r"/(favicon\.(?:ico|svg))", r"/(.*)"}
#: The component schema documenting each hook event type's ``data``.
COMPONENT_OF: dict[str, str] = {
    events.EventType.POSITION_UPDATE: "PositionUpdate",
    events.EventType.ORDER_UPDATE: "OrderUpdate",
    events.EventType.ACCOUNT_UPDATE: "AccountUpdate",
    events.EventType.TRADE_EXECUTED: "TradeExecuted",
}
HTTP_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
#: A valid ``account_update`` data, for probing the decimal validator.
ACCOUNT = {
    "equity": "100.00",
    "buyingPower": "100.00",
    "cash": "100.00",
    "portfolioValue": "100.00",
    "dayPnl": "0.00",
    "dayPnlPercent": "0.00",
    "timestamp": "2026-11-25T20:15:03.123456Z",
}


@cache
def openapi() -> dict[str, Any]:
    return json.loads((DOCS / "openapi.json").read_text(encoding="utf-8"))


@cache
def asyncapi() -> dict[str, Any]:
    return json.loads((DOCS / "asyncapi.json").read_text(encoding="utf-8"))


def resolve(doc: dict[str, Any], node: Any) -> Any:
    """Follow local ``$ref`` s (``#/a/b``) until a node that is not a reference."""
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local references are used: {ref}"
        node = doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        seen += 1
        assert seen < 20, f"reference loop at {ref}"
    return node


def properties(doc: dict[str, Any], schema: Any) -> dict[str, Any]:
    """Properties of an object schema, merged across ``allOf``."""
    schema = resolve(doc, schema)
    out = dict(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        out.update(properties(doc, part))
    return out


def routes(realtime: bool = True) -> list[tuple[str, type, dict[str, Any]]]:
    """``(pattern, handler class, kwargs)`` of every rule of ``server.make_app``."""
    settings = SimpleNamespace(enable_realtime_portfolio=realtime, max_message_bytes=64 * 1024)
    app = server.make_app(SimpleNamespace(settings=settings), ROOT / "static")  # type: ignore[arg-type]
    out = []
    for rule in app.wildcard_router.rules:
        matcher: Any = rule.matcher  # a PathMatches
        pattern = matcher.regex.pattern
        pattern = pattern[:-1] if pattern.endswith("$") else pattern
        # A path parameter is a regex group in the route, {name} in OpenAPI.
        pattern = pattern.replace("/users/([0-9]{1,18})/", "/users/{userId}/")
        out.append((pattern, rule.target, rule.target_kwargs))
    return out


def api_routes() -> list[tuple[str, type, dict[str, Any]]]:
    return [r for r in routes() if r[0] not in NOT_API]


def implemented_methods(cls: type) -> set[str]:
    """HTTP methods ``cls`` answers (overrides of RequestHandler's 405 stubs)."""
    own = {m for m in HTTP_METHODS if getattr(cls, m) is not getattr(tornado.web.RequestHandler, m)}
    if issubclass(cls, WebSocketHandler):
        own.add("get")  # the upgrade
    return own


def statuses_raised(cls: type) -> set[int]:
    """HTTP error statuses a handler raises: its own ``ApiError`` s and the BaseHandler helpers'."""
    source = inspect.getsource(cls)
    found = {int(s) for s in re.findall(r"ApiError\(\s*(\d{3})", source)}
    for name in set(re.findall(r"self\.(\w+)\(", source)):
        helper = BaseHandler.__dict__.get(name)
        if callable(helper):
            found |= {
                int(s) for s in re.findall(r"ApiError\(\s*(\d{3})", inspect.getsource(helper))
            }
    return found


def walk(node: Any):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def server_messages() -> dict[str, dict[str, Any]]:
    """AsyncAPI messages the server sends on ``/ws/portfolio``, keyed by their message id."""
    doc = asyncapi()
    out = {}
    for op in doc["operations"].values():
        if op["action"] == "send" and resolve(doc, op["channel"])["address"] == "/ws/portfolio":
            for ref in op["messages"]:
                out[ref["$ref"].rsplit("/", 1)[1]] = resolve(doc, ref)
    return out


def client_messages() -> dict[str, dict[str, Any]]:
    doc = asyncapi()
    out = {}
    for op in doc["operations"].values():
        if op["action"] == "receive" and resolve(doc, op["channel"])["address"] == "/ws/portfolio":
            for ref in op["messages"]:
                out[ref["$ref"].rsplit("/", 1)[1]] = resolve(doc, ref)
    return out


def type_const(message: dict[str, Any]) -> str:
    return properties(asyncapi(), message["payload"])["type"]["const"]


def data_schema(message: dict[str, Any]) -> dict[str, Any]:
    return resolve(asyncapi(), properties(asyncapi(), message["payload"])["data"])


# -- the documents themselves -------------------------------------------------------------------
def test_openapi_parses_and_is_3_1() -> None:
    doc = openapi()
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    assert set(doc["components"]["securitySchemes"]) == {"sessionCookie", "internalToken"}
    cookie = doc["components"]["securitySchemes"]["sessionCookie"]
    assert (cookie["type"], cookie["in"], cookie["name"]) == ("apiKey", "cookie", "session")
    bearer = doc["components"]["securitySchemes"]["internalToken"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")


def test_asyncapi_parses_and_is_3_0() -> None:
    doc = asyncapi()
    assert re.fullmatch(r"3\.0\.\d+", doc["asyncapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["defaultContentType"] == "application/json"


@pytest.mark.parametrize("name", ["openapi", "asyncapi"])
def test_every_reference_resolves(name: str) -> None:
    doc = openapi() if name == "openapi" else asyncapi()
    for node in walk(doc):
        if isinstance(node.get("$ref"), str):
            resolve(doc, node)


# -- OpenAPI against server.make_app ------------------------------------------------------------
def test_every_route_has_an_openapi_path_and_back() -> None:
    documented = set(openapi()["paths"])
    routed = {pattern for pattern, _, _ in api_routes()}
    assert routed, "make_app has no API routes?"
    assert routed - documented == set(), "routes missing from docs/openapi.json"
    assert documented - routed == set(), "docs/openapi.json documents paths make_app lacks"


def test_documented_methods_are_the_implemented_ones() -> None:
    for pattern, cls, _ in api_routes():
        ops = {m for m in openapi()["paths"][pattern] if m in HTTP_METHODS}
        assert ops == implemented_methods(cls), pattern


def test_error_statuses_of_each_handler_are_documented() -> None:
    for pattern, cls, _ in api_routes():
        if cls is PortfolioSocket:
            continue
        for method, op in openapi()["paths"][pattern].items():
            if method not in HTTP_METHODS:
                continue
            documented = {int(code) for code in op["responses"]}
            missing = statuses_raised(cls) - documented
            assert not missing, f"{method.upper()} {pattern} can answer {missing}"
            assert any(200 <= c < 300 for c in documented), pattern


def test_websocket_upgrade_responses() -> None:
    op = openapi()["paths"]["/ws/portfolio"]["get"]
    assert {"101", "401", "403", "404"} <= set(op["responses"])
    assert op["security"] == [{"sessionCookie": []}]
    # The 404 is the route's switched-off form; make sure that is still how it is switched off.
    ws_rule = next(r for r in routes(realtime=False) if r[0] == "/ws/portfolio")
    assert ws_rule[1] is NotFoundHandler
    assert "401" in inspect.getsource(PortfolioSocket.get)


def test_portfolio_views_answer_their_key() -> None:
    doc = openapi()
    views = [(p, kw["view"]) for p, _, kw in api_routes() if "view" in kw]
    assert len(views) == 4
    for pattern, view in views:
        schema = doc["paths"][pattern]["get"]["responses"]["200"]["content"]["application/json"]
        assert {view, "userId", "seq", "epoch"} <= set(properties(doc, schema["schema"])), pattern


def test_http_error_codes_match_the_handlers() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in sorted(HANDLERS_DIR.glob("*.py")))
    raised = set(re.findall(r'ApiError\(\s*\d{3},\s*"(\w+)"', source))
    if '"http_error"' in source:
        raised.add("http_error")
    error = openapi()["components"]["schemas"]["Error"]
    assert set(error["properties"]["error"]["properties"]["code"]["enum"]) == raised


def test_admin_stats_fields_are_documented() -> None:
    documented = set(openapi()["components"]["schemas"]["WebSocketStats"]["properties"])
    manager = StreamManager(MemoryBroker())
    keys = set(manager.stats())
    admin = (ROOT / "streaming" / "opstats.py").read_text(encoding="utf-8")
    keys |= set(re.findall(r'stats\["(\w+)"\]', admin))
    keys |= set(re.findall(r'extra_status\["(\w+)"\]', inspect.getsource(server)))
    assert keys - documented == set()
    props = openapi()["components"]["schemas"]["WebSocketStats"]["properties"]
    broker = set(PortfolioService(manager.publisher).status())
    assert broker == set(props["broker"]["properties"])
    fake = SimpleNamespace(broker=None, role="all", ingest=None, _accounts_owned=lambda: [])
    assert set(server.FolioServer._redis_status(fake)) == set(props["redis"]["properties"])  # type: ignore[arg-type]


# -- event schemas ------------------------------------------------------------------------------
def test_schema_table_covers_the_hook_types() -> None:
    assert set(events.SCHEMAS) == set(events.HOOK_TYPES) == set(COMPONENT_OF)


@pytest.mark.parametrize("type_", sorted(COMPONENT_OF))
@pytest.mark.parametrize("name", ["openapi", "asyncapi"])
def test_component_schema_matches_code(name: str, type_: str) -> None:
    doc = openapi() if name == "openapi" else asyncapi()
    schema = doc["components"]["schemas"][COMPONENT_OF[type_]]
    fields = events.SCHEMAS[type_]
    names = {key.rstrip("?") for key in fields}
    required = {key for key in fields if not key.endswith("?")}
    assert set(schema["properties"]) == names
    assert set(schema["required"]) == required
    for key, kind in fields.items():
        prop = resolve(doc, schema["properties"][key.rstrip("?")])
        where = f"{COMPONENT_OF[type_]}.{key.rstrip('?')}"
        if isinstance(kind, tuple):
            assert set(prop["enum"]) == set(kind[1]), where
        elif kind == "bool":
            assert prop["type"] == "boolean", where
        elif kind in ("decimal", "money", "price", "qty", "percent"):
            assert prop["pattern"] == events._PLAIN_DECIMAL.pattern, where
        elif kind == "ts":
            assert prop.get("format") == "date-time", where
        else:
            assert prop["type"] == "string", where


def test_both_documents_share_the_event_schemas() -> None:
    for name in [*COMPONENT_OF.values(), "DecimalString", "Timestamp", "Symbol"]:
        assert openapi()["components"]["schemas"][name] == asyncapi()["components"]["schemas"][name]


def test_decimal_pattern_behaves_like_the_validator() -> None:
    pattern = re.compile(openapi()["components"]["schemas"]["DecimalString"]["pattern"])
    for value in ["-12.50", "0.5", ".5", "+3", "1e3", "1_000", "5.", ".", "NaN", "Infinity", ""]:
        try:
            events.validate_event_data("account_update", {**ACCOUNT, "cash": value})
            accepted = True
        except events.EventValidationError:
            accepted = False
        assert bool(pattern.match(value)) == accepted, value


def test_hook_event_types() -> None:
    hook = openapi()["components"]["schemas"]["HookEvent"]
    assert set(hook["discriminator"]["mapping"]) == set(events.HOOK_TYPES)
    for type_, ref in hook["discriminator"]["mapping"].items():
        variant = resolve(openapi(), {"$ref": ref})
        assert variant["properties"]["type"]["const"] == type_
        data = resolve(openapi(), variant["properties"]["data"])
        assert data is openapi()["components"]["schemas"][COMPONENT_OF[type_]]


def test_examples_are_accepted_by_the_code() -> None:
    doc = asyncapi()
    example = doc["components"]["messages"]["position_update"]["examples"][0]["payload"]
    assert set(example) == set(properties(doc, {"$ref": "#/components/schemas/Envelope"}))
    events.validate_event_data(example["type"], example["data"])
    entry = doc["components"]["messages"]["ingestEntry"]["examples"][0]["payload"]
    body = ujson.loads(entry["event"])
    events.validate_event_data(body["type"], body["data"])
    for ex in doc["components"]["messages"]["subscribe"]["examples"]:
        protocol.parse_client_message(json.dumps(ex["payload"]))


# -- AsyncAPI against the event model and the client protocol -----------------------------------
def test_every_event_type_is_a_server_message() -> None:
    sent = {type_const(m) for m in server_messages().values()}
    assert sent == {t.value for t in events.EventType}


def test_stream_events_are_told_apart() -> None:
    doc = asyncapi()
    stream = {
        type_const(resolve(doc, r)) for r in doc["operations"]["sendStreamEvents"]["messages"]
    }
    assert stream == {t.value for t in events.STREAM_TYPES}
    for message in server_messages().values():
        assert message["x-stream-event"] == (type_const(message) in events.STREAM_TYPES)


def test_envelope_matches_the_code() -> None:
    doc = asyncapi()
    built = events.envelope("pong", "1", {}, seq=0, epoch="e")
    envelope = doc["components"]["schemas"]["Envelope"]
    assert set(envelope["properties"]) == set(built) == set(envelope["required"])


def test_single_type_events_carry_their_component() -> None:
    for type_, name in COMPONENT_OF.items():
        message = asyncapi()["components"]["messages"][type_]
        assert data_schema(message) is asyncapi()["components"]["schemas"][name]


def test_client_messages_match_the_parser() -> None:
    messages = client_messages()
    assert {type_const(m) for m in messages.values()} == set(protocol._TYPES)
    doc = asyncapi()
    channel_enum = doc["components"]["schemas"]["Channel"]["enum"]
    assert set(channel_enum) == {c.value for c in events.Channel}
    subscribe = properties(doc, messages["subscribe"]["payload"])
    assert set(subscribe) == {"type", "channels", "symbols", "lastSeq", "epoch"}
    symbols = next(s for s in subscribe["symbols"]["oneOf"] if s.get("type") == "array")
    assert symbols["maxItems"] == protocol.MAX_SYMBOLS
    assert subscribe["channels"]["minItems"] == 1


def test_protocol_error_codes_are_documented() -> None:
    source = Path(protocol.__file__).read_text(encoding="utf-8")
    codes = set(re.findall(r'ProtocolError\(\s*"(\w+)"', source))
    assert codes, "no ProtocolError codes found: did the parser change shape?"
    ws_source = Path(inspect.getsourcefile(PortfolioSocket) or "").read_text(encoding="utf-8")
    assert '"code": "max_connections"' in ws_source
    codes.add("max_connections")
    codes |= set(re.findall(r'manager\.error\(\s*session,\s*"(\w+)"', ws_source))
    error = asyncapi()["components"]["messages"]["error"]
    assert set(data_schema(error)["properties"]["code"]["enum"]) == codes
    for code in codes:
        assert f"`{code}`" in error["description"], code


def test_status_codes_sent_are_documented() -> None:
    source = Path(inspect.getsourcefile(PortfolioService) or "").read_text(encoding="utf-8")
    sent = set(re.findall(r'broadcast_status\(\s*"(\w+)"', source))
    status = data_schema(asyncapi()["components"]["messages"]["status"])
    assert sent and sent <= set(status["properties"]["code"]["enum"])


def test_notice_codes_and_shape_match_the_manager() -> None:
    """The documented ``notice`` is what the manager builds for both engine states."""
    message = asyncapi()["components"]["messages"]["notice"]
    data = data_schema(message)
    assert set(data["properties"]["code"]["enum"]) == {c.value for c in events.NoticeCode}
    fixed = properties(asyncapi(), message["payload"])
    for up in (False, True):
        built = ujson.loads(StreamManager._engine_notice("1", up).text)
        assert set(built) == set(properties(asyncapi(), {"$ref": "#/components/schemas/Envelope"}))
        assert built["type"] == "notice" and built["type"] not in events.STREAM_TYPES
        assert (built["seq"], built["epoch"]) == (fixed["seq"]["const"], fixed["epoch"]["const"])
        assert set(built["data"]) == set(data["required"]) == set(data["properties"])
        assert built["data"]["code"] in data["properties"]["code"]["enum"]
        assert built["data"]["degraded"] is (not up)
        assert f"`{built['data']['code']}`" in message["description"]
    example = message["examples"][0]["payload"]
    down = ujson.loads(StreamManager._engine_notice("1", False).text)
    assert {k: v for k, v in example.items() if k != "timestamp"} == {
        k: v for k, v in down.items() if k != "timestamp"
    }


def test_close_codes_are_documented() -> None:
    channel = asyncapi()["channels"]["portfolio"]
    table = {entry["code"]: entry for entry in channel["x-close-codes"]}
    assert set(table) == {c.value for c in CloseCode}
    for code in CloseCode:
        assert table[code.value]["name"] == code.name
        assert table[code.value]["reconnect"] == code.reconnect, code.name
        assert f"| {code.value} | {code.name} |" in channel["description"]


def test_redis_ingest_channels_match_the_reader() -> None:
    async def exists(user_id: str) -> bool:
        return True

    reader = RedisIngest("redis://127.0.0.1:1", lambda *a: None, exists)
    channels = asyncapi()["channels"]
    assert channels["ingest"]["address"] == reader.stream
    assert channels["ingest"]["x-consumer-group"] == reader.group
    assert channels["ingestRejected"]["address"] == reader.rejected_stream
    entry = asyncapi()["components"]["messages"]["ingestEntry"]["payload"]
    assert entry["required"] == ["event"]
    rejected = asyncapi()["components"]["messages"]["rejectedEntry"]["payload"]
    source = inspect.getsource(RedisIngest)
    assert '{"id": entry_id, "error": error, "event":' in source
    assert set(rejected["properties"]) == {"id", "error", "event"}
