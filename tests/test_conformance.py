"""pachhook agrees with pachctl 2.x on every real spec file of the upstream corpus.

The corpus lives outside the repository, in `../shared/corpus/upstream/` beside the
checkout (files from Pachyderm's public repositories; not copied into this project).
`EXPECTED-2x.tsv` holds pachctl 2.x's verdict on each file, emulated from upstream source.
The one allowed difference: pachhook also rejects Kubernetes resource quantities that
pachd would silently drop (`"256MB"`).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from pachhook.validate.checks import validate_paths

SHARED = Path(__file__).resolve().parents[2] / "shared"
CORPUS = SHARED / "corpus" / "upstream"
EXPECTED = CORPUS / "EXPECTED-2x.tsv"

_QUANTITY_PATH = re.compile(r"(sidecar_?)?(resource_?requests|resource_?limits)\.(memory|disk|cpu)$", re.IGNORECASE)


def _expected() -> dict:
    if not EXPECTED.exists():
        return {}
    with open(EXPECTED, newline="", encoding="utf-8") as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        return {row["file"]: row["pachctl_2x_head_check"] for row in rows}


VERDICTS = _expected()
needs_corpus = pytest.mark.skipif(
    not VERDICTS, reason=f"the upstream corpus is not beside this checkout ({EXPECTED} is absent)"
)


def _is_quantity_only(errors) -> bool:
    return bool(errors) and all(_QUANTITY_PATH.search(item.json_path) for item in errors)


@needs_corpus
def test_corpus_is_complete():
    files = sorted(p.name for p in CORPUS.iterdir() if p.suffix in (".json", ".yaml", ".yml"))
    assert sorted(VERDICTS) == files
    assert len(files) == 195


@needs_corpus
@pytest.mark.parametrize("name", sorted(VERDICTS) or ["(no corpus)"])
def test_verdict_matches_pachctl_2x(name):
    verdict = VERDICTS[name]
    diagnostics = validate_paths([CORPUS / name])
    errors = [item for item in diagnostics if item.severity == "error"]
    shown = "\n".join(f"{d.line}:{d.column}: {d.message} ({d.json_path})" for d in errors)
    if verdict == "ok":
        assert not errors or _is_quantity_only(errors), f"pachctl 2.x accepts {name}, pachhook rejects it:\n{shown}"
    else:
        assert verdict.startswith("REJECT"), verdict
        assert errors, f"pachctl 2.x rejects {name} ({verdict}); pachhook accepts it"


@needs_corpus
def test_the_known_bad_quantity_is_rejected():
    # pachd drops "256MB" silently; pachhook says so before anything is deployed
    errors = [
        d
        for d in validate_paths([CORPUS / "pachyderm-master__examples__churn__churn.pipeline.json"])
        if d.severity == "error"
    ]
    assert _is_quantity_only(errors)
    assert any("256MB" in item.message for item in errors)
