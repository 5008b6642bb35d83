"""Retrieval with the real MiniLM: dense, keyword, hybrid (RRF) and re-ranked search; the evaluation and
the training data and runs of the re-ranker and retriever built from FAQs (tiny random BERT for training)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from customer_service.cli import app as cli_app
from customer_service.database import Database
from customer_service.keyword import KeywordIndex
from customer_service.knowledge import FaqIn, KnowledgeBase
from customer_service.reranking import (
    reranker_pairs,
    retriever_pairs,
    train_reranker_from_faqs,
    train_retriever_from_faqs,
)
from customer_service.retrieval import Retriever, reciprocal_rank_fusion, reranker_passage
from customer_service.retrieval_eval import evaluate_retrieval, faq_id, ranking_metrics, read_faqs
from tests.conftest import migrated, shared_data
from textcore import Encoder, InvalidInput, Reranker, TrainConfig

FAQS = [
    FaqIn("password", "How do I reset my password?",
          "Use the 'Forgot password' link on the sign-in page and we email you a link to choose a new one.",
          "account"),
    FaqIn("lost-card", "What should I do if my card is lost or stolen?",
          "Block the card straight away in the mobile app, then order a replacement card.", "cards"),
    FaqIn("hours", "When are your branches open?",
          "Branches are open Monday to Friday from 9 am to 5 pm and closed on public holidays.", "branches"),
    FaqIn("fee", "How much does the current account cost?",
          "The current account costs 4 euros a month; students and pensioners pay nothing.", "fees"),
    FaqIn("mortgage", "Can I get a loan to buy a house?",
          "Yes: our mortgages finance up to 80% of the property value over as long as 30 years.", "loans"),
    FaqIn("abroad", "Does my card work in other countries?",
          "The card is accepted worldwide; a 1% foreign transaction fee applies outside the euro area.",
          "cards"),
    FaqIn("statement", "Where can I download my bank statements?",
          "Monthly statements are available as PDF files under Documents in online banking.", "accounts"),
    FaqIn("insurance", "Do you offer travel insurance?",
          "Premium card holders are covered by travel insurance for trips of up to 90 days.", "insurance"),
]  # fmt: skip
PARAPHRASES = [  # (query, the passage it must find first) - meaning, with few shared words
    ("I forgot the secret code I log in with", "password"),
    ("someone took my wallet with my debit card", "lost-card"),
    ("what time do you open in the morning", "hours"),
    ("monthly charges for a checking account", "fee"),
    ("financing to purchase a home", "mortgage"),
    ("monthly PDF statements online", "statement"),
]


@pytest.fixture(scope="module")
def minilm() -> Encoder:
    return Encoder.from_pretrained("minilm", device="cpu", precision="fp32")


@pytest.fixture
def kb(sqlite_url: str, minilm: Encoder, tmp_path: Path) -> Iterator[KnowledgeBase]:
    with migrated(Database(sqlite_url)) as db:
        base = KnowledgeBase.open(db, minilm, tmp_path / "index")
        base.upsert_faqs(FAQS)
        base.put_document("travel", "Travel tips", TRAVEL, "markdown")
        yield base


TRAVEL = """# Travel tips
## Before you go
Tell us your travel dates in the app so that card payments abroad are not declined.
## Cash
Withdraw cash abroad at partner ATMs without a withdrawal charge.
"""


@pytest.fixture(scope="module")
def reranker_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, minilm: Encoder) -> Path:
    """A re-ranker trained on the FAQs by `train_reranker_from_faqs` (tiny random BERT: fast, not good)."""
    output = tmp_path_factory.mktemp("reranker")
    config = TrainConfig(
        task="cross-encoder",
        base_model=str(tiny_model_dir),
        epochs=1,
        batch_size=4,
        max_length=64,
        evals_per_epoch=1,
        validation_fraction=0.25,
        device="cpu",
        precision="fp32",
    )
    result = train_reranker_from_faqs(FAQS, output, config, encoder=minilm, per_query=2, progress=False)
    assert result.output == output
    assert result.metadata["task"] == "cross-encoder" and result.metadata["data"]["faqs"] == len(FAQS)
    return output


def test_reciprocal_rank_fusion_order() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], rrf_k=60)
    assert [i for i, _ in fused] == ["a", "c", "b", "d"]
    scores = dict(fused)
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["b"] == pytest.approx(1 / 62) and scores["d"] == pytest.approx(1 / 63)
    # one list's second beats the other's third-plus-nothing; ties keep first-met order
    assert [i for i, _ in reciprocal_rank_fusion([["x", "y"], ["y", "x"]])] == ["x", "y"]


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_meaning_finds_the_answer_first(kb: KnowledgeBase, mode: str) -> None:
    retriever = Retriever(kb)
    for query, expected in PARAPHRASES:
        found = retriever.search(query, 3, mode)
        assert found[0].id == expected, (query, [p.id for p in found])
        assert len(found) == 3


def test_keyword_finds_shared_terms(kb: KnowledgeBase) -> None:
    retriever = Retriever(kb)
    assert retriever.search("download statements", 3, "keyword")[0].id == "statement"
    assert retriever.search("withdrawal charge at ATMs", 3, "keyword")[0].id == "travel#1"
    assert retriever.search("zebra", 3, "keyword") == []


def test_a_cost_or_a_price_is_searched_as_a_fee() -> None:
    # "how much does it cost", "what's the price of": no FAQ on fees shared a word with them
    index = KeywordIndex(
        ["fees", "abroad", "cards"],
        ["Are there fees for international transfers?", "How do I send money abroad?", "What do cards cost?"],
    )
    for word in ("price", "prices", "cost", "costs"):
        assert {i for i, _ in index.search(word, 3)} == {"fees", "cards"}, word
    assert [i for i, _ in index.search("fees", 3)] == ["fees"]  # the FAQs' own word is searched as it is
    assert [i for i, _ in index.search("send", 3)] == ["abroad"]


def test_a_knowledge_base_without_a_keyword_term_is_searched_by_meaning(
    sqlite_url: str, minilm: Encoder, tmp_path: Path
) -> None:
    # Its only FAQ is stopwords and one-letter words: storing it crashed in bm25s ("max() arg is an empty
    # sequence": a 500, and a traceback from `customer-service ingest`), and nothing was stored.
    with migrated(Database(sqlite_url)) as db:
        kb = KnowledgeBase.open(db, minilm, tmp_path / "index")
        kb.upsert_faqs([FaqIn("is-it", "Is it?", "It is.", "misc"), FaqIn("a", "A?", "5", "misc")])
        retriever = Retriever(kb)
        assert retriever.search("is it", 3, "keyword") == []
        assert {p.id for p in retriever.search("is it", 3, "hybrid")} == {"is-it", "a"}
        kb.upsert_faqs([FaqIn("hours", "When do branches open?", "At nine.", "branches")])  # terms now
        assert retriever.search("branches", 3, "keyword")[0].id == "hours"


def test_hybrid_is_the_rrf_of_dense_and_keyword(kb: KnowledgeBase) -> None:
    retriever = Retriever(kb, candidates=5, rrf_k=10)
    query = "card payments declined abroad"
    dense = [p.id for p in kb.dense(query, 5)]
    keyword = [p.id for p in kb.keyword(query, 5)]
    expected = reciprocal_rank_fusion([dense, keyword], rrf_k=10)[:4]
    found = retriever.search(query, 4, "hybrid")
    assert [(p.id, pytest.approx(p.score)) for p in found] == [(i, pytest.approx(s)) for i, s in expected]
    assert found[0].id in ("travel#0", "abroad")
    assert (found[0].title, found[0].kind) == (
        ("Travel tips > Before you go", "chunk") if found[0].id == "travel#0" else (FAQS[5].question, "faq")
    )


def test_similarities_are_the_cosines_of_dense_search(kb: KnowledgeBase) -> None:
    retriever = Retriever(kb)
    query = "what time do you open in the morning"
    dense = kb.dense(query, 4)
    found = retriever.similarities(query, [p.id for p in reversed(dense)] + ["gone"])
    assert found == pytest.approx([p.score for p in reversed(dense)] + [0.0], abs=1e-5)
    assert retriever.search(query, 1, "hybrid")[0].id == dense[0].id


def test_search_refuses_bad_requests(kb: KnowledgeBase) -> None:
    retriever = Retriever(kb)
    assert retriever.default_mode == "hybrid" and "rerank" not in retriever.modes
    with pytest.raises(InvalidInput, match="re-ranker"):
        retriever.search("card", 3, "rerank")
    with pytest.raises(InvalidInput, match="mode"):
        retriever.search("card", 3, "semantic")
    with pytest.raises(InvalidInput, match="k"):
        retriever.search("card", 0)
    with pytest.raises(InvalidInput, match="query"):
        retriever.search("   ", 3)
    with pytest.raises(InvalidInput, match="candidates"):
        Retriever(kb, candidates=0)


def test_rerank_rescores_the_hybrid_candidates(kb: KnowledgeBase, reranker_dir: Path) -> None:
    reranker = Reranker.load(reranker_dir, device="cpu", precision="fp32")
    retriever = Retriever(kb, reranker, candidates=6, fuse_rerank=False)
    assert retriever.default_mode == "rerank"
    query = "my card was stolen"
    candidates = retriever.search(query, 6, "hybrid")
    found = retriever.search(query, 4)  # default mode: rerank
    assert len(found) == 4
    assert {p.id for p in found} <= {p.id for p in candidates}
    probabilities = reranker.score(query, [reranker_passage(p.kind, p.title, p.text) for p in candidates])
    expected = sorted(
        zip([p.id for p in candidates], probabilities.tolist(), strict=True), key=lambda x: -x[1]
    )
    assert [(p.id, pytest.approx(p.score, abs=1e-6)) for p in found] == [
        (i, pytest.approx(s, abs=1e-6)) for i, s in expected[:4]
    ]
    assert all(0.0 <= p.score <= 1.0 for p in found)


def test_the_reranker_reads_each_faq_at_answer_time_as_in_training(
    kb: KnowledgeBase, reranker_dir: Path, minilm: Encoder
) -> None:
    # The app indexes each FAQ's question with its answer; the re-ranker must still be given the passage
    # in the format of its training rows, or it judges texts unlike any it learned from.
    reranker = Reranker.load(reranker_dir, device="cpu", precision="fp32")
    retriever = Retriever(kb, reranker, fuse_rerank=False)
    pairs = reranker_pairs([f.question for f in FAQS], [f.answer for f in FAQS], minilm, per_query=2)
    trained = {q: p for q, p, y in zip(pairs.queries, pairs.passages, pairs.labels, strict=True) if y == 1.0}
    for faq in FAQS:
        served = {p.id: p.score for p in retriever.search(faq.question, 20)}  # every passage, re-scored
        expected = float(reranker.score(faq.question, [trained[faq.question]])[0])
        assert served[faq.id] == pytest.approx(expected, abs=1e-5), faq.id
    assert reranker_passage("faq", FAQS[0].question, FAQS[0].answer) == FAQS[0].answer
    assert reranker_passage("chunk", "Travel tips > Cash", "Withdraw.") == "Travel tips > Cash\nWithdraw."


def test_evaluate_retrieval_scores_each_mode(kb: KnowledgeBase) -> None:
    queries = [q for q, _ in PARAPHRASES]
    expected: list[str | set[str]] = [e for _, e in PARAPHRASES]
    expected[0] = {"password", "statement"}  # several relevant ids: any counts
    seen: list[tuple[str, int, int]] = []
    results = evaluate_retrieval(
        Retriever(kb),
        queries,
        expected,
        ["dense", "keyword"],
        progress=lambda mode, done, total: seen.append((mode, done, total)),
    )
    assert set(results) == {"dense", "keyword"}
    assert results["dense"] == {"recall@1": 1.0, "recall@5": 1.0, "mrr@10": 1.0}
    for figures in results.values():
        assert set(figures) == {"recall@1", "recall@5", "mrr@10"}
        assert 0.0 <= figures["recall@1"] <= figures["recall@5"] <= 1.0
    assert seen[-1] == ("keyword", len(queries), len(queries))
    with pytest.raises(InvalidInput, match="expected"):
        evaluate_retrieval(Retriever(kb), queries, expected[:2], ["dense"])


def test_evaluate_retrieval_command_states_whether_questions_were_indexed(tmp_path: Path) -> None:
    kb_file, queries = tmp_path / "kb.csv", tmp_path / "queries.csv"
    with kb_file.open("w", newline="") as f:
        csv.writer(f).writerows([("id", "question", "answer"), *((x.id, x.question, x.answer) for x in FAQS)])
    with queries.open("w", newline="") as f:
        csv.writer(f).writerows([("query", "id"), *PARAPHRASES])
    runner = CliRunner()
    base = ["evaluate-retrieval", "--kb", str(kb_file), "--queries", str(queries), "--device", "cpu"]
    reports = {}
    for flag in ("--index-questions", "--no-index-questions", None):
        result = runner.invoke(cli_app, [*base, flag] if flag else base)
        assert result.exit_code == 0, result.output
        reports[flag] = json.loads(result.stdout.splitlines()[-1])
    assert reports[None]["index_questions"] is True  # the default, as the app indexes
    assert reports["--index-questions"]["index_questions"] is True
    assert reports["--no-index-questions"]["index_questions"] is False
    assert reports[None]["n"] == len(PARAPHRASES)
    shown = runner.invoke(cli_app, ["evaluate-retrieval", "--help"], terminal_width=200)
    help_text = " ".join(shown.output.replace("│", " ").split())
    assert "--no-index-questions indexes the answers alone" in help_text
    assert "index_questions" in help_text


def test_ranking_metrics() -> None:
    figures = ranking_metrics([1, 3, None, 12])
    assert figures == {"recall@1": 0.25, "recall@5": 0.5, "mrr@10": pytest.approx((1 + 1 / 3) / 4)}


def test_read_faqs_generates_stable_ids(tmp_path: Path) -> None:
    path = tmp_path / "faqs.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "answer", "category"])
        writer.writerows(
            [["Q1?", "A1.", "x"], ["Q2?", "A2.", ""], ["Q1?", "A1.", "x"], ["Q1?", "Another.", "x"]]
        )
    faqs = read_faqs(path)
    assert [(f.question, f.answer, f.category) for f in faqs] == [
        ("Q1?", "A1.", "x"),
        ("Q2?", "A2.", ""),
        ("Q1?", "Another.", "x"),
    ]
    assert [f.id for f in faqs] == [faq_id("Q1?", "A1."), faq_id("Q2?", "A2."), faq_id("Q1?", "Another.")]
    assert faqs[0].id == read_faqs(path)[0].id and faqs[0].id.startswith("faq-") and len(faqs[0].id) == 16

    given = tmp_path / "faqs.jsonl"
    rows = [{"key": "k1", "q": "Q?", "a": "A."}, {"key": "k1", "q": "Q2?", "a": "A2."}]
    given.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    with pytest.raises(InvalidInput, match="repeats the id 'k1'"):
        read_faqs(given, id_column="key", question_column="q", answer_column="a")
    with pytest.raises(InvalidInput, match="answer"):
        read_faqs(given)
    path.write_text("question,answer\nQ?,\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="row 1 has an empty 'answer'"):
        read_faqs(path)


def test_read_the_bank_faqs() -> None:
    faqs = read_faqs(shared_data("bank_faqs/faqs.csv"))
    assert len(faqs) == len({f.id for f in faqs}) > 1000
    assert {f.category for f in faqs} <= {
        "security",
        "loans",
        "accounts",
        "insurance",
        "investments",
        "fundstransfer",
        "cards",
    }


def test_reranker_pairs_never_use_a_questions_own_answer_as_negative(minilm: Encoder) -> None:
    questions = [f.question for f in FAQS] + [FAQS[0].question]
    answers = [f.answer for f in FAQS] + [FAQS[3].answer]  # the first question has two answers
    pairs = reranker_pairs(questions, answers, minilm, per_query=3, corpus=["An unrelated passage."])
    for question, answer in zip(questions, answers, strict=True):
        rows = [
            (p, y)
            for q, p, y in zip(pairs.queries, pairs.passages, pairs.labels, strict=True)
            if q == question
        ]
        assert (answer, 1.0) in rows
        own = {a for q, a in zip(questions, answers, strict=True) if q == question}
        assert not [p for p, y in rows if y == 0.0 and p in own]
    assert sum(y == 0.0 for y in pairs.labels) >= 3 * len(FAQS) - 3

    plain = retriever_pairs(questions, answers)
    assert plain.negatives is None and plain.anchors == questions and plain.positives == answers
    mined = retriever_pairs(questions, answers, minilm)
    assert mined.negatives is not None and len(mined.negatives) == len(questions)
    for q, negative in zip(questions, mined.negatives, strict=True):
        assert negative not in {a for q2, a in zip(questions, answers, strict=True) if q2 == q}
    with pytest.raises(InvalidInput, match="one answer per question"):
        reranker_pairs(questions, answers[:2], minilm)


def test_training_runs_check_their_task(tmp_path: Path, tiny_model_dir: Path, minilm: Encoder) -> None:
    with pytest.raises(InvalidInput, match="cross-encoder"):
        train_reranker_from_faqs(FAQS, tmp_path / "r", TrainConfig(), encoder=minilm)
    with pytest.raises(InvalidInput, match="embedding"):
        train_retriever_from_faqs(FAQS, tmp_path / "e", TrainConfig(task="cross-encoder"))

    config = TrainConfig(
        task="embedding",
        base_model=str(tiny_model_dir),
        epochs=1,
        batch_size=4,
        max_length=64,
        evals_per_epoch=1,
        validation_fraction=0.25,
        device="cpu",
        precision="fp32",
    )
    result = train_retriever_from_faqs(FAQS, tmp_path / "e", config, encoder=minilm, progress=False)
    assert result.metadata["task"] == "embedding" and result.metadata["data"]["hard_negatives"] is True
    tuned = Encoder.from_pretrained(tmp_path / "e", device="cpu", precision="fp32")
    assert tuned.encode(["hello"]).shape == (1, tuned.dim)


def test_fused_rerank_orders_by_both_rankings(kb: KnowledgeBase, reranker_dir: Path) -> None:
    reranker = Reranker.load(reranker_dir, device="cpu", precision="fp32")
    retriever = Retriever(kb, reranker, candidates=6)  # fuse_rerank by default
    query = "my card was stolen"
    hybrid = [p.id for p in retriever.search(query, 6, "hybrid")]
    alone = Retriever(kb, reranker, candidates=6, fuse_rerank=False).search(query, 6)
    fused = retriever.search(query, 6)
    expected = [i for i, _ in reciprocal_rank_fusion([hybrid, [p.id for p in alone]])]
    assert [p.id for p in fused] == expected
    # each passage keeps its re-ranker probability as its score
    assert {p.id: p.score for p in fused} == pytest.approx({p.id: p.score for p in alone})


def test_evaluate_retrieval_command_refuses_expected_ids_the_kb_lacks(tmp_path: Path) -> None:
    # A typo or an id of another version of the FAQ file was scored as a miss without a word: the figures
    # dropped and nothing said why.
    kb_file, queries = tmp_path / "kb.csv", tmp_path / "queries.csv"
    with kb_file.open("w", newline="") as f:
        csv.writer(f).writerows([("id", "question", "answer"), *((x.id, x.question, x.answer) for x in FAQS)])
    query, expected = PARAPHRASES[0]
    with queries.open("w", newline="") as f:
        csv.writer(f).writerows([("query", "id"), (query, expected), (query, f"{expected}-old"), (query, "")])
    result = CliRunner().invoke(
        cli_app, ["evaluate-retrieval", "--kb", str(kb_file), "--queries", str(queries)]
    )
    assert result.exit_code == 2, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert f"2 of 3 rows name none (row 2: '{expected}-old', row 3: '')" in line
    assert "'id'" in line and str(queries) in line
