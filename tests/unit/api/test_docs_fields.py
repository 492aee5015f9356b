"""docs/api.md's field audit ("What every field does, and the test that checks it") stays true:
every field of every resource table has a row, every end-to-end test it names exists, and the
summary counts match the rows."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pyscsi_target.api import tables

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "api.md"
RESOURCES = {
    "globalconfiguration": tables.GLOBAL, "portal": tables.PORTAL, "authorizedinitiator": tables.INITIATOR,
    "authcredential": tables.AUTH, "target": tables.TARGET, "targetgroup": tables.TARGETGROUP,
    "extent": tables.EXTENT, "targettoextent": tables.MAPPING, "services/iscsitarget": tables.SERVICE,
}
TEST_REF = re.compile(r"`((?:tests/[\w/]+/)?test_\w+\.py)::(test_\w+)`")


def audit() -> tuple[str, dict[str, dict[str, str]]]:
    """The section's text and, per resource, field -> its "end-to-end test" cell."""
    text = DOC.read_text()
    section = text.split("## What every field does, and the test that checks it", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, dict[str, str]] = {}
    current = ""
    for line in section.splitlines():
        if m := re.fullmatch(r"\*\*([\w/]+)\*\*", line.strip()):
            current = m.group(1)
            rows[current] = {}
        elif m := re.match(r"\| `(\w+)` \| .* \| (.*) \|$", line):
            rows[current][m.group(1)] = m.group(2)
    return section, rows


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_field_has_a_row() -> None:
    _, rows = audit()
    for resource, table in RESOURCES.items():
        assert set(rows.get(resource, {})) == {f.name for f in table}, resource


def test_every_named_test_exists() -> None:
    section, _ = audit()
    refs = TEST_REF.findall(section)
    assert refs
    for file, name in refs:
        path = ROOT / file if file.startswith("tests/") else ROOT / "tests" / "integration" / file
        assert name in defined_tests(path), f"{file}::{name}"


def test_the_summary_counts_match_the_rows() -> None:
    section, rows = audit()
    cells = [cell for fields in rows.values() for cell in fields.values()]
    with_test = sum(1 for c in cells if not c.startswith(("—", "no end-to-end test")))
    stored_only = sum(1 for c in cells if c.startswith("—"))
    no_test_yet = sum(1 for c in cells if c.startswith("no end-to-end test"))
    expected = (f"**{with_test} fields with an end-to-end test, {stored_only + no_test_yet} without** "
                f"({stored_only} stored only, identifiers, constants or validation only, {no_test_yet} with "
                f"no end-to-end test yet)")
    assert expected in " ".join(section.split()), expected
