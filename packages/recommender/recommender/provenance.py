"""What a model was trained on, so that an evaluation can tell whether it saw the interactions tested.

A model's metadata records what it saw (`trained_on`): a hash of the interactions, whether each user's last
one was held out, and per user the time of the last interaction seen. `leaked_test_users` counts the users
whose leave-last-out test interaction the model may have trained on.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from recommender.data import Interactions


def _time_order(interactions: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user ids, per-row user codes, rows ordered by (user, time, row)) as in `Interactions.sequences`."""
    ids, codes = np.unique(interactions.users, return_inverse=True)
    return ids, codes, np.lexsort((interactions.times, codes))


def interactions_sha256(interactions: Interactions) -> str:
    """Hex SHA-256 of (user, item, time) rows in each user's time order; independent of file layout."""
    _, _, order = _time_order(interactions)
    digest = hashlib.sha256()
    rows = zip(
        interactions.users[order], interactions.items[order], interactions.times[order].tolist(), strict=True
    )
    for user, item, time in rows:
        digest.update(f"{user}\t{item}\t{time!r}\n".encode())
    return digest.hexdigest()


def _user_times(interactions: Interactions) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Per user (sorted): interaction count, time of the last interaction, time of the one before it."""
    ids, codes, order = _time_order(interactions)
    times, sorted_codes = interactions.times[order], codes[order]
    ends = np.append(np.flatnonzero(np.diff(sorted_codes)), len(order) - 1)  # each user's last row
    counts = np.diff(np.concatenate(([-1], ends)))
    return [str(u) for u in ids], counts, times[ends], times[np.maximum(ends - 1, 0)]


def trained_on(interactions: Interactions, hold_out_last: bool) -> dict[str, Any]:
    """What a model trained on `interactions` saw: content hash, hold-out, and per user the last time seen."""
    if len(interactions) == 0:
        return {
            "interactions_sha256": interactions_sha256(interactions),
            "n_interactions": 0,
            "n_seen": 0,
            "held_out": "last" if hold_out_last else "none",
            "last_seen": {},
        }
    users, counts, last, previous = _user_times(interactions)
    held = hold_out_last & (counts >= 2)  # leave-last-out tests only users with two or more interactions
    return {
        "interactions_sha256": interactions_sha256(interactions),
        "n_interactions": len(interactions),
        "n_seen": len(interactions) - int(held.sum()),
        "held_out": "last" if hold_out_last else "none",
        "last_seen": dict(zip(users, np.where(held, previous, last).tolist(), strict=True)),
    }


def leaked_test_users(meta: dict[str, Any], interactions: Interactions) -> int:
    """How many users' leave-last-out test interaction in `interactions` the model may have trained on.

    Zero when the model was trained on exactly these interactions with the last ones held out, or never
    trained on behaviour. Otherwise a user counts when the model saw one of their interactions at or after
    the time of their last interaction here (ties count as seen: the cautious answer).
    """
    record = meta.get("trained_on")
    if not isinstance(record, dict) or len(interactions) == 0:
        return 0
    if record.get("held_out") == "last" and record.get("interactions_sha256") == interactions_sha256(
        interactions
    ):
        return 0
    last_seen = record.get("last_seen") or {}
    users, counts, last, _ = _user_times(interactions)
    return sum(
        1
        for user, count, time in zip(users, counts, last, strict=True)
        if count >= 2 and user in last_seen and float(last_seen[user]) >= time
    )
