"""Spike detection: is the negative share of the current window unusually high against its own history?

Pure arithmetic, no database. A series (one entity, one topic, or every story) is counted in fixed windows;
the current window is compared with the previous ones (the baseline, oldest first):

    mu, spread   from the baseline's negative shares (EWMA mean/deviation, or median and 1.4826 * MAD)
    sigma        sqrt(max(spread, sigma_floor)^2 + mu * (1 - mu) / count)
    z            (share - mu) / sigma

The binomial term ``mu * (1 - mu) / count`` is the noise of a share measured on ``count`` stories, so two
negative stories out of three are not a crisis. Nor are they a norm: in the baseline too, a share is only
taken over at least ``min_count`` stories, so consecutive baseline windows (oldest first) are pooled until
they hold that many, and the stories left at the newest end join the last pool. A baseline of fewer than
``min_count`` stories in all (a company rarely in the news, or new) counts as no baseline data: ``mu`` is
then ``prior_negative_share`` and the baseline mean score 0.0. Otherwise one negative story the day before
would set ``mu`` to 100 % and hide a burst of fifteen.

A rule may also ask the mean sentiment score to fall: ``min_sentiment_drop`` is how far the window's mean
score must lie below the baseline's mean (scores are in [-1, 1]), so a burst of mildly negative stories
that leaves the mean where it was does not fire such a rule.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from textcore.errors import InvalidInput

METHODS = ("ewma", "robust_z")
MAD_TO_SIGMA = 1.4826  # scales the median absolute deviation to a standard deviation under normality


@dataclass(frozen=True)
class WindowStats:
    """What one window of one series holds.

    Attributes:
        count: Stories in the window.
        negative: Stories labelled negative.
        sentiment_sum: Sum of the stories' sentiment scores (each in [-1, 1]).
    """

    count: int
    negative: int
    sentiment_sum: float

    def __post_init__(self) -> None:
        if not 0 <= self.negative <= self.count:
            raise InvalidInput(
                f"expected 0 <= negative <= count, found negative={self.negative}, count={self.count}"
            )

    @property
    def negative_share(self) -> float:
        """Negative stories over all stories; 0.0 for an empty window."""
        return self.negative / self.count if self.count else 0.0

    @property
    def mean_sentiment(self) -> float:
        """Mean sentiment score; 0.0 for an empty window."""
        return self.sentiment_sum / self.count if self.count else 0.0


@dataclass(frozen=True)
class SpikeParams:
    """Thresholds of one alert rule.

    Attributes:
        min_count: Fewest stories in the current window for it to fire; a firing series resolves below
            ``resolve_fraction`` of it.
        min_negative_share: Lowest negative share (0..1) for it to fire; a firing series resolves below
            ``resolve_fraction`` of it.
        z_threshold: Lowest z-score for it to fire; a firing series resolves below ``resolve_fraction`` of
            it.
        method: ``"ewma"`` or ``"robust_z"``.
        ewma_alpha: EWMA weight of the newest baseline window, in (0, 1].
        prior_negative_share: Baseline mean used when the baseline holds no stories.
        sigma_floor: Smallest baseline spread, so a perfectly flat history does not make any blip a spike.
        min_sentiment_drop: How far (0..2) the mean sentiment must lie below the baseline's mean for the
            window to fire (a firing series resolves below ``resolve_fraction`` of it); None leaves the mean
            out.
        resolve_fraction: The hysteresis, in (0, 1]: the share of each threshold a firing series must fall
            below to resolve (1.0 resolves as soon as one threshold is missed).
    """

    min_count: int
    min_negative_share: float
    z_threshold: float
    method: str
    ewma_alpha: float = 0.3
    prior_negative_share: float = 0.2
    sigma_floor: float = 0.05
    min_sentiment_drop: float | None = None
    resolve_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidInput(f"expected method in {METHODS}, found {self.method!r}")
        if self.min_count < 1:
            raise InvalidInput(f"expected min_count >= 1, found {self.min_count}")
        for name in ("min_negative_share", "prior_negative_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidInput(f"expected {name} in [0, 1], found {getattr(self, name)}")
        if self.min_sentiment_drop is not None and not 0.0 <= self.min_sentiment_drop <= 2.0:
            raise InvalidInput(f"expected min_sentiment_drop in [0, 2], found {self.min_sentiment_drop}")
        if not 0.0 < self.resolve_fraction <= 1.0:
            raise InvalidInput(f"expected resolve_fraction in (0, 1], found {self.resolve_fraction}")
        if not 0.0 < self.ewma_alpha <= 1.0:
            raise InvalidInput(f"expected ewma_alpha in (0, 1], found {self.ewma_alpha}")
        if self.z_threshold <= 0 or self.sigma_floor <= 0:
            raise InvalidInput(
                "expected z_threshold > 0 and sigma_floor > 0, "
                f"found {self.z_threshold} and {self.sigma_floor}"
            )


@dataclass(frozen=True)
class SpikeVerdict:
    """The decision for one series and the numbers behind it.

    Attributes:
        firing: Whether the series is (still) spiking.
        z: The current negative share's z-score against the baseline.
        baseline_share: Baseline mean negative share (the prior when it has fewer than ``min_count``
            stories).
        baseline_sentiment: Mean sentiment over every baseline story (0.0 when there are fewer than
            ``min_count``).
        reason: A short sentence saying why.
    """

    firing: bool
    z: float
    baseline_share: float
    baseline_sentiment: float
    reason: str


def detect(
    current: WindowStats, baseline: Sequence[WindowStats], params: SpikeParams, *, was_firing: bool
) -> SpikeVerdict:
    """Decide whether the current window is a negative spike.

    A quiet series fires when ``count >= min_count``, ``share >= min_negative_share``, ``z >= z_threshold``
    and, when the rule sets it, the mean sentiment lies at least ``min_sentiment_drop`` below the baseline's.
    A firing series stays firing until one of, with ``f = resolve_fraction`` (0.5 by default):
    ``count < f * min_count``, ``share < f * min_negative_share``, ``z < f * z_threshold`` or a drop under
    ``f * min_sentiment_drop`` (hysteresis, so it does not flap at a threshold: one neutral story more, or one
    story leaving the sliding window, would otherwise resolve an alert that the next negative story opens
    again).

    Args:
        current: The window being judged.
        baseline: Previous windows, oldest first; empty windows are skipped and windows with fewer than
            ``min_count`` stories pooled with their neighbours (see the module docstring).
        params: The rule's thresholds.
        was_firing: Whether the series has an open alert.

    Returns:
        The verdict, with the z-score, the baseline numbers and a reason.
    """
    windows = _pooled(baseline, params.min_count)
    shares = [w.negative_share for w in windows]
    if not shares:
        mu, spread = params.prior_negative_share, 0.0
    elif params.method == "ewma":
        mu, spread = _ewma(shares, params.ewma_alpha)
    else:
        mu, spread = _robust(shares)
    stories = sum(w.count for w in windows)
    baseline_sentiment = sum(w.sentiment_sum for w in windows) / stories if stories else 0.0
    share = current.negative_share
    if current.count:
        sigma = math.sqrt(max(spread, params.sigma_floor) ** 2 + mu * (1.0 - mu) / current.count)
        z = (share - mu) / sigma
    else:
        z = 0.0
    firing, reason = _decide(current, share, mu, z, params, was_firing)
    if firing and params.min_sentiment_drop is not None:
        fraction = params.resolve_fraction if was_firing else 1.0
        firing, reason = _decide_mean(current, baseline_sentiment, params.min_sentiment_drop * fraction)
    return SpikeVerdict(
        firing=firing, z=z, baseline_share=mu, baseline_sentiment=baseline_sentiment, reason=reason
    )


def _decide(
    current: WindowStats, share: float, mu: float, z: float, params: SpikeParams, was_firing: bool
) -> tuple[bool, str]:
    numbers = (
        f"{current.negative} of {current.count} stories negative ({share:.0%}) "
        f"against a baseline of {mu:.0%}, z = {z:.1f}"
    )
    fraction = params.resolve_fraction if was_firing else 1.0
    least = params.min_count * fraction
    if current.count < least:
        return False, f"too few stories to judge: {current.count} < {least:g}"
    floor = params.min_negative_share * fraction
    if share < floor:
        return False, f"{numbers}; below the {floor:.0%} negative-share floor"
    threshold = params.z_threshold * fraction
    if z < threshold:
        return False, f"{numbers}; below the z threshold {threshold:g}"
    return True, f"negative spike: {numbers}"


def _decide_mean(current: WindowStats, baseline_sentiment: float, threshold: float) -> tuple[bool, str]:
    drop = baseline_sentiment - current.mean_sentiment
    numbers = (
        f"mean sentiment {current.mean_sentiment:+.2f} against a baseline of {baseline_sentiment:+.2f} "
        f"(a drop of {drop:.2f})"
    )
    if drop < threshold:
        return False, f"{numbers}; below the required drop of {threshold:g}"
    return True, f"negative spike: {numbers}"


def _pooled(baseline: Sequence[WindowStats], min_count: int) -> list[WindowStats]:
    """Consecutive windows (oldest first) merged into pools of at least ``min_count`` stories; the stories
    left over at the newest end join the last pool, and are dropped only when no pool fills."""
    pools: list[WindowStats] = []
    count, negative, sentiment_sum = 0, 0, 0.0
    for window in baseline:
        count, negative = count + window.count, negative + window.negative
        sentiment_sum += window.sentiment_sum
        if count >= min_count:
            pools.append(WindowStats(count, negative, sentiment_sum))
            count, negative, sentiment_sum = 0, 0, 0.0
    if count and pools:
        last = pools.pop()
        pools.append(
            WindowStats(last.count + count, last.negative + negative, last.sentiment_sum + sentiment_sum)
        )
    return pools


def _ewma(values: Sequence[float], alpha: float) -> tuple[float, float]:
    """Exponentially weighted mean and standard deviation (West's incremental form), oldest value first."""
    mean, variance = values[0], 0.0
    for value in values[1:]:
        diff = value - mean
        increment = alpha * diff
        mean += increment
        variance = (1.0 - alpha) * (variance + diff * increment)
    return mean, math.sqrt(variance)


def _robust(values: Sequence[float]) -> tuple[float, float]:
    """Median and MAD-based standard deviation, untouched by a few outlying windows."""
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    return median, MAD_TO_SIGMA * mad
