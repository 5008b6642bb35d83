"""Tests for textcore.data: reading CSV/TSV/JSONL tables, labelled texts, class checks, splits and folds."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from textcore.data import (
    LabelledTexts,
    file_sha256,
    read_labelled,
    read_pairs,
    read_scored_pairs,
    read_table,
    read_texts,
    stratified_folds,
    stratified_split,
)
from textcore.errors import InvalidInput
from textcore.labelled import require_classes

ROWS = [
    {"text": "the parcel arrived late", "label": "shipping"},
    {"text": "refund, please", "label": "billing"},
    {"text": 'a "quoted" word', "label": "other"},
]


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_read_table_csv(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "d.csv",
        'text,label\nthe parcel arrived late,shipping\n"refund, please",billing\n"a ""quoted"" word",other\n',
    )
    assert read_table(path) == ROWS


def test_read_table_tsv(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "d.tsv",
        "text\tlabel\nthe parcel arrived late\tshipping\nrefund, please\tbilling\n"
        '"a ""quoted"" word"\tother\n',
    )
    assert read_table(path) == ROWS


def test_read_table_jsonl_stringifies_values_and_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    lines = [json.dumps(r) for r in ROWS]
    path.write_text(lines[0] + "\n\n" + "\n".join(lines[1:]) + "\n", encoding="utf-8")
    assert read_table(path) == ROWS
    other = tmp_path / "n.ndjson"
    other.write_text('{"text": "x", "n": 3, "none": null, "tags": ["a"]}\n', encoding="utf-8")
    assert read_table(other) == [{"text": "x", "n": "3", "none": "", "tags": '["a"]'}]


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_utf8_bom_is_not_part_of_the_first_column_name(tmp_path: Path, suffix: str) -> None:
    sep = "\t" if suffix == ".tsv" else ","
    path = write_csv(tmp_path / f"bom{suffix}", f"text{sep}label\ncafé{sep}a\n", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert read_table(path) == [{"text": "café", "label": "a"}]
    assert read_labelled(path, "text", "label").texts == ["café"]


def test_utf8_bom_in_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"text": "hi", "label": "a"}).encode() + b"\n")
    assert read_table(path) == [{"text": "hi", "label": "a"}]


def test_csv_quoted_line_breaks_are_kept(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "ml.csv", 'text,label\n"line one\nline two",a\nsingle,b\n')
    assert read_table(path) == [
        {"text": "line one\nline two", "label": "a"},
        {"text": "single", "label": "b"},
    ]


def test_crlf_files(tmp_path: Path) -> None:
    path = tmp_path / "crlf.csv"
    path.write_bytes(b"text,label\r\nfirst,a\r\nsecond,b\r\n")
    assert read_table(path) == [{"text": "first", "label": "a"}, {"text": "second", "label": "b"}]
    jsonl = tmp_path / "crlf.jsonl"
    jsonl.write_bytes(b'{"text": "first"}\r\n{"text": "second"}\r\n')
    assert read_table(jsonl) == [{"text": "first"}, {"text": "second"}]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x1c"])
def test_unicode_line_separators_inside_a_value_do_not_split_rows(tmp_path: Path, separator: str) -> None:
    text = f"before{separator}after"
    csv_path = write_csv(tmp_path / "sep.csv", f'text,label\n"{text}",a\nplain,b\n')
    assert read_table(csv_path) == [{"text": text, "label": "a"}, {"text": "plain", "label": "b"}]
    jsonl_path = tmp_path / "sep.jsonl"
    jsonl_path.write_text(json.dumps({"text": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert read_table(jsonl_path) == [{"text": text}]


def test_malformed_jsonl_line_names_the_line_number(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok", "label": "a"}\n\n{"text": "broken", \n', encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        read_table(path)
    assert f"{path}:3:" in info.value.message
    assert "JSON object" in info.value.message


def test_jsonl_line_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.jsonl"
    path.write_text('{"text": "ok"}\n["text", "x"]\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match=r":2: expected a JSON object; found list"):
        read_table(path)


def test_missing_file_unknown_suffix_and_bad_encoding(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        read_table(tmp_path / "absent.csv")
    pipe = tmp_path / "pipe.csv"  # was "it does not exist"
    os.mkfifo(pipe)
    with pytest.raises(
        InvalidInput, match="expected a readable data file; found a device, a pipe or a socket"
    ):
        read_table(pipe)
    odd = tmp_path / "data.xlsx"
    odd.write_bytes(b"x")
    with pytest.raises(InvalidInput, match=r"found \.xlsx"):
        read_table(odd)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"text,label\ncaf\xe9,a\n")
    with pytest.raises(InvalidInput, match="UTF-8") as info:
        read_table(latin)
    assert str(latin) in info.value.message
    # a spreadsheet's "Unicode text" export was answered "byte 0 is not valid UTF-8"
    wide = tmp_path / "wide.tsv"
    wide.write_bytes("text\tlabel\ncafé\ta\n".encode("utf-16"))
    with pytest.raises(InvalidInput, match=r"expected UTF-8 text; it is UTF-16 .*; save it as UTF-8"):
        read_table(wide)


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    empty = write_csv(tmp_path / "empty.csv", "")
    with pytest.raises(InvalidInput, match="header"):
        read_table(empty)
    header = write_csv(tmp_path / "header.csv", "text,label\n")
    assert read_table(header) == []
    with pytest.raises(InvalidInput, match="at least one data row"):
        read_labelled(header, "text", "label")


def test_read_labelled_checks_columns_and_empty_cells(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "text,label\nhello, a \nworld,b\n")
    data = read_labelled(path, "text", "label")
    assert data.texts == ["hello", "world"]
    assert data.labels == ["a", "b"]  # labels are stripped
    with pytest.raises(InvalidInput, match=r"expected column\(s\) category; found text, label"):
        read_labelled(path, "text", "category")
    blank = write_csv(tmp_path / "blank.csv", "text,label\nhello,a\n  ,b\n")
    with pytest.raises(InvalidInput, match="row 2 has an empty 'text'"):
        read_labelled(blank, "text", "label")
    assert read_texts(path, "text") == ["hello", "world"]
    with pytest.raises(InvalidInput, match="expected column"):
        read_texts(path, "body")


def test_a_missing_column_error_shows_a_header_read_as_one_column_or_spaced_names(tmp_path: Path) -> None:
    # A spreadsheet's ";"-separated export was refused with "found text;label", and a header " text ,label"
    # with "found  text , label": the cause was left to guess.
    semicolons = write_csv(tmp_path / "semi.csv", "text;label\nhello;a\nworld;b\n")
    with pytest.raises(InvalidInput) as info:
        read_labelled(semicolons, "text", "label")
    assert info.value.message.endswith(
        "expected column(s) text, label; found text;label (one column holding ';': a .csv file is read "
        "comma-separated, a .tsv file tab-separated)"
    )
    spaced = write_csv(tmp_path / "spaced.csv", " text ,label\nhello,a\n")
    with pytest.raises(InvalidInput, match=r"expected column\(s\) text; found ' text ', label$"):
        read_labelled(spaced, "text", "label")


def test_file_sha256_is_the_hash_of_the_bytes(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "abc")  # the FIPS 180-2 test vector
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_require_classes(tmp_path: Path) -> None:
    assert require_classes(LabelledTexts(["a", "b", "c"], ["y", "x", "y"]), "train") == ["x", "y"]
    with pytest.raises(
        InvalidInput, match=r"train: expected at least two distinct labels; found only \['x'\]"
    ):
        require_classes(LabelledTexts(["a", "b"], ["x", "x"]), "train")


def labelled(counts: dict[str, int]) -> LabelledTexts:
    texts, labels = [], []
    for label, n in counts.items():
        texts += [f"{label}-{i}" for i in range(n)]
        labels += [label] * n
    return LabelledTexts(texts, labels)


def test_stratified_split_keeps_every_class_in_validation() -> None:
    data = labelled({"big": 40, "mid": 10, "small": 2, "single": 1})
    train, val = stratified_split(data, 0.1, seed=0)
    assert len(train) + len(val) == len(data)
    assert sorted(train.texts + val.texts) == sorted(data.texts)
    assert set(train.texts).isdisjoint(val.texts)
    assert val.label_counts() == {"big": 4, "mid": 1, "small": 1}
    assert train.label_counts() == {"big": 36, "mid": 9, "single": 1, "small": 1}
    for text, label in zip(val.texts, val.labels, strict=True):
        assert text.startswith(f"{label}-")


def test_stratified_split_is_deterministic_per_seed() -> None:
    data = labelled({"a": 30, "b": 30})
    first = stratified_split(data, 0.2, seed=7)
    assert stratified_split(data, 0.2, seed=7) == first
    other = stratified_split(data, 0.2, seed=8)
    assert other != first
    assert other[1].label_counts() == first[1].label_counts() == {"a": 6, "b": 6}


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_stratified_split_refuses_a_fraction_outside_0_1(fraction: float) -> None:
    with pytest.raises(InvalidInput, match="validation fraction"):
        stratified_split(labelled({"a": 5, "b": 5}), fraction, seed=0)


def test_stratified_folds_hold_every_row_out_once_with_each_class_spread_evenly() -> None:
    data = LabelledTexts(
        [f"big-{i}" for i in range(23)] + [f"mid-{i}" for i in range(7)] + ["small-0", "small-1"],
        ["big"] * 23 + ["mid"] * 7 + ["small"] * 2,
        [float(i) for i in range(32)],
    )
    folds = stratified_folds(data, 5, seed=3)
    assert len(folds) == 5
    held_out = [text for _, held in folds for text in held.texts]
    assert sorted(held_out) == sorted(data.texts)  # every row held out exactly once
    for rest, held in folds:
        assert sorted(rest.texts + held.texts) == sorted(data.texts)
        assert set(rest.texts).isdisjoint(held.texts)
        assert len(held) in (6, 7)  # 32 rows dealt to 5 parts
        counts = held.label_counts()
        assert counts["big"] in (4, 5) and counts["mid"] in (1, 2)
        for text, label, weight in zip(held.texts, held.labels, held.weights or [], strict=True):
            assert text.startswith(f"{label}-") and data.texts[int(weight)] == text  # rows kept whole
    assert sum("small" in held.label_counts() for _, held in folds) == 2


def test_stratified_folds_are_deterministic_per_seed() -> None:
    data = labelled({"a": 20, "b": 10})
    first = stratified_folds(data, 3, seed=7)
    assert stratified_folds(data, 3, seed=7) == first
    assert stratified_folds(data, 3, seed=8) != first


@pytest.mark.parametrize("k", [1, 0, 11])
def test_stratified_folds_refuse_a_count_outside_2_to_the_rows(k: int) -> None:
    with pytest.raises(InvalidInput, match=r"folds: expected an integer in \[2, 10\]"):
        stratified_folds(labelled({"a": 5, "b": 5}), k, seed=0)


def test_read_labelled_takes_a_jsonl_list_of_labels_as_a_multi_label_cell(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    rows = [
        {"text": "rates rose", "label": ["finance", " macro "], "tags": ["x", "y"]},
        {"text": "shares fell", "label": ["finance"]},
        {"text": "code 7", "label": [7, "ops"]},
        {"text": "plain", "label": "finance|ops"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    data = read_labelled(path, "text", "label")
    assert data.labels == ["finance|macro", "finance", "7|ops", "finance|ops"]
    assert read_table(path)[0]["tags"] == '["x", "y"]'  # other columns keep their JSON text
    assert read_table(path)[0]["label"] == '["finance", " macro "]'  # as does read_table unless asked


def test_read_labelled_refuses_an_object_for_a_label(tmp_path: Path) -> None:
    # Its JSON text ('{"name": "pos"}') was taken for the label.
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "t", "label": {"name": "pos"}}) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"d\.jsonl:1: 'label' holds an object; expected a label or a"):
        read_labelled(path, "text", "label")


@pytest.mark.parametrize("item", [["nested"], {"a": 1}, None, True, "a|b"])
def test_read_labelled_refuses_a_list_label_it_cannot_write_as_one_cell(tmp_path: Path, item: object) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "t", "label": ["ok", item]}) + "\n", encoding="utf-8")
    with pytest.raises(
        InvalidInput, match=r"d\.jsonl:1: 'label' holds .* in its list; expected label strings"
    ):
        read_labelled(path, "text", "label")


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_row_with_more_fields_than_the_header_is_refused(tmp_path: Path, suffix: str) -> None:
    # "profits rose, strongly,pos" was read as text "profits rose" with label " strongly" and 'pos' dropped:
    # a wrong label, learnt without a word.
    sep = "\t" if suffix == ".tsv" else ","
    path = write_csv(
        tmp_path / f"d{suffix}",
        f'text{sep}label\nsales fell{sep}neg\n"a\nb"{sep}x\nprofits rose{sep} strongly{sep}pos\n',
    )
    with pytest.raises(
        InvalidInput, match=r"row 3 \(line 5\) has 3 fields, the header 2; expected one field"
    ):
        read_labelled(path, "text", "label")


def test_empty_fields_past_the_header_are_no_loss(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", "text,label\nsales fell,neg,\nprofits rose,pos,,\n")
    assert read_table(path) == [
        {"text": "sales fell", "label": "neg"},
        {"text": "profits rose", "label": "pos"},
    ]


@pytest.mark.parametrize(
    ("read", "row"),
    [
        (lambda p: read_labelled(p, "text", "label"), {"text": {"title": "t", "body": "b"}, "label": "a"}),
        (lambda p: read_texts(p, "text"), {"text": ["first", "second"]}),
        (lambda p: read_pairs(p, "text", "positive"), {"text": "q", "positive": ["p1", "p2"]}),
        (lambda p: read_scored_pairs(p, "text", "passage", "label"), {"text": ["q"], "passage": "p"}),
    ],
    ids=["labelled-object", "texts-list", "pairs-list-of-positives", "scored-pairs-list"],
)
def test_a_jsonl_text_that_is_a_list_or_object_is_refused(
    tmp_path: Path, read: Callable[[Path], object], row: dict[str, object]
) -> None:
    # Its JSON text ('["p1", "p2"]') was learnt from as if it were a text, without a word.
    path = tmp_path / "d.jsonl"
    first = {"text": "fine", "label": "1", "positive": "p", "passage": "p"}
    path.write_text(json.dumps(first) + "\n" + json.dumps({**first, **row}) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"d\.jsonl:2: '\w+' holds an? (list|object); expected a text"):
        read(path)


@pytest.mark.parametrize(
    ("body", "where", "problem"),
    [
        ('a,pos\n"Shares rose on "good" news,pos\nb,neg\n', "row 2 (from line 3)", "',' expected after"),
        ('a,pos\n"two\nlines",neg\n"unclosed,pos\nb,neg\nc,pos\n', "row 3 (from line 5)", "unexpected end"),
    ],
    ids=["quote-inside-a-quoted-field", "quote-never-closed"],
)
def test_a_malformed_quoted_field_is_refused_naming_its_row(
    tmp_path: Path, body: str, where: str, problem: str
) -> None:
    # The reader made text up: 'Shares rose on good" news', or one text of every row after an
    # unclosed quote (the rows it swallowed were lost without a word).
    path = write_csv(tmp_path / "d.csv", "text,label\n" + body)
    with pytest.raises(InvalidInput, match=rf"d\.csv: {re.escape(where)}: malformed CSV: {problem}"):
        read_labelled(path, "text", "label")


def test_quotes_inside_an_unquoted_field_are_kept(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", 'text,label\nhe said "hi" there,a\n"said ""hi""",b\n')
    assert read_labelled(path, "text", "label").texts == ['he said "hi" there', 'said "hi"']


def test_a_header_that_names_a_column_twice_is_refused(tmp_path: Path) -> None:
    # Each row kept the last 'label' field only: the first column's labels were dropped without a word.
    path = write_csv(tmp_path / "d.csv", "text,label,label\nhello,pos,neg\nbye,neg,pos\n")
    with pytest.raises(InvalidInput, match=r"d\.csv: the header names 'label' 2 times; expected each"):
        read_labelled(path, "text", "label")
    assert read_table(write_csv(tmp_path / "e.csv", "text,,\nhello,,\n")) == [{"text": "hello", "": ""}]
