"""How the gateway logs: real records through the real handler into a string."""

import io
import json
import logging
import re
import threading

import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Response

from gateway import logs

log = logging.getLogger("gateway.test_logs")
GENERATED_ID = re.compile(r"[0-9a-f]{16}")


@pytest.fixture
def output():
    """A string to configure the root logger onto (conftest's root_logging_restored puts the set-up back)."""
    return io.StringIO()


def json_lines(output):
    return [json.loads(line) for line in output.getvalue().splitlines()]


def logging_app(environ, start_response):
    log.info("handling %s", environ["PATH_INFO"])
    return Response(environ["gateway.request_id"])(environ, start_response)


def test_json_lines_carry_the_id_of_the_request_they_were_logged_in(output):
    logs.configure("json", stream=output)
    response = Client(logs.RequestIds(logging_app)).get("/api/v2/x", headers={"X-Request-Id": "client-42:a.b_c"})
    log.info("after the request")

    assert response.headers["X-Request-Id"] == "client-42:a.b_c"
    during, after = json_lines(output)
    assert during["request_id"] == "client-42:a.b_c"
    assert during["message"] == "handling /api/v2/x"
    assert during["level"] == "INFO" and during["logger"] == "gateway.test_logs"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", during["time"])
    assert "exception" not in during
    assert after["request_id"] == "-" and logs.current_request_id() == "-"


def test_without_an_incoming_id_one_is_generated_and_used_throughout(output):
    logs.configure("json", stream=output)
    response = Client(logs.RequestIds(logging_app)).get("/")

    generated = response.headers["X-Request-Id"]
    assert GENERATED_ID.fullmatch(generated)
    assert response.get_data(as_text=True) == generated, "environ['gateway.request_id'] is the same id"
    assert json_lines(output)[0]["request_id"] == generated


@pytest.mark.parametrize("incoming", ["abc\n", "abc\r\nX-Injected: 1", "x" * 200, "a b", "", 'quote"d'])
def test_an_unsafe_incoming_id_is_replaced(output, incoming):
    logs.configure("json", stream=output)
    # Werkzeug's client refuses newlines in headers; a raw server does not.
    response = Client(logs.RequestIds(logging_app)).get("/", environ_overrides={"HTTP_X_REQUEST_ID": incoming})

    assert GENERATED_ID.fullmatch(response.headers["X-Request-Id"])
    assert json_lines(output)[0]["request_id"] == response.headers["X-Request-Id"]


def test_the_response_carries_one_id_even_when_the_app_set_its_own(output):
    def app(environ, start_response):
        start_response("200 OK", [("X-Request-Id", "from-the-app"), ("Content-Type", "text/plain")])
        return [b"ok"]

    response = Client(logs.RequestIds(app)).get("/", headers={"X-Request-Id": "from-the-client"})
    assert response.headers.getlist("X-Request-Id") == ["from-the-client"]
    assert response.headers["Content-Type"] == "text/plain"


def test_the_id_is_reset_when_the_app_raises(output):
    logs.configure("json", stream=output)

    def failing_app(environ, start_response):
        log.error("about to fail")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        Client(logs.RequestIds(failing_app)).get("/", headers={"X-Request-Id": "doomed"})
    log.info("after the failure")

    assert [line["request_id"] for line in json_lines(output)] == ["doomed", "-"]


def test_concurrent_requests_each_log_their_own_id(output):
    logs.configure("json", stream=output)
    both_inside = threading.Barrier(2, timeout=5)

    def app(environ, start_response):
        both_inside.wait()  # both requests are in flight before either logs
        return logging_app(environ, start_response)

    middleware = logs.RequestIds(app)
    threads = [
        threading.Thread(target=Client(middleware).get, args=(f"/{name}",), kwargs={"headers": {"X-Request-Id": name}})
        for name in ("first", "second")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {(line["message"], line["request_id"]) for line in json_lines(output)} == {
        ("handling /first", "first"),
        ("handling /second", "second"),
    }


def test_json_keeps_non_ascii_and_adds_the_traceback_on_one_line(output):
    logs.configure("json", stream=output)
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        log.exception("Zürich: %s\nsecond line", "é")

    assert len(output.getvalue().splitlines()) == 1
    assert "Zürich" in output.getvalue(), "ensure_ascii=False"
    (line,) = json_lines(output)
    assert line["message"] == "Zürich: é\nsecond line"
    assert line["level"] == "ERROR"
    assert line["exception"].startswith("Traceback") and "ValueError: bad\nvalue" in line["exception"]


def test_text_keeps_one_record_per_line(output):
    logs.configure("text", stream=output)
    log.warning("first\nsecond\r\nthird")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")

    lines = output.getvalue().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING gateway\.test_logs \[-\] first\\nsecond\\r\\nthird", lines[0]
    )
    assert " ERROR gateway.test_logs [-] failed\\nTraceback" in lines[1] and lines[1].endswith("ValueError: boom")


