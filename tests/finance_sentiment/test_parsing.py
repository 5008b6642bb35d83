"""Parsing of fetched documents: RSS/Atom feeds, HTML articles and list pages, JSON APIs."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

import finance_sentiment
from finance_sentiment.articles import extract_links, parse_article
from finance_sentiment.feeds import looks_like_html, parse_feed
from finance_sentiment.json_api import JsonFields, parse_json
from finance_sentiment.parsing import MAX_ITEMS, ParseError, RawItem, clip_words, html_to_text
from finance_sentiment.tagging import EntitySpec, Tagger
from textcore.errors import InvalidInput

RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0">
  <channel>
    <title>Markets</title>
    <link>https://news.example.com/</link>
    <description>Market news</description>
    <item>
      <title>Tesla shares jump &amp; rally</title>
      <link>/markets/tesla-jump</link>
      <description><![CDATA[<p>Shares of <b>Tesla</b> rose 5%.</p><p>Analysts cheered.</p>]]></description>
      <pubDate>Tue, 30 Apr 2024 15:04:05 +0200</pubDate>
    </item>
    <item>
      <title>An entry without a link is skipped</title>
      <description>nothing to point at</description>
    </item>
    <item>
      <title>Headline only</title>
      <link>https://other.example.org/story?id=7#comments</link>
    </item>
  </channel>
</rss>
"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Atom markets</title>
  <id>urn:uuid:feed</id>
  <updated>2024-05-01T10:00:00Z</updated>
  <entry>
    <title>Fed holds rates</title>
    <link rel="alternate" href="posts/fed-holds"/>
    <id>urn:uuid:1</id>
    <updated>2024-05-01T10:00:00-05:00</updated>
    <summary type="html">&lt;p&gt;short summary&lt;/p&gt;</summary>
    <content type="html">&lt;div&gt;The Fed &lt;em&gt;held&lt;/em&gt; rates.
      &lt;script&gt;track()&lt;/script&gt;&lt;/div&gt;&lt;div&gt;Markets rose.&lt;/div&gt;</content>
  </entry>
</feed>
"""

PARAGRAPHS = [
    "The central bank raised its benchmark interest rate by a quarter of a percentage point on Wednesday, "
    "the tenth increase in a little over a year, as policymakers sought to cool persistent inflation.",
    "Officials said the labour market remained tight and that price pressures in services had eased only "
    "slowly, although several members argued that the full effect of earlier increases was still to come.",
    "Bond yields rose after the announcement while equities gave up their early gains, with bank shares "
    "among the weakest performers as investors weighed the outlook for lending margins.",
]
NAV = "".join(f'<li><a href="/section/{i}">Section {i}</a></li>' for i in range(8))
ARTICLE = f"""<!doctype html>
<html><head>
  <title>Central bank raises rates again | Example News</title>
  <meta property="og:title" content="Central bank raises rates again">
  <meta property="article:published_time" content="2024-05-01T14:30:00+02:00">
</head><body>
  <header><nav><ul>{NAV}</ul></nav></header>
  <article>
    <h1>Central bank raises rates again</h1>
    {"".join(f"<p>{p}</p>" for p in PARAGRAPHS)}
  </article>
  <aside><h3>Most read</h3><ul>{NAV}</ul></aside>
  <footer>Copyright Example News</footer>
  <script>window.analytics = {{"track": true}};</script>
</body></html>""".encode()

NAV_ONLY = b"""<!doctype html><html><head><title>Markets</title>
<script>var bundle = "a long script body that is no article text at all, however long";</script></head>
<body><nav><a href="/">Home</a> <a href="/markets">Markets</a></nav><div id="app"></div></body></html>"""


def test_rss_items_have_absolute_links_plain_text_and_utc_dates() -> None:
    items = parse_feed(RSS, "https://news.example.com/feeds/markets.xml")

    assert [item.url for item in items] == [
        "https://news.example.com/markets/tesla-jump",
        "https://other.example.org/story?id=7",
    ]
    first = items[0]
    assert first.title == "Tesla shares jump & rally"
    assert first.text == "Shares of Tesla rose 5%. Analysts cheered."
    assert first.published_at == datetime(2024, 4, 30, 13, 4, 5, tzinfo=UTC)
    assert first.published_at is not None and first.published_at.utcoffset() is not None
    # a headline-only entry gets its title as text, and no date when the feed gives none
    assert items[1] == RawItem(
        url="https://other.example.org/story?id=7",
        title="Headline only",
        text="Headline only",
        published_at=None,
    )


