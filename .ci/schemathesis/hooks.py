"""What the OpenAPI document cannot state, for schemathesis (SCHEMATHESIS_HOOKS): relations
between parameters, and values that only a previous response gives.

- A page token is opaque: only a `next_page_token` of a previous page is one, so generated
  requests carry none.
- A time range's end comes after its start (`startTime`/`endTime`, `start`/`end`), and a sol
  range's `minSol` is at most its `maxSol`.
- A run's parameters depend on its source.
"""

from datetime import datetime, timezone

import schemathesis

TOKENS = ("pageToken", "page_token")
RANGES = (("startTime", "endTime"), ("start", "end"))


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
    # A sol range's least sol is at most its greatest.
    low, high = query.get("minSol"), query.get("maxSol")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        del query["maxSol"]
    return query


@schemathesis.hook
def map_body(ctx, body):
    # Which parameters a run takes depends on its source (the document says so in words):
    # generated runs take none, so each source's defaults apply.
    if isinstance(body, dict) and isinstance(body.get("parameters"), dict) and "source" in body:
        body["parameters"] = {}
    return body
