"""Logs of ``ddns serve``: text or JSON lines (log.format) at log.level, and never a secret in them."""
from __future__ import annotations

import io
import json
import logging
import urllib.parse

from conftest import Instance, http
from ddns import config as configmod, logs

ZONE = "dyn.example.test"
FQDN = f"logs.{ZONE}"


def json_lines(text: str) -> list[dict]:
    """Every line of TEXT as a JSON object (a line that is not one fails the test)."""
    entries = []
    for line in text.splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "message"} <= entry.keys(), line
        entries.append(entry)
    return entries


def test_json_logs_of_a_running_service_are_one_object_per_line_without_secrets(serve, instance: Instance):
    r = serve({"log.format": "json", "log.level": "DEBUG"})
    secret = instance.add_host(FQDN)
    wrong = "Wr0ng-s3cret-" + secret[:6]
    assert r.update(FQDN, secret, "myip=192.0.2.60") == (200, "good 192.0.2.60\n")
    assert r.update(FQDN, wrong) == (401, "badauth\n")
    assert r.update("nohost." + ZONE, wrong, "password=" + wrong) == (401, "badauth\n")  # some clients send it so
    form = urllib.parse.urlencode({"username": "admin", "password": wrong}).encode()
    status, _, _ = http(r.url + "/login", method="POST", data=form,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status in (400, 403)  # no CSRF token: refused, the password never looked at
    text = r.log.getvalue()
    entries = json_lines(text)
    assert any(e["logger"] == "ddns.serve" and "serving on" in e["message"] for e in entries)
    assert all(e["time"].endswith("Z") and e["level"] in logs.LEVELS for e in entries)
    assert secret not in text and wrong not in text


def record(message: str = "hello", **extra) -> logging.LogRecord:
    logger = logging.getLogger("ddns.test")
    return logger.makeRecord(logger.name, logging.WARNING, __file__, 1, message, (), None, extra=extra)


def test_a_json_line_holds_the_extra_fields_but_none_named_like_a_secret():
    line = logs.JsonFormatter().format(record("update %s", zone=ZONE, client="192.0.2.1", secret="s3", password="p4",
                                              api_token="t5", Authorization="Basic x", cookie_value="c6",
                                              when=object()))
    entry = json.loads(line)
    assert entry["logger"] == "ddns.test" and entry["level"] == "WARNING" and entry["message"] == "update %s"
    assert entry["zone"] == ZONE and entry["client"] == "192.0.2.1" and entry["when"].startswith("<object")
    assert not {"secret", "password", "api_token", "Authorization", "cookie_value"} & entry.keys()
    assert not any(s in line for s in ("s3", "p4", "t5", "Basic x", "c6"))


def test_a_message_with_newlines_and_an_exception_stay_one_line():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger = logging.getLogger("ddns.test")
        rec = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "two\nlines", (), __import__("sys").exc_info())
    line = logs.JsonFormatter().format(rec)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "two\nlines" and "RuntimeError: boom" in entry["exception"]


def test_configure_sends_records_at_the_level_and_undoes_itself():
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    stream = io.StringIO()
    undo = logs.configure(configmod.load(None, environ={}, overrides={"log.format": "json", "log.level": "warning"}),
                          stream)
    try:
        logging.getLogger("ddns.test").info("not this")
        logging.getLogger("ddns.test").warning("this %s", "one")
    finally:
        undo()
    logging.getLogger("ddns.test").warning("after")
    assert [e["message"] for e in json_lines(stream.getvalue())] == ["this one"]
    assert root.level == level and root.handlers == handlers


def test_text_lines_are_as_before():
    stream = io.StringIO()
    undo = logs.configure(configmod.load(None, environ={}), stream)
    try:
        logging.getLogger("ddns.test").info("plain %d", 1)
    finally:
        undo()
    assert stream.getvalue().endswith(" INFO ddns.test: plain 1\n")
