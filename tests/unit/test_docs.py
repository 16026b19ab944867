"""The documentation that is generated from the code is current."""

from __future__ import annotations

from pathlib import Path

from authn.settings import OPTIONS, reference

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_option_reference_is_current() -> None:
    assert (DOCS / "options.md").read_text() == reference(), (
        "docs/options.md is out of date: python -m authn.settings > docs/options.md"
    )


def test_every_option_is_in_the_reference() -> None:
    text = (DOCS / "options.md").read_text()
    assert all(f"`{key}`" in text for key in OPTIONS)