def test_text_lines_carry_each_record_s_own_time_across_seconds(output):
    logs.configure("text", stream=output)
    stamps = [1764650000.25, 1764650000.75, 1764650001.5, 1764650000.125]
    for created in stamps:
        record = log.makeRecord(log.name, logging.INFO, __file__, 0, "at %s", (created,), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        log.handle(record)

    plain = logging.Formatter()
    expected = [plain.formatTime(logging.makeLogRecord({"created": c, "msecs": (c - int(c)) * 1000})) for c in stamps]
    assert [line.split(" INFO ")[0] for line in output.getvalue().splitlines()] == expected


def test_configure_replaces_handlers_and_sets_levels(output):
    logs.configure("text", stream=io.StringIO())
    logs.configure("json", level="warning", stream=output)
    log.info("below the level")
    log.warning("at the level")

    assert [line["message"] for line in json_lines(output)] == ["at the level"]
    assert len(logging.getLogger().handlers) == 1
    assert logging.getLogger("spyne").getEffectiveLevel() == logging.CRITICAL
    assert logging.getLogger("spyne.server._base").getEffectiveLevel() == logging.CRITICAL


def test_configure_refuses_an_unknown_format(output):
    with pytest.raises(ValueError, match="text, json"):
        logs.configure("xml", stream=output)


@pytest.mark.parametrize(
    "body, masked, secret",
    [
        (b"<Password>s3cret</Password>", "<Password>***</Password>", "s3cret"),
        (b"<ns1:Password>s3cret</ns1:Password>", "<ns1:Password>***</ns1:Password>", "s3cret"),
        (b'<v2:SessionToken xsi:type="x">tok-1</v2:SessionToken>', '<v2:SessionToken xsi:type="x">***</v2:SessionToken>', "tok-1"),
        (b"<token>abc</token><Username>alice</Username>", "<token>***</token><Username>alice</Username>", "abc"),
        (b"<Password><![CDATA[a<b]]></Password>", "<Password>***</Password>", "a<b"),
        (b"<password>s3cret</password>", "<password>***</password>", "s3cret"),
        (b"<Password />\n<Other>kept</Other>", "<Password />\\x0a<Other>kept</Other>", None),
        (b'{"username": "alice", "password": "p\\"w"}', '{"username": "alice", "password": "***"}', 'p\\"w'),
        (b'{"Token":"abc","n":1}', '{"Token":"***","n":1}', "abc"),
    ],
)
def test_excerpt_masks_credentials(body, masked, secret):
    shown = logs.excerpt(body)
    assert shown == masked
    assert secret is None or secret not in shown


@pytest.mark.parametrize(
    "body, limit, shown",
    [
        (b"<m:Password>s3cret-and-more</m:Password>", 16, "<m:Password>***… (40 bytes)"),
        (b'{"password": "s3cret-and-more"}', 18, '{"password": "***"… (31 bytes)'),
        (b'{"password": "ab\\"cd"}', 17, '{"password": "***"… (22 bytes)'),
    ],
)
def test_excerpt_masks_a_value_the_cut_leaves_open(body, limit, shown):
    assert logs.excerpt(body, limit) == shown


def test_excerpt_is_bounded_and_one_line():
    body = "é\n\t\x00".encode() + b"x" * 1000
    shown = logs.excerpt(body, limit=10)
    assert shown == "é\\x0a\\x09\\x00xxxxx… (1005 bytes)"
    assert logs.excerpt(b"short") == "short"
    assert logs.excerpt(b"abcde", limit=5) == "abcde"
    assert logs.excerpt(b"abcdef", limit=5) == "abcde… (6 bytes)"
    assert logs.excerpt(b"\xff\xfe") == "\ufffd\ufffd"


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_rate_limited_lets_a_burst_through_then_counts_what_it_drops(output):
    logs.configure("text", stream=output)
    clock = FakeClock()
    limited = logs.RateLimited(log, per_second=2.0, burst=3, clock=clock)

    for number in range(10):
        limited.warning("rejected %d", number)
    assert [line.rsplit("] ", 1)[1] for line in output.getvalue().splitlines()] == [
        "rejected 0",
        "rejected 1",
        "rejected 2",
    ]

    clock.now += 0.25  # half a token: still nothing
    limited.warning("rejected %d", 10)
    clock.now += 0.25  # one token
    limited.info("rejected %d", 11)
    limited.warning("rejected %d", 12)
    assert [line.rsplit("] ", 1)[1] for line in output.getvalue().splitlines()][3:] == [
        "8 similar lines suppressed",
        "rejected 11",
    ]
    assert " INFO " in output.getvalue().splitlines()[3]

    clock.now += 60  # refills to the burst, no more
    for number in range(13, 20):
        limited.warning("rejected %d", number)
    assert [line.rsplit("] ", 1)[1] for line in output.getvalue().splitlines()][5:] == [
        "1 similar lines suppressed",
        "rejected 13",
        "rejected 14",
        "rejected 15",
    ]


def test_rate_limited_spends_no_tokens_on_a_disabled_level(output):
    logs.configure("text", level="WARNING", stream=output)
    limited = logs.RateLimited(log, per_second=1.0, burst=1, clock=FakeClock())
    limited.info("not shown")
    limited.warning("shown")
    assert output.getvalue().splitlines()[0].endswith("] shown")


def test_rate_limited_counts_every_drop_across_threads(output):
    logs.configure("text", stream=output)
    clock = FakeClock()
    limited = logs.RateLimited(log, per_second=1.0, burst=5, clock=clock)

    def flood():
        for _ in range(250):
            limited.warning("rejected")

    threads = [threading.Thread(target=flood) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    clock.now += 1
    limited.warning("rejected")

    lines = output.getvalue().splitlines()
    assert len(lines) == 7
    assert lines[5].endswith("] 1995 similar lines suppressed")
