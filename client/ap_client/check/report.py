"""The checker's results as text (for people), one JSON document, or JUnit XML (for CI)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from ap_client.check.outcomes import CHECK_IDS, Outcome

LABELS = {"pass": "PASS", "fail": "FAIL", "warn": "WARN", "skip": "SKIP"}
WIDTH = max(len(c) for c in CHECK_IDS)


def line(outcome: Outcome) -> str:
    return f"{LABELS[outcome.result]}  {outcome.id.ljust(WIDTH)}  {outcome.message}"


def totals(outcomes: list[Outcome]) -> dict[str, int]:
    counts = Counter(o.result for o in outcomes)
    return {
        "passed": counts["pass"], "failed": counts["fail"],
        "warned": counts["warn"], "skipped": counts["skip"],
    }


def summary(outcomes: list[Outcome], left_behind: list[str]) -> str:
    t = totals(outcomes)
    text = ", ".join(f"{n} {word}" for word, n in t.items())
    if left_behind:
        text += f"; could not release {len(left_behind)} action(s): {', '.join(left_behind)}"
    return text


def document(outcomes: list[Outcome], url: str, left_behind: list[str]) -> dict[str, Any]:
    return {
        "provider": url,
        "checks": [{"id": o.id, "result": o.result, "message": o.message} for o in outcomes],
        **totals(outcomes),
        "left_behind": left_behind,
    }


def as_json(outcomes: list[Outcome], url: str, left_behind: list[str]) -> str:
    return json.dumps(document(outcomes, url, left_behind), indent=2)


def write_junit(path: Path, outcomes: list[Outcome], url: str) -> None:
    t = totals(outcomes)
    suite = ET.Element(
        "testsuite", name=f"ap-client check {url}", tests=str(len(outcomes)),
        failures=str(t["failed"]), errors="0", skipped=str(t["skipped"]),
    )
    for outcome in outcomes:
        group = outcome.id.split(".")[0]
        case = ET.SubElement(suite, "testcase", classname=f"ap-client-check.{group}",
                             name=outcome.id)
        if outcome.result == "fail":
            ET.SubElement(case, "failure", message=outcome.message).text = outcome.message
        elif outcome.result == "skip":
            ET.SubElement(case, "skipped", message=outcome.message)
        else:
            ET.SubElement(case, "system-out").text = f"{outcome.result}: {outcome.message}"
    tree = ET.ElementTree(ET.Element("testsuites"))
    tree.getroot().append(suite)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