def test_atom_prefers_full_content_strips_scripts_and_converts_offsets() -> None:
    items = parse_feed(ATOM, "https://atom.example.org/blog/feed.atom")

    assert len(items) == 1
    item = items[0]
    assert item.url == "https://atom.example.org/blog/posts/fed-holds"
    assert item.title == "Fed holds rates"
    assert item.text == "The Fed held rates. Markets rose."
    assert item.published_at == datetime(2024, 5, 1, 15, 0, tzinfo=UTC)


def test_nul_characters_are_dropped_from_items() -> None:
    item = RawItem(url="https://example.com/a\x00", title="Acme\x00 falls", text="\x00", published_at=None)
    assert (item.url, item.title, item.text) == ("https://example.com/a", "Acme falls", "")


def test_valid_feed_without_entries_is_empty_not_an_error() -> None:
    empty = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Quiet</title></channel></rss>'
    assert parse_feed(empty, "https://example.com/rss") == []


@pytest.mark.parametrize(
    "content",
    [
        b"<rss><channel><item><title>broken</ti",
        b"not a feed at all",
        b"",
        b"<html><body>a page</body></html>",
    ],
)
def test_malformed_or_non_feed_documents_raise_parse_error(content: bytes) -> None:
    with pytest.raises(ParseError, match=r"expected an RSS or Atom feed at https://example\.com/rss"):
        parse_feed(content, "https://example.com/rss")


def test_truncated_feed_keeps_the_entries_it_could_read() -> None:
    truncated = RSS.split(b"</item>")[0] + b"</item><item><title>cut off"
    items = parse_feed(truncated, "https://news.example.com/feeds/markets.xml")
    assert [item.title for item in items] == ["Tesla shares jump & rally"]


def test_feed_items_are_capped_per_document() -> None:
    entries = "".join(
        f"<item><title>Story {i}</title><link>https://example.com/s/{i}</link></item>"
        for i in range(MAX_ITEMS + 5)
    )
    feed = f'<?xml version="1.0"?><rss version="2.0"><channel><title>Big</title>{entries}</channel></rss>'
    items = parse_feed(feed.encode(), "https://example.com/rss")
    assert len(items) == MAX_ITEMS
    assert items[-1].title == f"Story {MAX_ITEMS - 1}"


def test_article_page_gives_main_text_title_and_date() -> None:
    item = parse_article(ARTICLE, "https://news.example.com/economy/rates")

    assert item is not None
    assert item.url == "https://news.example.com/economy/rates"
    assert item.title == "Central bank raises rates again"
    for paragraph in PARAGRAPHS:
        assert paragraph in item.text
    # navigation, sidebars, footer and scripts stay out of the text
    for boilerplate in ("Section 3", "Most read", "Copyright", "analytics"):
        assert boilerplate not in item.text
    assert "\n" not in item.text and "  " not in item.text
    assert item.published_at == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize("content", [NAV_ONLY, b"", b"   \n"])
def test_page_without_main_text_gives_none(content: bytes) -> None:
    assert parse_article(content, "https://news.example.com/") is None


LIST_PAGE = b"""<html><head><title>Markets</title></head><body>
<a href="/markets/2024/05/01/tesla-jumps">Tesla jumps</a>
<a href="https://news.example.com/markets/2024/05/01/fed-holds#comments">Fed holds (comments)</a>
<a href="/markets/2024/05/01/tesla-jumps">Tesla jumps again (duplicate)</a>
<a href="/about">About us</a>
<a href="javascript:void(0)">Menu</a>
<a href="mailto:desk@example.com">Mail the desk</a>
<a href="//cdn.example.net/markets/2024/05/01/chart.png">Chart</a>
<a>No href</a>
<a href="markets/2024/05/02/relative">Relative to the page folder</a>
</body></html>"""


def test_list_page_links_are_absolute_filtered_deduplicated_in_order() -> None:
    links = extract_links(LIST_PAGE, "https://news.example.com/sections/index.html", r"/markets/\d{4}/")

    assert links == [
        "https://news.example.com/markets/2024/05/01/tesla-jumps",
        "https://news.example.com/markets/2024/05/01/fed-holds",
        "https://cdn.example.net/markets/2024/05/01/chart.png",
        "https://news.example.com/sections/markets/2024/05/02/relative",
    ]


