#!/usr/bin/env python3
"""Prints an alert for each reading above LIMIT (default 30).

brook runs this with the actions directory as the working directory and
writes {"context": {...}, "scope": [data items]} to its stdin; the same scope
is in the T_ANALYSIS_DATA environment variable, as TagoIO's SDK expects it.
Standard library only.
"""

import json
import os
import sys


def main():
    message = json.load(sys.stdin)
    limit = float(os.environ.get("LIMIT", "30"))
    hot = []
    for item in message.get("scope", []):
        if item.get("variable") != "temperature":
            continue
        try:
            value = float(item.get("value"))
        except (TypeError, ValueError):
            continue
        if value > limit:
            hot.append((item.get("device", "?"), value, item.get("unit", "")))
    for device, value, unit in hot:
        print(f"ALERT: device {device} reads {value}{unit}, above {limit}")
    if not hot:
        print("no reading above the limit")


if __name__ == "__main__":
    main()
