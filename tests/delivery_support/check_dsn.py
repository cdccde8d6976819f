"""Checks a bounce as delivered to a Maildir: stdin is the Maildir file, argv[1] a JSON
object of expectations:
  {"to": "alice@mx.test",
   "recipients": [{"Final-Recipient": "rfc822; x@y.test", "Diagnostic-Code": "~450"}],
   "text_contains": ["…"]}
A field value starting with "~" must be contained in the field; otherwise it must equal
it (white space collapsed). Prints "ok" or raises.
"""
import email
import email.policy
import json
import sys

want = json.loads(sys.argv[1])
raw = sys.stdin.buffer.read()
msg = email.message_from_bytes(raw, policy=email.policy.default)


def flat(s):
    return " ".join(str(s).split())


def no_defects(m, where):
    assert not m.defects, (where, m.defects)


no_defects(msg, "top")
assert raw.startswith(b"Return-Path: <>\n") or raw.startswith(b"Return-Path: <>\r\n"), raw[:80]
assert msg.get_content_type() == "multipart/report", msg.get_content_type()
assert msg.get_param("report-type") == "delivery-status", msg.get_param("report-type")
assert want["to"] in str(msg["To"]), msg["To"]
assert msg["Auto-Submitted"] == "auto-replied", msg["Auto-Submitted"]

parts = list(msg.iter_parts())
assert len(parts) in (2, 3), [p.get_content_type() for p in parts]
for i, p in enumerate(parts):
    no_defects(p, i)
text, report = parts[0], parts[1]
assert text.get_content_type() == "text/plain", text.get_content_type()
body = flat(text.get_content())
for needle in want.get("text_contains", []):
    assert flat(needle) in body, (needle, body)

assert report.get_content_type() == "message/delivery-status", report.get_content_type()
blocks = report.get_payload()
assert blocks[0]["Reporting-MTA"] == "dns; mx.test", blocks[0]["Reporting-MTA"]
assert len(blocks) == 1 + len(want["recipients"]), [dict(b) for b in blocks]
for block, fields in zip(blocks[1:], want["recipients"]):
    for name, value in fields.items():
        got = block[name]
        got = None if got is None else flat(got)
        if value is not None and value.startswith("~"):
            assert got is not None and flat(value[1:]) in got, (name, got, value)
        else:
            assert got == value, (name, got, value)
print("ok")