def test_list_page_honours_base_href_and_pattern_sees_absolute_urls() -> None:
    page = b'<html><head><base href="https://mirror.example.org/a/"></head><body><a href="x/1">1</a></body>'
    assert extract_links(page, "https://news.example.com/", r"^https://mirror\.example\.org/a/x/") == [
        "https://mirror.example.org/a/x/1"
    ]
    assert extract_links(b"", "https://news.example.com/", ".") == []


def test_bad_link_pattern_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="expected a valid regular expression"):
        extract_links(LIST_PAGE, "https://news.example.com/", "(unclosed")


def test_a_backtracking_link_pattern_cannot_hang_the_list_page_scan() -> None:
    # In a child process, so that a scan that hangs (re holds the GIL while it backtracks) is killed at the
    # timeout instead of hanging the test run: with re, '(a+)+$' takes hours on the 40 a's.
    child = textwrap.dedent(
        """
        import json
        from finance_sentiment.articles import extract_links
        page = b"<a href='/a/1/a'>1</a><a href='/" + b"a" * 40 + b"!'>x</a>"
        page += b"<a href='/" + b"b" * 5000 + b"'>y</a>"
        found = {p: extract_links(page, "https://news.example.com/", p) for p in ["(a+)+$", "(a|aa)+$", "b$"]}
        print(json.dumps(found))
        """
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", child], capture_output=True, text=True, timeout=30, check=True
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the list page scan was still matching a link pattern after 30 s")
    # The long link timed out or matched nothing; the one over MAX_LINK_CHARS is not matched at all.
    assert json.loads(done.stdout) == {
        "(a+)+$": ["https://news.example.com/a/1/a"],
        "(a|aa)+$": ["https://news.example.com/a/1/a"],
        "b$": [],
    }


def test_json_items_from_nested_path_with_epoch_and_iso_times() -> None:
    document = {
        "data": {
            "articles": [
                {
                    "headline": "Epoch story",
                    "link": "/a/1",
                    "body": "<p>Body <b>one</b></p>",
                    "ts": 1714560000,
                },
                {
                    "headline": "ISO story",
                    "link": "https://example.com/a/2",
                    "ts": "2024-05-01T12:00:00+02:00",
                },
                {"headline": "Millis story", "link": "/a/3", "body": "three", "ts": 1714560000123},
                {"headline": "No link", "body": "skipped"},
                {"link": "/a/5", "body": "<p>A story without a headline</p>"},
                {"headline": "", "link": "/a/6"},
                {"headline": "Naive time, bad link type", "link": 42},
                "not an object",
                {"headline": "Naive ISO", "link": "/a/8", "ts": "2024-05-01 09:30:00"},
                {"headline": "Garbage time", "link": "/a/9", "ts": "yesterday"},
            ]
        }
    }
    fields = JsonFields(items="data.articles", title="headline", text="body", url="link", time="ts")
    items = parse_json(json.dumps(document).encode(), fields, "https://example.com/api/v1/news")

    assert [item.url for item in items] == [
        "https://example.com/a/1",
        "https://example.com/a/2",
        "https://example.com/a/3",
        "https://example.com/a/5",
        "https://example.com/a/8",
        "https://example.com/a/9",
    ]
    assert items[0].text == "Body one"
    assert items[0].published_at == datetime(2024, 5, 1, 10, 40, tzinfo=UTC)
    assert items[1].text == "ISO story"  # missing text falls back to the title
    assert items[1].published_at == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert items[2].published_at == datetime(2024, 5, 1, 10, 40, 0, 123000, tzinfo=UTC)
    # no headline: headed by the start of its text, as a feed entry is; no headline nor text: skipped
    assert (items[3].title, items[3].text) == ("A story without a headline", "A story without a headline")
    assert items[4].published_at == datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    assert items[5].published_at is None


def test_json_root_list_with_default_fields() -> None:
    document = [{"title": "Root", "url": "https://example.com/r", "text": "t", "published_at": 0}]
    items = parse_json(json.dumps(document).encode(), JsonFields(), "https://example.com/api")
    assert items == [
        RawItem(
            url="https://example.com/r", title="Root", text="t", published_at=datetime(1970, 1, 1, tzinfo=UTC)
        )
    ]


def test_invalid_json_and_non_list_paths_raise_parse_error() -> None:
    with pytest.raises(ParseError, match="expected a JSON document"):
        parse_json(b"{not json", JsonFields(), "https://example.com/api")
    with pytest.raises(ParseError, match=r"expected a list at 'data\.items'.*found dict"):
        parse_json(
            b'{"data": {"items": {"a": 1}}}', JsonFields(items="data.items"), "https://example.com/api"
        )
    with pytest.raises(ParseError, match=r"expected a list at 'data\.missing'.*found NoneType"):
        parse_json(b'{"data": {}}', JsonFields(items="data.missing"), "https://example.com/api")
    with pytest.raises(ParseError, match="expected a list at the document root"):
        parse_json(b'{"data": []}', JsonFields(), "https://example.com/api")


def test_html_to_text_separates_blocks_and_drops_scripts() -> None:
    assert html_to_text("<p>one</p><p>two</p>three<br>four") == "one two three four"
    assert html_to_text("Tes<b>la</b> &amp; co<script>x()</script><style>p {}</style>") == "Tesla & co"
    assert html_to_text("  plain\u00a0 text \n") == "plain text"
    assert html_to_text("P/E < 10 & rising") == "P/E < 10 & rising"


def test_entities_are_decoded_beside_control_characters_and_one_entry_cannot_sink_a_feed() -> None:
    # A vertical tab or form feed pasted from a word processor, a BEL or an ANSI escape: lxml refuses a
    # string holding one, so the headline was kept as written ("AT&amp;T", "&#8217;"), and an entry whose
    # description held one inside markup raised a ValueError that failed the whole feed.
    feed = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>'
        b"<item><title>AT&amp;amp;T\x0b shares fall</title><link>https://a.example/1</link>"
        b"<description>&lt;p&gt;AT&amp;amp;T\x1b cut its&lt;/p&gt;&lt;p&gt;outlook&lt;/p&gt;"
        b"</description></item>"
        b"<item><title>Bank&amp;#8217;s\x0c profit</title><link>https://a.example/2</link></item>"
        b"</channel></rss>"
    )
    items = parse_feed(feed, "https://a.example/rss")
    assert [(item.title, item.text) for item in items] == [
        ("AT&T shares fall", "AT&T cut its outlook"),
        ("Bank\u2019s profit", "Bank\u2019s profit"),
    ]
    document = (
        b'[{"title": "AT&amp;T\\u000b falls \\ud800", "text": "Bank&#8217;s \\u0007 view", "url": "/1"}]'
    )
    (item,) = parse_json(document, JsonFields(), "https://x.example/api")
    assert (item.title, item.text) == ("AT&T falls", "Bank\u2019s view")
    assert html_to_text("&lt;b&gt; AT&amp;amp;T") == "<b> AT&amp;T"  # decoded once, never twice


