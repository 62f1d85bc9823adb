"""Parse what orderctl exports, and what the examples reference, with real parsers.

  prometheus_check.py metrics FILE   the exposition, parsed by prometheus_client's text parser:
                                     prints {"families": {name: {"type", "samples": [[name, labels, value]]}}}
  prometheus_check.py rules FILE     an alert rules file, parsed as YAML: prints the exprs
  prometheus_check.py dashboard FILE a Grafana dashboard, parsed as JSON: prints the exprs

Needs the prometheus_client and PyYAML packages (.ci/run installs them when missing).
"""
import json
import sys


def metrics(path):
    from prometheus_client.parser import text_string_to_metric_families

    families = {}
    with open(path, encoding="utf-8") as f:
        for family in text_string_to_metric_families(f.read()):
            families[family.name] = {
                "type": family.type,
                "samples": [[s.name, s.labels, s.value] for s in family.samples],
            }
    return {"families": families}


def rules(path):
    import yaml

    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return {"exprs": [str(r["expr"]) for g in doc["groups"] for r in g["rules"]]}


def dashboard(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    # Panels on other data sources (the operator's Postgres: margin) have SQL, not exprs.
    return {"exprs": [t["expr"] for p in doc["panels"] for t in p.get("targets", []) if "expr" in t]}


if __name__ == "__main__":
    kind, path = sys.argv[1], sys.argv[2]
    print(json.dumps({"metrics": metrics, "rules": rules, "dashboard": dashboard}[kind](path)))
