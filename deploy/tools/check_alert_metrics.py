#!/usr/bin/env python3
"""Every metric an alert rule reads is exported (METRICS.md), recorded (recording-rules.yml)
or Prometheus's own (`up`).

Usage: check_alert_metrics.py METRICS.md recording-rules.yml alert-rules.yml
"""
import re
import sys

import yaml

FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil", "changes",
    "clamp", "clamp_max", "clamp_min", "count", "count_over_time", "delta", "deriv", "floor",
    "group", "histogram_quantile", "idelta", "increase", "irate", "label_replace", "last_over_time",
    "max", "max_over_time", "min", "min_over_time", "predict_linear", "quantile", "quantile_over_time",
    "rate", "resets", "round", "scalar", "sort", "stddev", "sum", "sum_over_time", "time", "topk",
    "vector", "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}
BUILTIN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def metric_names(expr):
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)            # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)                     # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)                    # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    tokens = re.findall(r"(?<![\w.])([a-zA-Z_:][\w:]*)", expr)
    return {t for t in tokens if t.lower() not in FUNCTIONS}


def main(metrics_md, recording, alerts):
    with open(metrics_md, encoding="utf-8") as f:
        known = set(re.findall(r"`([a-z_:][a-z0-9_:]*)`", f.read()))
    with open(recording, encoding="utf-8") as f:
        known |= {r["record"] for g in yaml.safe_load(f)["groups"] for r in g["rules"]}
    known |= BUILTIN
    with open(alerts, encoding="utf-8") as f:
        rules = [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]
    errors = []
    for rule in rules:
        for name in sorted(metric_names(str(rule["expr"]))):
            if name not in known:
                errors.append(f"{rule['alert']}: `{name}` is neither in {metrics_md} nor a recording rule")
    for e in errors:
        print(f"check_alert_metrics: {e}", file=sys.stderr)
    if not errors:
        print(f"check_alert_metrics: the {len(rules)} alerts read only catalogued metrics")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
