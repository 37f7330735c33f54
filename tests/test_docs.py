"""The project explains itself: every citation of the docs names a section that exists,
and nothing cites notes that are not in the repository."""
import pytest
import re
from pathlib import Path

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for pattern in ("qcsbench/**/*.py", "scripts/**/*.py", "tests/*.py", "configs/**/*.yaml", "*.py",
                             "README.md", "docs/*.md") for p in ROOT.glob(pattern)]
CITATION = re.compile(r"docs/(\w+)\.md §(\d+)")


def sections(doc: Path) -> set[str]:
    return set(re.findall(r"^## (\d+)\.", doc.read_text(), flags=re.M))


def test_every_citation_names_an_existing_section():
    cited = 0
    for path in SOURCES:
        for name, number in CITATION.findall(path.read_text()):
            doc = ROOT / "docs" / f"{name}.md"
            assert doc.is_file(), f"{path.relative_to(ROOT)} cites docs/{name}.md, which does not exist"
            assert number in sections(doc), f"{path.relative_to(ROOT)} cites docs/{name}.md §{number}, which has no such section"
            cited += 1
    assert cited > 20  # the code does cite the docs; a broken pattern would find none


def test_nothing_cites_notes_outside_the_repository():
    outside = re.compile(r"\b(MATH|DESIGN)\.md")
    offenders = [str(p.relative_to(ROOT)) for p in SOURCES if p.name != "test_docs.py" and outside.search(p.read_text())]
    assert not offenders, f"these cite MATH.md / DESIGN.md, which are not part of the repository: {offenders}"
