"""Duplicate keys (canonical URLs, content hashes) and topic/entity tagging (real MiniLM for topics)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from finance_sentiment.dedup import canonical_url, content_hash
from finance_sentiment.tagging import EntitySpec, Tagger, Tags, TopicSpec
from textcore import Encoder
from textcore.errors import InvalidInput


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://News.Example.COM:443/Markets/Story/", "https://news.example.com/Markets/Story"),
        ("http://example.com:80", "http://example.com/"),
        ("http://example.com:8080/", "http://example.com:8080/"),
        ("https://example.com/a/./b/../c/#comments", "https://example.com/a/c"),
        ("https://example.com/a/b/..", "https://example.com/a"),
        (
            "https://example.com/s?utm_source=tw&b=2&UTM_Campaign=x&a=1&fbclid=abc&gclid=1&ref=home",
            "https://example.com/s?a=1&b=2",
        ),
        ("https://example.com/s?mc_cid=1&mc_eid=2&cmpid=3", "https://example.com/s"),
        ("https://example.com/s?q=a%2fb&&id=", "https://example.com/s?id=&q=a%2Fb"),
        ("https://example.com./x", "https://example.com/x"),
        ("http://[::1]:8000/a/", "http://[::1]:8000/a"),
    ],
)
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected
    assert canonical_url(expected) == expected  # idempotent


def test_canonical_url_keeps_what_identifies_the_content() -> None:
    # path case, non-tracking parameters and their values are content, not noise
    assert canonical_url("https://example.com/Story?ID=7") != canonical_url("https://example.com/story?id=7")
    assert canonical_url("https://example.com/s?page=2") != canonical_url("https://example.com/s?page=3")


@pytest.mark.parametrize(
    "url", ["/relative/path", "example.com/no-scheme", "https://example.com:notaport/", ""]
)
def test_canonical_url_refuses_non_absolute_urls(url: str) -> None:
    with pytest.raises(InvalidInput, match="expected an absolute URL"):
        canonical_url(url)


def test_content_hash_ignores_case_and_whitespace_only() -> None:
    base = content_hash("Tesla Shares Jump", "Shares rose 5% on Monday.\n\nAnalysts cheered.")
    assert base == content_hash(
        "  tesla   shares jump ", "SHARES rose 5%\ton Monday. Analysts\u00a0cheered.  "
    )
    assert len(base) == 64 and int(base, 16) >= 0
    assert base != content_hash("Tesla Shares Jump", "Shares fell 5% on Monday. Analysts cheered.")
    # the title/text boundary counts: moving words across it is a different story
    assert content_hash("a b", "c") != content_hash("a", "b c")


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger(
        topics=[
            TopicSpec("electric vehicles", keywords=("electric vehicle", "EV", "EVs")),
            TopicSpec("earnings", keywords=("earnings", "quarterly results")),
        ],
        entities=[
            EntitySpec("Tesla", ticker="TSLA", aliases=("Tesla Inc", "Tesla Motors")),
            EntitySpec("Berkshire Hathaway", ticker="BRK.B", aliases=("Berkshire",)),
            EntitySpec("Ford", ticker="F"),
        ],
    )


@pytest.mark.parametrize(
    ("text", "entities"),
    [
        ("$TSLA is up 5% premarket", ("Tesla",)),
        ("loading up on $tsla calls", ("Tesla",)),
        ("$XYZ and $abcd are squeezing", ("ABCD", "XYZ")),
        ("TSLA closed higher", ("Tesla",)),
        ("tsla closed higher", ()),  # a bare ticker is case-sensitive
        ("TSLAQ and XTSLA are other symbols", ()),
        ("TESLA MOTORS and tesla inc both name it", ("Tesla",)),
        ("Tesla's margins shrank", ("Tesla",)),
        ("The Teslaville fair opened", ()),  # names match whole words only
        ("$BRK.B and Berkshire", ("Berkshire Hathaway",)),
        ("BRK.B rose", ("Berkshire Hathaway",)),
        ("F is a letter, but $F is Ford", ("Ford",)),
        ("It costs $5 and US$20", ()),
        ("Ford and $GM, then $TSLA.", ("Ford", "GM", "Tesla")),
        # Reuters-style ticker marks: the whole mark or its root before the exchange suffix
        ("Tesla rival <TSLA.O> and <BRK.B> shares", ("Berkshire Hathaway", "Tesla")),
        ("Carmaker <F.N> recalls trucks", ("Ford",)),
        ("Unwatched <AAPL.O> beats", ()),
    ],
)
def test_entities(tagger: Tagger, text: str, entities: tuple[str, ...]) -> None:
    assert tagger.tag([text])[0].entities == entities


@pytest.mark.parametrize(
    ("text", "entities"),
    [
        ("Buffett's <BRKb.N> rises", ("Berkshire Hathaway",)),  # a lower-case share class
        ("Buffett's <brk.b> rises", ("Berkshire Hathaway",)),  # a mark written in lower case
        ("<RDSa.L> and <0700.HK> fall", ("Shell", "Tencent")),
        ("Whiskey maker <BF-B.N> rises", ("Brown-Forman",)),
        ("The <.SPX> fell as the <EUR=> firmed", ("Euro", "S&P 500")),
        ("Cupertino's <aapl.o> beats", ("Apple",)),
        # a mark naming no configured company tags nothing, as an upper-case one does
        ("Unwatched <GOOGL.O>, <VOWG_p.DE>, <.DJI>, <JPY=> and <msft.o>", ()),
    ],
)
def test_ticker_marks_of_every_wire_shape_name_the_configured_company(
    text: str, entities: tuple[str, ...]
) -> None:
    tagger = Tagger(
        entities=[
            EntitySpec("Berkshire Hathaway", ticker="BRK.B"),
            EntitySpec("Shell", ticker="RDSA"),
            EntitySpec("Tencent", ticker="0700.HK"),
            EntitySpec("Brown-Forman", ticker="BF.B"),
            EntitySpec("S&P 500", ticker="SPX"),
            EntitySpec("Euro", ticker="EUR"),
            EntitySpec("Apple", ticker="AAPL"),
        ]
    )
    assert tagger.tag([text])[0].entities == entities


def test_single_letter_tickers_do_not_match_bare(tagger: Tagger) -> None:
    assert tagger.tag(["F shares rose"])[0].entities == ()


def test_topics_by_keyword_keep_config_order(tagger: Tagger) -> None:
    tags = tagger.tag(
        [
            "Quarterly   results beat; the EV maker also sells Electric Vehicle chargers",
            "EVERYONE loves earnings season",
            "Nothing relevant here",
        ]
    )
    assert tags == [
        Tags(topics=("electric vehicles", "earnings"), entities=()),
        Tags(topics=("earnings",), entities=()),
        Tags(topics=(), entities=()),
    ]
    assert tagger.tag([]) == []


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder.from_pretrained("minilm", device="cpu", precision="fp32", batch_size=8)


def test_topics_by_description_with_the_real_minilm(encoder: Encoder) -> None:
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return encoder.encode(texts)

    tagger = Tagger(
        topics=[
            TopicSpec(
                "interest rates", description="Central banks changing interest rates and monetary policy"
            ),
            TopicSpec("football", keywords=("striker",)),
        ],
        embed=embed,
    )
    texts = [
        "The central bank raised its policy rate by 50 basis points",
        "The striker scored twice in the final",
        "Tesla delivered more cars than expected this quarter",
    ]
    tags = tagger.tag(texts)

    assert [t.topics for t in tags] == [("interest rates",), ("football",), ()]
    # the descriptions once, then the batch once
    assert calls == [["Central banks changing interest rates and monetary policy"], texts]
    tagger.tag(texts[:1])
    assert len(calls) == 3  # descriptions are not embedded again


def test_description_is_ignored_without_embed_and_embed_unused_without_descriptions(encoder: Encoder) -> None:
    described = TopicSpec("interest rates", description="Central banks changing interest rates")
    plain = Tagger(topics=[described])
    assert plain.tag(["The central bank raised its policy rate"])[0].topics == ()

    calls: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return encoder.encode(texts)

    keywords_only = Tagger(topics=[TopicSpec("rates", keywords=("rate",))], embed=embed)
    assert keywords_only.tag(["The rate rose"])[0].topics == ("rates",)
    assert calls == []


def test_an_embed_function_returning_the_wrong_shape_is_refused() -> None:
    tagger = Tagger(
        topics=[TopicSpec("t", description="anything")],
        embed=lambda texts: np.ones((1, 4), dtype=np.float32),
    )
    with pytest.raises(InvalidInput, match=r"expected embeddings of shape \(2, dim\); found \(1, 4\)"):
        tagger.tag(["one", "two"])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TopicSpec(""), "expected a non-empty topic name"),
        (lambda: TopicSpec("  ", keywords=("x",)), "expected a non-empty topic name"),
        (lambda: TopicSpec("t", keywords=("ok", " ")), "expected a non-empty keyword of topic 't'"),
        (lambda: TopicSpec("t"), "expected keywords or a description for topic 't'; found neither"),
        (lambda: TopicSpec("t", description=""), "expected a non-empty description"),
        (lambda: TopicSpec("t", keywords=("x",), threshold=0.0), r"expected a threshold in \(0, 1\]"),
        (lambda: TopicSpec("t", keywords=("x",), threshold=1.5), "found 1.5"),
        (lambda: TopicSpec("t", keywords=("x",), threshold=float("nan")), "found nan"),
        (lambda: EntitySpec(""), "expected a non-empty entity name"),
        (lambda: EntitySpec("Tesla", aliases=("",)), "expected a non-empty alias of entity 'Tesla'"),
        (lambda: EntitySpec("Tesla", ticker="TS LA"), "expected a ticker .* found 'TS LA'"),
        (lambda: EntitySpec("Tesla", ticker=""), "expected a ticker"),
        (
            lambda: Tagger(topics=[TopicSpec("t", keywords=("a",)), TopicSpec("t", keywords=("b",))]),
            "expected each topic name to be unique; found 't' twice",
        ),
        (
            lambda: Tagger(
                entities=[EntitySpec("Alphabet", ticker="GOOG"), EntitySpec("Google", ticker="goog")]
            ),
            "found 'goog' for both 'Alphabet' and 'Google'",
        ),
    ],
)
def test_invalid_specs_are_refused(make: Callable[[], object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        make()


def test_user_strings_are_escaped() -> None:
    special = Tagger(
        topics=[TopicSpec("s&p", keywords=("S&P 500", "a.b"))],
        entities=[EntitySpec("C++ Corp", aliases=("(c)",))],
    )
    assert special.tag(["The S&P   500 and C++ corp"])[0] == Tags(topics=("s&p",), entities=("C++ Corp",))
    assert special.tag(["axb and c corp"])[0] == Tags(topics=(), entities=())
