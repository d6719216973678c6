"""The sensor ranking (detectors.blame): hand-made cases with known answers, and any
cut of a stream (numpy pieces, one-reading steps, checkpoints) giving one pass's floats."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from sensorguard.detectors.blame import (
    BlameState,
    blame,
    blame_one,
    blame_step,
    blame_streams,
    excursion,
    excursion_one,
    top_indices,
)

# rows' shares: [1, 0], [.5, .5], [0, 1], [.75, .25]
C = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 4.0], [3.0, 1.0]])


def test_outside_an_excursion_the_weighted_mean_share() -> None:
    out = blame(C, np.zeros(4, dtype=bool))
    # starts at the first share, then 0.2 x the new share + 0.8 x the mean before
    expect = [[1.0, 0.0], [0.9, 0.1], [0.72, 0.28], [0.726, 0.274]]
    np.testing.assert_allclose(out, expect)


def test_inside_an_excursion_the_mean_share_since_it_started() -> None:
    out = blame(C, np.array([False, True, True, True]))
    expect = [[1.0, 0.0], [0.5, 0.5], [0.25, 0.75], [1.25 / 3, 1.75 / 3]]
    np.testing.assert_allclose(out, expect)
    # two excursions: the second starts afresh
    out = blame(C, np.array([True, True, False, True]))
    np.testing.assert_allclose(out[1], [0.75, 0.25])
    np.testing.assert_allclose(out[2], [0.72, 0.28])  # the weighted mean ran through it
    np.testing.assert_allclose(out[3], [0.75, 0.25])  # its own reading only


def test_zero_rows_huge_rows_and_empty_input() -> None:
    Z = np.array([[0.0, 0.0], [1e100, 1.0], [0.0, 0.0]])
    out = blame(Z, np.zeros(3, dtype=bool))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0], [0.0, 0.0])  # nothing to blame
    assert out[1, 0] > out[1, 1] and out[2, 0] > out[2, 1]
    assert blame(np.zeros((0, 2)), np.zeros(0, dtype=bool)).shape == (0, 2)


@pytest.mark.parametrize("seed", range(6))
def test_any_cut_of_a_stream_gives_one_passs_floats(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for trial in range(30):
        n, p = int(rng.integers(1, 150)), int(rng.integers(1, 14))
        C = rng.exponential(size=(n, p)) * (rng.random((n, p)) > 0.2)
        C[rng.integers(0, n)] = 0.0  # a row with nothing to blame
        f = np.zeros(n, dtype=bool)
        for _ in range(int(rng.integers(0, 5))):
            a = int(rng.integers(0, n))
            f[a : a + int(rng.integers(1, 40))] = True
        if trial % 5 == 0:
            f = rng.random(n) < 0.5  # a flickering alarm: many short excursions
        whole = blame(C, f)
        parts, st, i = [], None, 0
        while i < n:
            if rng.random() < 0.4:  # the predictor's one-reading path
                st = st or BlameState()
                parts.append([blame_one(C[i].tolist(), bool(f[i]), st)])
                i += 1
            else:
                k = int(rng.integers(1, 30))
                b, st = blame_step(C[i : i + k], f[i : i + k], st)
                parts.append(b)
                i += k
            if rng.random() < 0.3:  # a checkpoint and a restart
                st = BlameState.from_dict(orjson.loads(orjson.dumps(st.to_dict())))
        np.testing.assert_array_equal(np.vstack([np.asarray(x) for x in parts]), whole)


def test_top_indices_is_a_stable_sort_of_each_row() -> None:
    # ties (rounded values, all-zero rows) keep column order at every size, also at the
    # k-th place, so the batch and the one-reading path name the same sensors
    rng = np.random.default_rng(1)
    for _ in range(300):
        n, p, k = int(rng.integers(1, 60)), int(rng.integers(1, 40)), int(rng.integers(1, 6))
        V = np.round(rng.exponential(size=(n, p)), int(rng.integers(0, 3)))
        V[0] = 0.0
        expect = np.argsort(-V, axis=1, kind="stable")[:, : min(k, p)]
        np.testing.assert_array_equal(top_indices(V, k), expect)
        # a transposed (Fortran-ordered) view, as blame_step returns
        np.testing.assert_array_equal(top_indices(np.asfortranarray(V), k), expect)


def test_several_streams_at_once_equal_each_on_its_own() -> None:
    # the watch service ranks all assets of a pass in one call (blame_streams)
    rng = np.random.default_rng(7)
    for _ in range(40):
        n, p, nb = int(rng.integers(1, 200)), int(rng.integers(1, 12)), int(rng.integers(1, 6))
        C = rng.exponential(size=(n, p))
        f = rng.random(n) < rng.choice([0.0, 0.1, 0.6])
        owner = rng.integers(0, nb, n)
        rows = [np.flatnonzero(owner == b).tolist() for b in range(nb)]
        rows = [r for r in rows if r]
        states = [BlameState() for _ in rows]
        # each stream has a past (some in an excursion) to continue
        for st in states:
            past = rng.exponential(size=(int(rng.integers(1, 20)), p))
            pf = rng.random(past.shape[0]) < 0.5
            _, st2 = blame_step(past, pf, None)
            st.__dict__.update(st2.__dict__)
        together, new = blame_streams(C, f, rows, states)
        for r, st, st_new in zip(rows, states, new, strict=True):
            alone, after = blame_step(C[r], f[r], st)
            np.testing.assert_array_equal(together[r], alone)
            assert st_new.to_dict() == after.to_dict()


def test_the_excursion_rule_alarmed_or_above_in_both_paths() -> None:
    # a glitch above the threshold that the alarm rule ignores, and a smoothed alarm
    # whose score fell back below: both are in the excursion; equal stays out
    alarmed = np.array([False, True, False, False])
    score = np.array([2.5, 0.5, 1.0, 0.2], dtype=np.float32)
    expect = [True, True, False, False]
    assert excursion(alarmed, score, 1.0).tolist() == expect
    one = [excursion_one(bool(a), float(s), 1.0) for a, s in zip(alarmed, score, strict=True)]
    assert one == expect
