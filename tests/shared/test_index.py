"""Tests for textcore.index: exact and HNSW search, validation, persistence and concurrent use."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from textcore.errors import Conflict, InvalidInput, NotFound
from textcore.index import SearchHit, VectorIndex

DIM = 16


def unit(n: int, dim: int = DIM, seed: int = 0) -> npt.NDArray[np.float32]:
    """(n, dim) float32 rows of unit length, deterministic for a seed."""
    x = np.random.default_rng(seed).standard_normal((n, dim))
    rows: npt.NDArray[np.float32] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return rows


def kind(index: VectorIndex) -> str:
    return index.kind  # widened to str so that mypy keeps no narrowing across mutations


def filled(n: int = 30, dim: int = DIM, seed: int = 0, **kwargs: int) -> VectorIndex:
    index = VectorIndex(dim, **kwargs)
    index.add([f"d{i}" for i in range(n)], unit(n, dim, seed))
    return index


def test_upsert_then_search_returns_it_first_with_score_one() -> None:
    index = filled()
    v = unit(1, seed=99)
    index.upsert(["new"], v)
    hits = index.search(v[0], 3)
    assert len(hits) == 3
    assert hits[0].id == "new"
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert isinstance(hits[0], SearchHit)
    assert type(hits[0].score) is float
    assert len(index) == 31
    assert "new" in index
    assert index.kind == "exact"


def test_search_batch_matches_single_searches() -> None:
    index = filled()
    queries = unit(4, seed=5)
    assert index.search_batch(queries, 5) == [index.search(q, 5) for q in queries]
    assert index.search_batch(np.empty((0, DIM), np.float32), 5) == []


def test_k_larger_than_collection_and_empty_index() -> None:
    assert VectorIndex(DIM).search(unit(1)[0], 5) == []
    index = filled(n=3)
    assert sorted(h.id for h in index.search(unit(1, seed=7)[0], 10)) == ["d0", "d1", "d2"]


def test_removed_doc_is_never_returned() -> None:
    index = filled()
    vectors = unit(30)
    gone = [f"d{i}" for i in range(0, 30, 3)]
    assert index.remove([*gone, "unknown"]) == len(gone)
    assert index.remove(["unknown"]) == 0
    assert len(index) == 30 - len(gone)
    for i in range(0, 30, 3):
        ids = {h.id for h in index.search(vectors[i], len(index))}
        assert not ids & set(gone)
        assert f"d{i}" not in index
    with pytest.raises(NotFound):
        index.get("d0")
    assert index.search(vectors[1], 1)[0].id == "d1"


def test_upsert_replaces_the_vector() -> None:
    index = filled()
    old, new = unit(2, seed=42)
    index.upsert(["x"], old[None, :])
    index.upsert(["x", "y"], np.stack([new, old]))
    np.testing.assert_array_equal(index.get("x"), new)
    top = index.search(new, 1)[0]
    assert top.id == "x"
    assert top.score == pytest.approx(1.0, abs=1e-5)
    assert index.search(old, 1)[0].id == "y"
    assert len(index) == 32
    assert index.ids()[-2:] == ["x", "y"]


def test_get_many_gathers_copies_in_the_order_given() -> None:
    index = filled()
    vectors = unit(30)
    index.remove(["d0"])  # rows shift: the gather must follow ids, not positions
    got = index.get_many(["d7", "d2", "d29", "d2"])
    assert got.dtype == np.float32 and got.shape == (4, DIM)
    np.testing.assert_array_equal(got, vectors[[7, 2, 29, 2]])
    got[:] = 0  # a copy: the stored vectors stay as they were
    np.testing.assert_array_equal(index.get("d7"), vectors[7])
    assert index.get_many([]).shape == (0, DIM)
    assert VectorIndex(DIM).get_many([]).shape == (0, DIM)


def test_get_many_names_the_missing_ids() -> None:
    index = filled()
    with pytest.raises(NotFound, match=r"\['d0x', 'gone'\] \(2 in all\)"):
        index.get_many(["d1", "d0x", "d2", "gone"])
    with pytest.raises(InvalidInput, match="expected a sequence of strings"):
        index.get_many("d1")


def test_add_existing_id_conflicts_and_adds_nothing() -> None:
    index = filled()
    with pytest.raises(Conflict, match="d3"):
        index.add(["fresh", "d3"], unit(2, seed=3))
    assert "fresh" not in index
    assert len(index) == 30


@pytest.mark.parametrize(
    ("ids", "vectors", "expected"),
    [
        (["a", "b"], unit(2, dim=8), r"expected shape \(n, 16\), found \(2, 8\)"),
        (["a"], unit(1)[0], r"expected shape \(n, 16\), found \(16,\)"),
        (["a", "b"], unit(2).astype(np.float64), "expected dtype float32, found float64"),
        (["a", "b"], np.full((2, DIM), np.nan, np.float32), "expected finite values, found NaN"),
        (["a", "a"], unit(2), r"expected unique ids, found repeats \['a'\]"),
        (["a"], unit(2), "expected one id per row, found 1 ids for 2 rows"),
        ("ab", unit(2), "expected a sequence of strings"),
        ([1, 2], unit(2), "expected a sequence of strings"),
    ],
)
def test_invalid_add_says_expected_and_found(ids: list[str], vectors: np.ndarray, expected: str) -> None:
    index = VectorIndex(DIM)
    for method in (index.add, index.upsert):
        with pytest.raises(InvalidInput, match=expected):
            method(ids, vectors)
    assert len(index) == 0


def test_invalid_search_says_expected_and_found() -> None:
    index = filled()
    with pytest.raises(InvalidInput, match=r"expected shape \(16,\), found \(8,\)"):
        index.search(unit(1, dim=8)[0], 3)
    with pytest.raises(InvalidInput, match="expected dtype float32, found float64"):
        index.search(unit(1)[0].astype(np.float64), 3)
    with pytest.raises(InvalidInput, match="expected a positive integer, found 0"):
        index.search(unit(1)[0], 0)
    with pytest.raises(InvalidInput, match="dim: expected a positive integer, found 0"):
        VectorIndex(0)


def test_save_load_round_trip_gives_identical_results(tmp_path: Path) -> None:
    index = filled(n=60, approximate_threshold=1000, ef_search=32)
    index.remove(["d5"])
    index.upsert(["d7", "extra"], unit(2, seed=8))
    path = tmp_path / "index.npz"
    index.save(path)
    loaded = VectorIndex.load(str(path))
    assert loaded.dim == DIM
    assert loaded.kind == index.kind == "exact"
    assert loaded.ids() == index.ids()
    for i in index.ids():
        np.testing.assert_array_equal(loaded.get(i), index.get(i))
    queries = unit(10, seed=11)
    assert loaded.search_batch(queries, 7) == index.search_batch(queries, 7)


def test_save_load_keeps_settings(tmp_path: Path) -> None:
    index = filled(n=60, approximate_threshold=50, hnsw_m=8, ef_search=16)
    index.save(tmp_path / "i.npz")
    loaded = VectorIndex.load(tmp_path / "i.npz")
    assert kind(loaded) == "hnsw"
    loaded.remove(["d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9", "d10"])
    assert kind(loaded) == "exact"  # 49 <= 50: the threshold travelled with the file


def test_save_replaces_atomically_and_leaves_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "index.npz"
    filled(n=5).save(path)
    inode = path.stat().st_ino
    filled(n=8).save(path)
    assert path.stat().st_ino != inode  # a new file was moved in, not the old one rewritten
    assert [p.name for p in tmp_path.iterdir()] == ["index.npz"]
    assert len(VectorIndex.load(path)) == 8

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        filled(n=3).save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["index.npz"]
    assert len(VectorIndex.load(path)) == 8


def test_load_missing_is_not_found_and_corrupt_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no index file"):
        VectorIndex.load(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not an index at all")
    with pytest.raises(InvalidInput, match="not a valid index file"):
        VectorIndex.load(garbage)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, vectors=unit(2))
    with pytest.raises(InvalidInput, match="not a valid index file"):
        VectorIndex.load(wrong)
    truncated = tmp_path / "truncated.npz"
    filled().save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(InvalidInput, match="not a valid index file"):
        VectorIndex.load(truncated)


def test_crossing_threshold_switches_to_hnsw_and_stays_correct() -> None:
    dim = 32
    vectors = unit(200, dim=dim, seed=1)
    ids = [f"v{i}" for i in range(200)]
    index = VectorIndex(dim, approximate_threshold=50)
    index.add(ids[:50], vectors[:50])
    assert kind(index) == "exact"
    assert index.search(vectors[0], 1)[0].id == "v0"
    index.add(ids[50:], vectors[50:])
    assert kind(index) == "hnsw"
    for i, v in zip(ids, vectors, strict=True):
        hit = index.search(v, 1)[0]
        assert hit.id == i
        assert hit.score == pytest.approx(1.0, abs=1e-5)
    gone = set(ids[::10])
    assert index.remove(sorted(gone)) == 20
    assert index.kind == "hnsw"
    for i, v in zip(ids, vectors, strict=True):
        hits = index.search(v, 10)
        assert not {h.id for h in hits} & gone
        if i not in gone:
            assert hits[0].id == i
    index.add(["late"], vectors[1:2])  # incremental add to a built HNSW
    assert {h.id for h in index.search(vectors[1], 2)} == {"late", "v1"}


@pytest.mark.parametrize("threshold", [20_000, 50])
def test_concurrent_searches_while_writing(threshold: int) -> None:
    index = filled(n=100, approximate_threshold=threshold)
    existed = {f"d{i}" for i in range(100)} | {f"w{i}" for i in range(10)} | {"pa", "pb"}
    writes = unit(400, seed=2)
    queries = unit(20, seed=3)
    done = threading.Event()
    errors: list[BaseException] = []
    start = threading.Barrier(5)

    def writer() -> None:
        try:
            start.wait()
            for step in range(150):
                index.upsert([f"w{step % 10}"], writes[step : step + 1])
                index.upsert(["pa", "pb"], writes[150 + step : 152 + step])
                if step % 3 == 0:
                    index.remove([f"w{(step + 5) % 10}", "pa", "pb"])
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    def reader(seed: int) -> None:
        try:
            start.wait()
            for turn in range(2000):
                if done.is_set() and turn > 10:
                    break
                hits = index.search_batch(queries[seed::4], 120)
                for row in hits:
                    found = [h.id for h in row]
                    assert set(found) <= existed
                    assert len(found) == len(set(found))
                    assert all(np.isfinite(h.score) for h in row)
                    if threshold > 1000:  # exact search with k > n sees every id: pairs are all-or-nothing
                        assert len({"pa", "pb"} & set(found)) in (0, 2)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(s,)) for s in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert set(index.ids()) <= existed


def brute_force(index: VectorIndex, query: npt.NDArray[np.float32], k: int) -> list[str]:
    ids = index.ids()
    scores = index.get_many(ids) @ query  # (n,) float32
    return [ids[i] for i in np.argsort(-scores, kind="stable")[:k]]


def test_hnsw_updates_and_removals_are_searched_without_rebuilding_the_graph() -> None:
    # Rebuilding an HNSW graph takes seconds at tens of thousands of vectors and stalls every search: an
    # overwrite or a remove retires the old slot instead, and only a graph with a quarter of its slots
    # retired is rebuilt.
    index = filled(n=400, approximate_threshold=50, ef_search=400)
    index.search(unit(1, seed=1)[0], 1)  # builds the graph
    graph = index._faiss
    moved = unit(20, seed=7)
    index.upsert([f"d{i}" for i in range(20)], moved)  # 20 overwrites
    index.remove([f"d{i}" for i in range(20, 60)])  # 40 removals
    index.add(["n0", "n1"], unit(2, seed=8))
    for row, query in enumerate(moved[:5]):
        hits = index.search(query, 10)
        assert hits[0].id == f"d{row}" and hits[0].score == pytest.approx(1.0, abs=1e-5)  # by its new vector
        assert [h.id for h in hits] == brute_force(index, query, 10)
        assert not {h.id for h in hits} & {f"d{i}" for i in range(20, 60)}
    assert index._faiss is graph  # 60 of 422 slots retired: no rebuild
    index.remove([f"d{i}" for i in range(60, 120)])  # 120 of 422 retired: past a quarter
    query = unit(1, seed=9)[0]
    assert [h.id for h in index.search(query, 10)] == brute_force(index, query, 10)
    assert index._faiss is not graph
