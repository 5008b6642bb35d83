"""Spike detection: a burst against a calm history fires, small numbers do not, firing series hold steady."""

from __future__ import annotations

import pytest

from finance_sentiment.spikes import SpikeParams, WindowStats, detect
from textcore.errors import InvalidInput

# Twelve calm windows of 40 stories, 6 to 10 of them negative (15-25 %).
CALM = [WindowStats(40, n, -0.1 * 40) for n in (6, 8, 7, 10, 6, 9, 8, 7, 6, 10, 8, 7)]


def _params(method: str = "ewma", **overrides: float) -> SpikeParams:
    values: dict[str, float] = {"min_count": 5, "min_negative_share": 0.4, "z_threshold": 3.0}
    values.update(overrides)
    return SpikeParams(method=method, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["ewma", "robust_z"])
def test_a_burst_against_a_calm_baseline_fires_with_either_method(method: str) -> None:
    burst = WindowStats(40, 28, -0.5 * 40)
    verdict = detect(burst, CALM, _params(method), was_firing=False)
    assert verdict.firing
    assert verdict.z > 5
    assert 0.15 <= verdict.baseline_share <= 0.25
    assert verdict.baseline_sentiment == pytest.approx(-0.1)
    assert verdict.reason.startswith("negative spike: 28 of 40 stories negative (70%)")


@pytest.mark.parametrize("method", ["ewma", "robust_z"])
def test_an_ordinary_window_does_not_fire(method: str) -> None:
    verdict = detect(WindowStats(40, 9, -4.0), CALM, _params(method), was_firing=False)
    assert not verdict.firing
    assert verdict.z < 3
    assert "below the 40% negative-share floor" in verdict.reason


def test_two_negatives_out_of_three_are_noise_but_the_same_share_of_thirty_is_not() -> None:
    params = _params(min_count=3)
    small = detect(WindowStats(3, 2, -1.0), CALM, params, was_firing=False)
    large = detect(WindowStats(30, 20, -10.0), CALM, params, was_firing=False)
    assert not small.firing  # the binomial noise of a 3-story share keeps z low
    assert small.z < 3 < large.z
    assert large.firing


def test_too_few_stories_never_fire_whatever_the_share() -> None:
    verdict = detect(WindowStats(4, 4, -4.0), CALM, _params(min_count=5), was_firing=False)
    assert not verdict.firing
    assert verdict.reason == "too few stories to judge: 4 < 5"


def test_a_firing_series_stays_firing_until_its_volume_falls_below_half_the_minimum() -> None:
    params = _params(min_count=5)
    assert detect(WindowStats(4, 4, -4.0), CALM, params, was_firing=True).firing  # one story left the window
    resolved = detect(WindowStats(2, 2, -2.0), CALM, params, was_firing=True)
    assert not resolved.firing
    assert resolved.reason == "too few stories to judge: 2 < 2.5"
    at_thresholds = _params(min_count=5, resolve_fraction=1.0)
    assert not detect(WindowStats(4, 4, -4.0), CALM, at_thresholds, was_firing=True).firing
    with pytest.raises(InvalidInput, match="resolve_fraction"):
        _params(resolve_fraction=0.0)


def test_a_firing_series_stays_firing_until_z_falls_below_half_the_threshold() -> None:
    params = _params()
    cooling = WindowStats(40, 17, -6.0)  # 42 %: z between 1.5 and 3
    quiet = detect(cooling, CALM, params, was_firing=False)
    held = detect(cooling, CALM, params, was_firing=True)
    assert params.z_threshold / 2 <= held.z < params.z_threshold
    assert not quiet.firing
    assert held.firing
    below_floor = detect(WindowStats(40, 15, -6.0), CALM, params, was_firing=True)  # 37.5 % < 40 %
    assert below_floor.firing  # the floor holds a firing series down to half of it, as z does
    under_half = detect(WindowStats(40, 7, -6.0), CALM, _params(z_threshold=0.1), was_firing=True)
    assert not under_half.firing  # 17.5 % < 20 %
    assert "below the 20% negative-share floor" in under_half.reason
    still_high = detect(WindowStats(40, 20, -6.0), CALM, _params(min_negative_share=0.1), was_firing=True)
    assert still_high.firing  # 50 %: still well above the baseline
    assert not detect(CALM[0], CALM, params, was_firing=True).firing


def test_robust_z_ignores_an_earlier_crisis_in_the_baseline_while_ewma_remembers_it() -> None:
    history = [*CALM, WindowStats(40, 36, -30.0), WindowStats(40, 7, -4.0)]
    robust = detect(WindowStats(40, 28, -20.0), history, _params("robust_z"), was_firing=False)
    ewma = detect(WindowStats(40, 28, -20.0), history, _params("ewma"), was_firing=False)
    assert robust.baseline_share == pytest.approx(0.1875)  # the median share, untouched by the 90 % window
    assert ewma.baseline_share > robust.baseline_share
    assert robust.firing
    assert ewma.z < robust.z