def test_a_plain_text_title_keeps_its_angle_brackets_and_is_decoded_once() -> None:
    # feedparser hands back a plain-text title (Atom type="text", an RSS title without markup) already
    # decoded; read as HTML again, a Reuters-style "<AAPL.O>" vanished and a quoted "&amp;" became "&".
    atom = (
        b'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        b'<entry><title type="text">Apple &lt;AAPL.O&gt; beats; its memo says &amp;amp;</title>'
        b'<link href="https://b.example/1"/><summary type="text">Apple &lt;AAPL.O&gt; rose</summary></entry>'
        b'<entry><title type="html">AT&amp;amp;T &lt;b&gt;cuts&lt;/b&gt; jobs</title>'
        b'<link href="https://b.example/2"/></entry></feed>'
    )
    rss = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>'
        b"<item><title>Apple &lt;AAPL.O&gt; beats estimates</title><link>https://a.example/1</link></item>"
        b"</channel></rss>"
    )
    items = parse_feed(atom, "https://b.example/feed") + parse_feed(rss, "https://a.example/rss")
    assert [(item.title, item.text) for item in items] == [
        ("Apple <AAPL.O> beats; its memo says &amp;", "Apple <AAPL.O> rose"),
        ("AT&T cuts jobs", "AT&T cuts jobs"),  # markup is still flattened
        ("Apple <AAPL.O> beats estimates", "Apple <AAPL.O> beats estimates"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Acme shares fall", "Acme shares fall"),  # within the bound: as it is
        ("Acme shares plunge after the probe", "Acme shares plunge…"),  # the last whole word that fits
        ("Acme shares plunged  again", "Acme shares plunged…"),  # a space right at the cut: every word kept
        ("A" * 40, "A" * 19 + "…"),  # no word boundary: cut hard
        ("Acme " + "x" * 40, "Acme " + "x" * 14 + "…"),  # the only boundary too early: cut hard
    ],
)
def test_clip_words_keeps_whole_words_within_the_bound(text: str, expected: str) -> None:
    clipped = clip_words(text, 20)
    assert clipped == expected and len(clipped) <= 20


