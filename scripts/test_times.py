"""Where the suite's time goes, from a JUnit XML file (`pytest --junitxml=times.xml`): the
slowest tests, the total per test file, and the split between slow-marked and fast tests.

    pytest --junitxml=/tmp/times.xml && python scripts/test_times.py /tmp/times.xml
"""

from __future__ import annotations

import argparse
import collections
import xml.etree.ElementTree as ET


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("junit_xml")
    parser.add_argument("--top", type=int, default=40, help="Slowest tests to list.")
    args = parser.parse_args()
    cases = ET.parse(args.junit_xml).getroot().iter("testcase")
    times: list[tuple[float, str, str]] = []
    for case in cases:
        outcome = (
            "failed"
            if case.find("failure") is not None or case.find("error") is not None
            else ("skipped" if case.find("skipped") is not None else "passed")
        )
        name = f"{case.get('classname')}::{case.get('name')}"
        times.append((float(case.get("time") or 0), name, outcome))
    times.sort(reverse=True)
    total = sum(t for t, _, _ in times)
    print(f"{len(times)} tests, {total / 60:.1f} min in test bodies and fixtures")
    print(f"\nslowest {args.top}:")
    for seconds, name, outcome in times[: args.top]:
        print(f"  {seconds:7.1f} s  {name}" + ("" if outcome == "passed" else f"  [{outcome}]"))
    by_file: dict[str, float] = collections.Counter()
    for seconds, name, _ in times:
        parts = name.split("::")[0].split(".")
        if parts[-1][:1].isupper():  # a test class: count it with its file
            parts = parts[:-1]
        by_file[".".join(parts)] += seconds
    print("\nper file:")
    for module, seconds in sorted(by_file.items(), key=lambda kv: -kv[1]):
        print(f"  {seconds:7.1f} s  {module}")


if __name__ == "__main__":
    main()
