"""What the OpenAPI document cannot state, for schemathesis (SCHEMATHESIS_HOOKS): relations
between parameters, and values that only a previous response gives.

- A page token is opaque: only a `next_page_token` of a previous page is one, so generated
  requests carry none.
- A time range's end comes after its start (`startTime`/`endTime`, `start`/`end`).
- A run's parameter names are 1 to 64 of a-z, 0-9, `_`.
"""

import re
from datetime import datetime, timezone

import schemathesis

TOKENS = ("pageToken", "page_token")
RANGES = (("startTime", "endTime"), ("start", "end"))
PARAMETER = re.compile(r"^[a-z0-9_]{1,64}$")


def _time(text):
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(str(text).replace(" ", "T", 1))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@schemathesis.hook
def map_query(ctx, query):
    if not query:
        return query
    for key in TOKENS:
        query.pop(key, None)
    # An end not after its start is left out.
    for start_key, end_key in RANGES:
        start, end = _time(query.get(start_key)), _time(query.get(end_key))
        if start is not None and end is not None and end <= start:
            del query[end_key]
    return query


@schemathesis.hook
def map_body(ctx, body):
    # Run parameter names are 1 to 64 of a-z, 0-9, `_` (JSON Schema in OpenAPI 3.0 has no
    # `propertyNames`; the document says so in words): others are left out.
    if isinstance(body, dict) and isinstance(body.get("parameters"), dict):
        body["parameters"] = {k: v for k, v in body["parameters"].items() if PARAMETER.match(k)}
    return body