def test_ticker_marks_survive_html_feed_json_and_page_text_and_tag_the_story() -> None:
    # feedparser's sanitizer dropped "<AAPL.O>" from an HTML description as an unknown element, an RSS title
    # holding one and markup kept its tags, and a JSON title or an HTML page lost the mark as html_to_text
    # and trafilatura read it as a tag: the ticker that links the story to a watched company was gone.
    rss = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>'
        b"<item><title>Barclays &lt;BARC.L&gt; shares &lt;b&gt;fall&lt;/b&gt;</title>"
        b"<link>https://a.example/1</link>"
        b"<description>&lt;p&gt;Apple &lt;AAPL.O&gt; beats &lt;B&gt;estimates&lt;/B&gt;&lt;/p&gt;"
        b'&lt;a href="/more"&gt;more&lt;/a&gt;&lt;script&gt;track()&lt;/script&gt;</description></item>'
        b"</channel></rss>"
    )
    atom = (
        b'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        b'<entry><title type="html">HSBC &lt;0005.HK&gt; &lt;em&gt;gains&lt;/em&gt;</title>'
        b'<link href="https://b.example/1"/><summary type="html">HSBC &lt;0005.HK&gt; rose</summary></entry>'
        b"</feed>"
    )
    items = parse_feed(rss, "https://a.example/rss") + parse_feed(atom, "https://b.example/feed")
    assert [(item.title, item.text) for item in items] == [
        ("Barclays <BARC.L> shares fall", "Apple <AAPL.O> beats estimates more"),
        ("HSBC <0005.HK> gains", "HSBC <0005.HK> rose"),
    ]
    document = (
        b'[{"title": "Apple <AAPL.O> beats", "text": "<p>Apple <AAPL.O> <b>rose</b></p>", "url": "/1"}]'
    )
    (item,) = parse_json(document, JsonFields(), "https://x.example/api")
    assert (item.title, item.text) == ("Apple <AAPL.O> beats", "Apple <AAPL.O> rose")
    page = ARTICLE.replace(b"raised its benchmark", b"<B>raised</B> its <BARC.L> benchmark")
    article = parse_article(page, "https://news.example.com/economy/rates")
    assert article is not None and "The central bank raised its <BARC.L> benchmark" in article.text

    tagger = Tagger(
        entities=[EntitySpec("Apple", ticker="AAPL"), EntitySpec("Barclays plc", ticker="BARC.L")]
    )
    tags = tagger.tag([f"{item.title} {item.text}" for item in items])
    assert [t.entities for t in tags] == [("Apple", "Barclays plc"), ()]


def test_ticker_marks_of_every_wire_shape_are_kept_and_real_markup_is_still_flattened() -> None:
    # Share classes (<BRKa.N>, <RDSa.L>, <BF-B.N>), indices (<.SPX>), quotes (<EUR=>) and marks written in
    # lower case (<brk.a>) were read as tags and dropped, or kept an RSS title's markup as written.
    marks = "Berkshire <BRKa.N>, Shell <RDSa.L>, Tencent <0700.HK>, <BF-B.N>, the <.SPX>, <EUR=> and <brk.a>"
    escaped = marks.replace("<", "&lt;").replace(">", "&gt;").encode()
    markup = b'&lt;br/&gt;&lt;b&gt;up&lt;/b&gt; &lt;img src="x.png"&gt;&lt;a href="/m"&gt;more&lt;/a&gt;'
    rss = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title><item>'
        b"<title>Shell &lt;RDSa.L&gt; &lt;b&gt;falls&lt;/b&gt;</title><link>https://a.example/1</link>"
        b"<description>&lt;p&gt;" + escaped + markup + b"&lt;/p&gt;</description></item></channel></rss>"
    )
    (item,) = parse_feed(rss, "https://a.example/rss")
    assert (item.title, item.text) == ("Shell <RDSa.L> falls", f"{marks} up more")

    document = json.dumps(
        [
            {
                "title": "Tencent <0700.HK> and <brk.a> <b>up</b>",
                "text": f"<p>{marks}<br/><img src=x></p>",
                "url": "/1",
            }
        ]
    ).encode()
    (item,) = parse_json(document, JsonFields(), "https://x.example/api")
    assert (item.title, item.text) == ("Tencent <0700.HK> and <brk.a> up", marks)

    page = ARTICLE.replace(b"raised its benchmark", b"<b>raised</b> its <BRKa.N> <eur=> <.SPX> benchmark")
    article = parse_article(page, "https://news.example.com/economy/rates")
    assert article is not None and "raised its <BRKa.N> <eur=> <.SPX> benchmark" in article.text


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("<b>up</b>", True),
        ("AT&amp;T", True),
        ("Bank&#8217;s profit", True),
        ('<p>Apple <a href="/x">beats</a><br/></p>', True),
        ("EPS < 1.0", False),  # a comparison, no markup
        ("EPS < 1.0 and P/E > 20, <b>up</b>", True),
        ("AT&T", False),  # no entity reference
        ("AT&T &bogus; cuts", False),  # an undefined entity
        ("<custom>cuts</custom>", False),  # an element HTML does not know
        ("<B>BOLD</B>", True),
        ("", False),
    ],
)
def test_looks_like_html_tells_markup_from_plain_text(text: str, html: bool) -> None:
    assert looks_like_html(text) is html


