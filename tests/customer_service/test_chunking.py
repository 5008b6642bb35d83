"""Documents cut into chunks: Markdown and HTML headings become titles, paragraphs stay whole, chunks
overlap."""

from __future__ import annotations

import itertools

import pytest

from customer_service.chunking import Chunk, chunk_document, format_of
from textcore import InvalidInput

MARKDOWN = """# Card guide

Our cards work **worldwide** with [contactless](https://example.com) payments.

## Lost card

- Block the card in the app.
- Call us on `+1 555 0100`.

| fee | amount |
|---|---|
| replacement | 5 EUR |

### Abroad

Tell us before you travel.

```
PIN: never share it
```
"""

HTML = """<!doctype html><html><head><title>ignored</title><style>p { color: red }</style></head>
<body><nav><a href="/">Home</a> <a href="/cards">Cards</a></nav>
<h1>Fees</h1><p>The monthly fee is <b>4 EUR</b>.<br>Students pay nothing.</p>
<script>track("visit")</script>
<h2>Transfers</h2><ul><li>Domestic transfers are free.</li><li>International: 1%.</li></ul>
<!-- a comment --><div>Loose text in a div</div></body></html>"""


def _words(n: int, start: int = 0) -> str:
    return " ".join(f"w{i}" for i in range(start, start + n))


def test_markdown_headings_become_titles_and_markup_is_dropped() -> None:
    chunks = chunk_document(MARKDOWN, format="markdown", title="Card guide")
    assert [c.title for c in chunks] == [
        "Card guide",  # the top heading equals the document title: not repeated
        "Card guide > Lost card",
        "Card guide > Lost card > Abroad",
    ]
    assert [c.position for c in chunks] == [0, 1, 2]
    assert chunks[0].text == "Our cards work worldwide with contactless payments."
    assert (
        chunks[1].text
        == "- Block the card in the app.\n- Call us on +1 555 0100.\nfee | amount\nreplacement | 5 EUR"
    )
    assert chunks[2].text == "Tell us before you travel.\nPIN: never share it"


def test_html_drops_script_style_and_nav_and_uses_headings() -> None:
    chunks = chunk_document(HTML, format="html", title="Price list")
    assert [c.title for c in chunks] == ["Price list > Fees", "Price list > Fees > Transfers"]
    assert chunks[0].text == "The monthly fee is 4 EUR. Students pay nothing."
    assert chunks[1].text == "Domestic transfers are free.\nInternational: 1%.\nLoose text in a div"
    text = " ".join(c.text for c in chunks)
    for junk in ("Home", "track", "color", "ignored", "comment"):
        assert junk not in text


XHTML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Fees</title><style>.x{color:red}</style></head>
<body><nav>Home | Login</nav><h1>Safe deposit boxes</h1><p>A safe deposit box costs 80 euros a year.</p>
<script>window.dataLayer=[];gtag('config','UA-123');</script></body></html>"""


def test_xhtml_with_an_xml_declaration_is_read_as_html() -> None:
    # lxml refuses a str that declares its encoding; the page must still be parsed, not kept as markup
    chunks = chunk_document(XHTML, format="html", title="Boxes")
    assert [(c.title, c.text) for c in chunks] == [
        ("Boxes > Safe deposit boxes", "A safe deposit box costs 80 euros a year.")
    ]


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<!-- nothing but a comment -->", []),
        (
            '<?xml version="1.0" encoding="UTF-8"?><?xml version="1.0" encoding="UTF-8"?>\n'
            "<nav>Home</nav><p>Boxes cost 80 &euro; a year.</p><script>gtag('x')</script>",
            ["Boxes cost 80 \u20ac a year."],
        ),
    ],
)
def test_html_lxml_refuses_is_read_as_its_text_never_as_markup(html: str, expected: list[str]) -> None:
    assert [c.text for c in chunk_document(html, format="html", title="t")] == expected


def test_plain_text_paragraphs_are_packed_without_splitting_them() -> None:
    paragraphs = [_words(30, 100 * i) for i in range(7)]  # 7 paragraphs of 30 words
    chunks = chunk_document(
        "\n\n".join(paragraphs), format="text", title="Doc", max_words=100, overlap_words=0
    )
    assert all(len(c.text.split()) <= 100 for c in chunks)
    assert [c.text.split("\n") for c in chunks] == [paragraphs[0:3], paragraphs[3:6], paragraphs[6:7]]
    assert {c.title for c in chunks} == {"Doc"}


def test_consecutive_chunks_overlap() -> None:
    paragraphs = [_words(40, 100 * i) for i in range(6)]
    chunks = chunk_document("\n\n".join(paragraphs), format="text", title="", max_words=100, overlap_words=20)
    assert len(chunks) >= 3
    for before, after in itertools.pairwise(chunks):
        assert len(after.text.split()) <= 100
        shared = after.text.split()[:20]
        assert before.text.split()[-20:] == shared  # the next chunk starts with the last 20 words
    # every paragraph is whole in some chunk
    assert all(any(p in c.text for c in chunks) for p in paragraphs)


def test_overlap_starts_at_a_sentence_when_one_is_near() -> None:
    sentences = [f"Sentence {i} has a few more words in it." for i in range(40)]  # 8 words each
    chunks = chunk_document(" ".join(sentences), format="text", title="", max_words=60, overlap_words=20)
    assert len(chunks) > 3
    for chunk in chunks:
        assert len(chunk.text.split()) <= 60
        assert chunk.text.startswith("Sentence ")  # long paragraphs are cut between sentences
    assert chunks[1].text.split("\n")[0] in chunks[0].text  # its opening sentences repeat the end of chunk 0


def test_a_sentence_longer_than_a_chunk_is_cut_into_runs_of_words() -> None:
    chunks = chunk_document(_words(250), format="text", title="", max_words=100, overlap_words=0)
    assert [len(c.text.split()) for c in chunks] == [100, 100, 50]


def test_empty_documents_have_no_chunks() -> None:
    assert chunk_document("  \n\n ", format="text", title="t") == []
    assert chunk_document("", format="html", title="t") == []
    assert chunk_document("<script>x()</script>", format="html", title="t") == []
    assert chunk_document("# Only a heading", format="markdown", title="t") == []


def test_chunk_is_a_plain_value() -> None:
    assert chunk_document("Hello there.", format="text", title="T") == [Chunk("T", "Hello there.", 0)]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("faq.md", "markdown"),
        ("README.Markdown", "markdown"),
        ("a/b/page.html", "html"),
        ("x.HTM", "html"),
        ("notes.txt", "text"),
    ],
)
def test_format_of_reads_the_suffix(name: str, expected: str) -> None:
    assert format_of(name) == expected


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(InvalidInput, match=r"\.pdf"):
        format_of("terms.pdf")
    with pytest.raises(InvalidInput, match="format"):
        chunk_document("x", format="pdf", title="")
    with pytest.raises(InvalidInput, match="overlap_words"):
        chunk_document("x", format="text", title="", max_words=50, overlap_words=40)