def test_empty_windows_are_skipped_and_no_history_means_the_prior() -> None:
    params = _params(prior_negative_share=0.1)
    empty = [WindowStats(0, 0, 0.0)] * 5
    verdict = detect(WindowStats(20, 12, -8.0), empty, params, was_firing=False)
    assert verdict.baseline_share == 0.1
    assert verdict.baseline_sentiment == 0.0
    assert verdict.firing
    assert detect(WindowStats(20, 12, -8.0), [], params, was_firing=False) == verdict
    with_gaps = detect(WindowStats(20, 12, -8.0), [*CALM, *empty], params, was_firing=False)
    assert with_gaps == detect(WindowStats(20, 12, -8.0), CALM, params, was_firing=False)


@pytest.mark.parametrize("method", ["ewma", "robust_z"])
def test_a_few_stories_in_the_baseline_are_no_baseline(method: str) -> None:
    # A company rarely in the news: one negative story and two neutral ones over the day, then a burst.
    empty = WindowStats(0, 0, 0.0)
    sparse = [
        *[empty] * 5,
        WindowStats(1, 1, -0.8),
        *[empty] * 4,
        WindowStats(1, 0, 0.0),
        WindowStats(1, 0, 0.0),
    ]
    burst = WindowStats(15, 15, -0.6 * 15)
    verdict = detect(burst, sparse, _params(method, min_sentiment_drop=0.5), was_firing=False)
    assert (verdict.baseline_share, verdict.baseline_sentiment) == (0.2, 0.0)  # the prior, a neutral mean
    assert verdict.firing
    lone = detect(burst, [WindowStats(1, 1, -0.8)], _params(method), was_firing=False)
    assert lone.firing  # one negative story the day before is not a 100 % norm


@pytest.mark.parametrize("method", ["ewma", "robust_z"])
def test_small_baseline_windows_are_pooled_until_they_hold_min_count_stories(method: str) -> None:
    small = [WindowStats(2, 1, -0.2), WindowStats(3, 2, -0.9), WindowStats(1, 0, 0.1), WindowStats(4, 1, 0.0)]
    leftover = WindowStats(2, 2, -1.0)  # too few for a pool of its own: joins the last one
    pooled = [WindowStats(5, 3, -1.1), WindowStats(7, 3, -0.9)]
    current = WindowStats(12, 9, -5.0)
    params = _params(method, min_count=5, min_negative_share=0.1, z_threshold=0.5)
    verdict = detect(current, [*small, leftover], params, was_firing=False)
    assert verdict == detect(current, pooled, params, was_firing=False)
    assert verdict.baseline_sentiment == pytest.approx(-2.0 / 12)
    assert detect(current, CALM, params, was_firing=False) == detect(
        current, CALM, _params(method, min_count=1, min_negative_share=0.1, z_threshold=0.5), was_firing=False
    )  # windows of 40 stories are pools of their own


def test_an_empty_current_window_has_z_zero() -> None:
    verdict = detect(WindowStats(0, 0, 0.0), CALM, _params(), was_firing=True)
    assert (verdict.firing, verdict.z) == (False, 0.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"method": "median"}, "expected method in"),
        ({"min_count": 0}, "expected min_count >= 1, found 0"),
        ({"min_negative_share": 1.5}, r"expected min_negative_share in \[0, 1\], found 1.5"),
        ({"ewma_alpha": 0.0}, r"expected ewma_alpha in \(0, 1\], found 0.0"),
        ({"z_threshold": -1.0}, "expected z_threshold > 0"),
    ],
)
def test_unusable_parameters_are_refused(overrides: dict[str, object], message: str) -> None:
    values: dict[str, object] = {
        "min_count": 5,
        "min_negative_share": 0.4,
        "z_threshold": 3.0,
        "method": "ewma",
    }
    values.update(overrides)
    with pytest.raises(InvalidInput, match=message):
        SpikeParams(**values)  # type: ignore[arg-type]


def test_a_window_with_more_negatives_than_stories_is_refused() -> None:
    with pytest.raises(InvalidInput, match="expected 0 <= negative <= count, found negative=3, count=2"):
        WindowStats(2, 3, 0.0)


def test_a_rule_may_also_require_the_mean_sentiment_to_fall() -> None:
    # Baseline mean -0.1. A burst of mildly negative stories (mean -0.25, a drop of 0.15) against one of
    # strongly negative stories (mean -0.5, a drop of 0.4).
    mild, strong = WindowStats(40, 28, -0.25 * 40), WindowStats(40, 28, -0.5 * 40)
    params = _params(min_sentiment_drop=0.3)
    assert detect(mild, CALM, _params(), was_firing=False).firing  # the share alone fires
    quiet = detect(mild, CALM, params, was_firing=False)
    assert not quiet.firing
    assert quiet.reason.endswith("(a drop of 0.15); below the required drop of 0.3")
    fired = detect(strong, CALM, params, was_firing=False)
    assert fired.firing and fired.reason.startswith("negative spike: mean sentiment -0.50")
    assert detect(mild, CALM, params, was_firing=True).firing  # held above half the drop
    assert not detect(WindowStats(40, 28, -0.2 * 40), CALM, params, was_firing=True).firing


def test_an_impossible_sentiment_drop_is_refused() -> None:
    with pytest.raises(InvalidInput, match="min_sentiment_drop"):
        _params(min_sentiment_drop=2.5)
