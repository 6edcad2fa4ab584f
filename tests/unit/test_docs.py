from orchestration.docs import SCORING_DOC, scoring_markdown


def test_scoring_doc_matches_the_code():
    """docs/scoring.md is generated; regenerate it with `python -m orchestration.docs`."""
    assert SCORING_DOC.read_text(encoding="utf-8") == scoring_markdown()
