"""The candidate blame ranking (evaluation.blame), on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np

from sensorguard.evaluation.blame import blame

# rows' shares: [1, 0], [.5, .5], [0, 1], [.75, .25]
C = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 4.0], [3.0, 1.0]])


def test_outside_an_excursion_the_mean_share_over_the_window() -> None:
    out = blame(C, np.zeros(4, dtype=bool), window=2)
    expect = [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.375, 0.625]]
    np.testing.assert_allclose(out, expect)
    # window 1 is each reading's own shares
    np.testing.assert_allclose(blame(C, np.zeros(4, dtype=bool), window=1), C / C.sum(1)[:, None])


def test_inside_an_excursion_the_mean_share_since_it_started() -> None:
    out = blame(C, np.array([False, True, True, True]), window=2)
    expect = [[1.0, 0.0], [0.5, 0.5], [0.25, 0.75], [1.25 / 3, 1.75 / 3]]
    np.testing.assert_allclose(out, expect)
    # two excursions: the second starts afresh
    out = blame(C, np.array([True, True, False, True]), window=10)
    np.testing.assert_allclose(out[1], [0.75, 0.25])
    np.testing.assert_allclose(out[3], [0.75, 0.25])  # its own reading only


def test_zero_rows_huge_rows_and_empty_input() -> None:
    Z = np.array([[0.0, 0.0], [1e100, 1.0], [0.0, 0.0]])
    out = blame(Z, np.zeros(3, dtype=bool), window=3)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0], [0.0, 0.0])  # nothing to blame
    assert out[1, 0] > out[1, 1] and out[2, 0] > out[2, 1]
    assert blame(np.zeros((0, 2)), np.zeros(0, dtype=bool)).shape == (0, 2)
