"""barelab.engines.http_common: the Date header and reason phrases."""

import email.utils
import time

from barelab.engines.http_common import http_date, reason_phrase


def test_http_date_is_an_imf_fixdate_of_now():
    value = http_date()
    assert value.endswith(b" GMT") and len(value) == 29
    parsed = email.utils.parsedate_to_datetime(value.decode())
    assert abs(parsed.timestamp() - time.time()) < 2
    assert http_date() is http_date() or http_date() == value  # cached within the second


def test_reason_phrases_come_from_the_registry():
    assert reason_phrase(200) == "OK"
    assert reason_phrase(413) == "Content Too Large" or reason_phrase(413) == "Request Entity Too Large"
    assert reason_phrase(599) == ""
