#!/usr/bin/env python3
"""Validate EVE JSON lines (stdin) against Suricata's schema, relaxed.

Usage: validate.py SCHEMA < events.json

Every `additionalProperties: false` in the schema becomes true, so that
pktpipe's own fields and event types are allowed while every field the
schema defines must keep its type and shape. Prints one line per distinct
violation (event_type, JSON path, message, count, first example) and
a summary line "events N types T violations V"; exits 1 on any violation.
"""
import collections
import json
import sys

import jsonschema


def relax(node):
    if isinstance(node, dict):
        if node.get("additionalProperties") is False:
            node["additionalProperties"] = True
        for v in node.values():
            relax(v)
    elif isinstance(node, list):
        for v in node:
            relax(v)


def main():
    with open(sys.argv[1]) as f:
        schema = json.load(f)
    relax(schema)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    v = cls(schema)
    seen = collections.Counter()
    first = {}
    types = collections.Counter()
    n = 0
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        n += 1
        ev = json.loads(line)
        et = ev.get("event_type", "?")
        types[et] += 1
        for err in v.iter_errors(ev):
            path = "/".join(str(p) for p in err.absolute_path)
            k = (et, path, err.message[:200])
            seen[k] += 1
            first.setdefault(k, line[:300])
    for k, c in sorted(seen.items()):
        print("VIOLATION %s %s: %s (x%d) e.g. %s" % (k[0], k[1], k[2], c, first[k]))
    print("events %d types %s violations %d" % (n, ",".join("%s=%d" % kv for kv in sorted(types.items())), sum(seen.values())))
    sys.exit(1 if seen else 0)


if __name__ == "__main__":
    main()
