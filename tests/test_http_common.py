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
    assert reason_phrase(413) == "Content Too Large"      # RFC 9110's name, on every Python
    assert reason_phrase(414) == "URI Too Long"
    assert reason_phrase(422) == "Unprocessable Content"
    assert reason_phrase(599) == ""


def test_refused_transfer_codings_get_the_status_rfc_9112_gives():
    from barelab.engines.http_common import refused_coding_status

    def head(value):
        return b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + value + b"\r\n\r\n"

    assert refused_coding_status(head(b"gzip"))[0] == 400            # §6.3: not final
    assert refused_coding_status(head(b"chunked, gzip"))[0] == 400
    assert refused_coding_status(head(b"chunked, chunked"))[0] == 400  # §6.1: twice
    assert refused_coding_status(head(b"gzip, chunked"))[0] == 501     # unknown coding
    assert refused_coding_status(head(b"GZIP, Chunked"))[0] == 501     # case-insensitive
    two_lines = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert refused_coding_status(two_lines)[0] == 501
