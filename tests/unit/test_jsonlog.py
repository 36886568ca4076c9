import json
import logging

from artsearch.jsonlog import JsonFormatter, request_id_var


def _format(record_extra=None, msg="hello %s", args=("world",)):
    record = logging.LogRecord("artsearch.test", logging.WARNING, __file__, 1, msg, args, None)
    for key, value in (record_extra or {}).items():
        setattr(record, key, value)
    return json.loads(JsonFormatter("encoder").format(record))


def test_log_line_is_json_with_service_level_and_message():
    line = _format()
    assert line["service"] == "encoder"
    assert line["level"] == "warning"
    assert line["msg"] == "hello world"
    assert line["ts"].endswith("Z")


def test_request_id_and_extra_fields_are_included():
    token = request_id_var.set("req-42")
    try:
        line = _format({"images": 3})
    finally:
        request_id_var.reset(token)
    assert line["request_id"] == "req-42"
    assert line["images"] == 3
    assert "request_id" not in _format()