@pytest.mark.parametrize(
    ("title", "stored"),
    [
        # feedparser took these RSS titles for plain text (the ticker mark is no tag it knows)
        ("Apple &lt;AAPL.O&gt; EPS &lt; 1.0, &lt;b&gt;beats&lt;/b&gt;", "Apple <AAPL.O> EPS < 1.0, beats"),
        ("AT&amp;amp;T &lt;T.N&gt; cuts", "AT&T <T.N> cuts"),
        ("AT&amp;T &lt;T.N&gt; cuts", "AT&T <T.N> cuts"),
        ("Q3: EPS &lt; 1.0 &lt;T.N&gt;", "Q3: EPS < 1.0 <T.N>"),
        # not HTML by the rule, so stored as written
        ("AT&amp;T &lt;T.N&gt; &amp;bogus; cuts", "AT&T <T.N> &bogus; cuts"),
        ("AT&amp;T &lt;T.N&gt; &lt;custom&gt;cuts&lt;/custom&gt;", "AT&T <T.N> <custom>cuts</custom>"),
        # feedparser took this one for HTML itself
        ("EPS &lt; 1.0 &amp;amp; &lt;b&gt;AT&amp;amp;T&lt;/b&gt;", "EPS < 1.0 & AT&T"),
    ],
)
def test_an_rss_title_beside_a_ticker_mark_is_read_as_html_only_when_it_is(title: str, stored: str) -> None:
    rss = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title><item>'
        f"<title>{title}</title><link>https://a.example/1</link></item></channel></rss>"
    ).encode()
    (item,) = parse_feed(rss, "https://a.example/rss")
    assert item.title == stored


def test_parsing_relies_on_no_private_feedparser_helper() -> None:
    # A private helper (feedparser.mixin._FeedParserMixin.looks_like_html was one) may change or vanish in
    # any feedparser release. Every module of the package is read, wherever the feed parser lives.
    private, users = {}, []
    for module in sorted(Path(finance_sentiment.__file__).parent.glob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        nodes = list(ast.walk(tree))
        imported = [alias.name for node in nodes if isinstance(node, ast.Import) for alias in node.names]
        imported += [node.module or "" for node in nodes if isinstance(node, ast.ImportFrom)]
        if any(name.split(".")[0] == "feedparser" for name in imported):
            users.append(module.stem)
        private[module.stem] = [
            alias.name
            for node in nodes
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "feedparser"
            for alias in node.names
            if alias.name.startswith("_")
        ] + [
            node.attr
            for node in nodes
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "feedparser"
            if node.attr.startswith("_")
        ]
    assert users  # the feed parser was found
    assert {module: names for module, names in private.items() if names} == {}


def test_an_article_page_is_decoded_once_as_a_browser_shows_it() -> None:
    # trafilatura decodes the text and title it extracts once more after the HTML parser did: a page
    # showing "&amp;" as written (&amp;amp;) was stored as "&", and one quoting "&lt;b&gt;" as a tag.
    page = ARTICLE.replace(
        b"raised its benchmark",
        b"raised (AT&amp;amp;T, &amp;lt;b&amp;gt;, AT&amp;T, R&D, 5 &lt; 6, caf&eacute;, &#8217;)"
        b" its benchmark",
    ).replace(b"<title>Central bank", b"<title>&amp;amp; Central bank")
    page = page.replace(b'content="Central bank', b'content="&amp;amp; Central bank')
    article = parse_article(page, "https://news.example.com/economy/rates")
    assert article is not None
    assert "raised (AT&amp;T, &lt;b&gt;, AT&T, R&D, 5 < 6, café, ’) its benchmark" in article.text
    assert article.title == "&amp; Central bank raises rates again"
