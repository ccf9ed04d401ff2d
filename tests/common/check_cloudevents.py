#!/usr/bin/env python3
"""Checks what a receiver recorded with independent tools and prints the events as JSON:
each body parsed by the CloudEvents Python SDK (structured mode), its envelope validated
against the CloudEvents JSON Schema, its data against the type's schema in docs/schemas/events,
and its X-Signature verified with Python's hmac when a secret is given.

usage: check_cloudevents.py LOG CLOUDEVENTS_SCHEMA EVENT_SCHEMA_DIR [SECRET_FILE]
"""
import base64
import hashlib
import hmac
import json
import sys

import jsonschema
from cloudevents.http import from_http

log, envelope_schema, schema_dir = sys.argv[1:4]
secret = open(sys.argv[4], "rb").read().strip() if len(sys.argv) > 4 else None
envelope = json.load(open(envelope_schema))
out = []
for line in open(log):
    rec = json.loads(line)
    body = base64.b64decode(rec["body"])
    headers = rec["headers"]
    if headers.get("content-type") != "application/cloudevents+json":
        sys.exit(f"content-type {headers.get('content-type')!r}")
    if secret is not None:
        want = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, headers.get("x-signature", "")):
            sys.exit(f"bad signature {headers.get('x-signature')!r}")
    event = from_http(headers, body)
    doc = json.loads(body)
    jsonschema.validate(doc, envelope, format_checker=jsonschema.FormatChecker())
    schema = json.load(open(f"{schema_dir}/{event['type']}.v1.json"))
    jsonschema.validate(event.data, schema, format_checker=jsonschema.FormatChecker())
    out.append({"attributes": dict(event.get_attributes()), "data": event.data, "status": rec["status"]})
json.dump(out, sys.stdout)
