"""Minimum detectable difference and the n to detect a gap, against a closed form and
against the exact power of the paired t test (scipy's noncentral t)."""
import math

import numpy as np
import pytest
from scipy import stats

from bench.stats import min_detectable_diff, n_to_detect


def _paired_t_power(delta: float, sd: float, n: int, alpha: float = 0.05) -> float:
    df, nc = n - 1, delta / sd * math.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def test_mde_closed_form_known_value():
    # (z_0.975 + z_0.8) * sd / sqrt(n) = (1.959964 + 0.841621) * 0.5 / 10
    assert min_detectable_diff(0.5, 100) == pytest.approx(0.1400793, abs=1e-6)
    # A textbook case: detecting d = 0.5 SD at 80% power / alpha 0.05 takes 32 pairs (z form: 31.4).
    assert n_to_detect(0.5, 1.0) == 32


def test_mde_has_80_percent_power_under_the_exact_paired_t():
    for sd, n in [(0.3, 40), (0.5, 100), (0.45, 400)]:
        power = _paired_t_power(min_detectable_diff(sd, n), sd, n)
        assert 0.77 < power < 0.81  # the normal-quantile form is a hair optimistic at small n


def test_binary_paired_outcomes_use_the_discordant_variance():
    # 100 pairs, 12 discordant (8 favour a, 4 favour b): sd^2 = p_disc - d^2 (population form).
    a = np.array([1] * 8 + [0] * 4 + [1] * 50 + [0] * 38, dtype=float)
    b = np.array([0] * 8 + [1] * 4 + [1] * 50 + [0] * 38, dtype=float)
    d = a - b
    assert np.var(d) == pytest.approx(0.12 - 0.04 ** 2)
    gap_n = n_to_detect(d.mean(), float(np.std(d, ddof=1)))
    assert gap_n == math.ceil((2.8015852 * np.std(d, ddof=1) / 0.04) ** 2)
    assert gap_n == 587  # a 4-point gap at 12% disagreement needs ~6x this run


def test_degenerate_inputs():
    assert math.isnan(min_detectable_diff(0.0, 50)) and math.isnan(min_detectable_diff(0.4, 1))
    assert n_to_detect(0.0, 0.3) == math.inf and math.isnan(n_to_detect(0.1, 0.0))
