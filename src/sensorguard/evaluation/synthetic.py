"""A seeded pump-test-rig generator in the benchmark contract's format.

Each file is one experiment on a water-pump rig sampled at 1 Hz: eight correlated
sensors (two vibration RMS channels, motor current, discharge pressure, motor and fluid
temperature, supply voltage, volume flow RMS), about 1,100 rows, and one long anomalous
segment. It is meant to be hard in the ways real rigs are hard:

* temperatures keep rising through the whole file (the rig warms up), at a rate and
  shape that differ per file, so the first 400 rows do not cover later normal values;
* a slow baseline wander (a smoothed random walk) moves flow, pressure and current,
  and the supply voltage wanders with the grid;
* sensor noise with occasional spikes; the pressure gauge is quantised;
* anomalies of several kinds and strengths, from obvious to subtle: outlet and inlet
  valve closures (steps in flow/pressure/current), rotor imbalance (vibration),
  cavitation (noisy vibration and flow, lower pressure), a leak and a bearing heat-up.

The gradual kinds follow the physics of a test rig by default (``onset="physical"``): a
leak is a valve opened by hand over 10-120 s, then held; a bearing heats up as a
first-order thermal response (time constant 60-240 s). The earlier shape, a ramp from
zero over the whole labelled segment (``onset="linear"``), labels its first part as
anomalous while no sensor differs yet from normal noise; it is kept as a harder variant
for robustness checks, together with ``drift`` (scale of the warm-up and wander) and
``strength_range`` (anomaly strength, default 0.5-1.6).

Columns: ``datetime;Accelerometer1RMS;...;Volume Flow RateRMS;anomaly;changepoint``
(``changepoint`` is 1 at the first anomalous row and at the first normal row after it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SENSORS = [
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
]
KINDS = [
    "valve_outlet",
    "valve_inlet",
    "imbalance",
    "cavitation",
    "leak",
    "bearing_heat",
]


def _wander(rng: np.random.Generator, n: int, tau: float) -> np.ndarray:
    """A smoothed random walk (Ornstein–Uhlenbeck) with unit stationary std."""
    a = np.exp(-1.0 / tau)
    e = rng.standard_normal(n) * np.sqrt(1 - a * a)
    out = np.empty(n)
    x = rng.standard_normal()
    for t in range(n):
        x = a * x + e[t]
        out[t] = x
    return out


def _lag(x: np.ndarray, tau: float) -> np.ndarray:
    """First-order lag (thermal inertia) with time constant ``tau`` readings."""
    a = np.exp(-1.0 / tau)
    out = np.empty_like(x)
    acc = x[0]
    for t in range(x.size):
        acc = a * acc + (1 - a) * x[t]
        out[t] = acc
    return out


def pump_rig_file(
    seed: int,
    kind: str | None = None,
    n: int | None = None,
    *,
    drift: float = 1.0,
    strength_range: tuple[float, float] = (0.5, 1.6),
    onset: str = "physical",
) -> pd.DataFrame:
    """One experiment as a DataFrame (see the module docstring).

    ``drift`` scales every slow normal change (warm-up, wander); ``strength_range`` is
    the range of the anomaly strength; ``onset`` shapes the gradual kinds (leak, bearing
    heat): ``"physical"`` (a valve opened over 10-120 s; a first-order thermal response
    with a 60-240 s time constant) or ``"linear"`` (a ramp from zero over the whole
    segment, so its first part is labelled but hardly visible). The options draw no
    extra numbers from the file's random stream: other arguments being equal, a seed
    gives the same normal behaviour whatever they are.
    """
    if onset not in ("physical", "linear"):
        raise ValueError(f"onset must be 'physical' or 'linear', got {onset!r}")
    rng = np.random.default_rng(seed)
    # a separate stream for the onset shape keeps the main stream identical
    onset_rng = np.random.default_rng([seed, 7])
    n = n or int(rng.integers(1000, 1200))
    kind = kind or KINDS[int(rng.integers(len(KINDS)))]
    t = np.arange(n, dtype=np.float64)
    start = pd.Timestamp("2020-02-08 13:00:00") + pd.Timedelta(
        seconds=int(rng.integers(0, 90 * 86400))
    )
    times = start + pd.to_timedelta(t, unit="s")

    # --- anomalous segment: starts after the training window, long
    a_start = int(rng.integers(480, 680))
    a_len = int(rng.integers(300, max(301, min(520, n - a_start - 40))))
    a_end = a_start + a_len  # exclusive
    if kind == "none":
        a_start = a_end = n
    y = np.zeros(n, dtype=np.int8)
    y[a_start:a_end] = 1
    ramp_len = int(rng.integers(3, 40))
    prof = np.clip((t - a_start) / ramp_len, 0, 1) * (t < a_end)  # step with a ramp
    if onset == "linear":
        grad = np.clip((t - a_start) / a_len, 0, 1) * (t < a_end)  # ramp over the segment
        heat_prof = grad
    else:
        # a leak valve opened by hand over 10-120 s; heat building up with thermal inertia
        grad = np.clip((t - a_start) / onset_rng.integers(10, 120), 0, 1) * (t < a_end)
        tau_heat = onset_rng.uniform(60, 240)
        heat_prof = (1 - np.exp(-np.clip(t - a_start, 0, None) / tau_heat)) * (t < a_end)
    strength = float(rng.uniform(*strength_range))  # 0.5 = subtle, 1.6 = obvious

    # --- operating point and slow normal changes
    q0 = rng.uniform(28, 36)
    wander_q = drift * _wander(rng, n, rng.uniform(300, 1200)) * rng.uniform(0.15, 0.6)
    wander_v = drift * _wander(rng, n, rng.uniform(300, 1200)) * rng.uniform(0.8, 2.5)
    flow_state = q0 + wander_q
    heat = rng.uniform(4, 16) * (1 - np.exp(-t / rng.uniform(600, 3000)))
    heat += 0.4 * _wander(rng, n, 400)
    heat *= drift
    fluid_heat = drift * rng.uniform(1.0, 5.0) * (1 - np.exp(-t / rng.uniform(800, 4000)))

    valve = np.zeros(n)
    vib_gain = np.ones(n)
    vib_noise = np.ones(n)
    flow_noise = np.ones(n)
    p_offset = np.zeros(n)
    current_offset = np.zeros(n)
    temp_offset = np.zeros(n)
    if kind == "valve_outlet":
        valve = 0.06 * strength * prof  # partial closure: less flow, more head
    elif kind == "valve_inlet":
        valve = 0.05 * strength * prof
        p_offset = -0.05 * strength * prof
        vib_noise = 1 + 0.4 * strength * prof
    elif kind == "imbalance":
        vib_gain = 1 + 0.12 * strength * prof
        vib_noise = 1 + 0.3 * strength * prof
        current_offset = 0.01 * strength * prof
    elif kind == "cavitation":
        vib_noise = 1 + 1.2 * strength * prof
        flow_noise = 1 + 1.5 * strength * prof
        p_offset = -0.04 * strength * prof
    elif kind == "leak":
        p_offset = -0.08 * strength * grad
        valve = -0.03 * strength * grad  # more flow escapes through the leak
    elif kind == "bearing_heat":
        temp_offset = 3.0 * strength * heat_prof
        vib_gain = 1 + 0.06 * strength * heat_prof
        current_offset = 0.012 * strength * heat_prof

    flow = flow_state * (1 - valve)
    # pump curve: head falls with flow; a closing valve raises discharge pressure
    pressure = 1.0 + 0.9 * valve - 0.004 * (flow - 32) + p_offset
    current = (1.9 + 0.012 * (flow - 32) + 0.35 * (pressure - 1.0)) * (1 + current_offset)
    voltage = 229 + wander_v - 1.5 * (current - 1.9)
    vib1 = 0.027 * (1 + 0.01 * (flow - 32)) * vib_gain
    vib2 = 0.040 * (1 + 0.008 * (flow - 32)) * vib_gain
    # the motor temperature follows load and bearing heat with a thermal lag (it does not
    # jump back when an anomaly ends)
    temperature = 68 + heat + _lag(0.8 * (current - 1.9) + temp_offset, rng.uniform(40, 150))
    thermo = 24 + fluid_heat + 0.3 * heat / 10

    def noise(scale: float, mult: np.ndarray | float = 1.0) -> np.ndarray:
        return rng.standard_normal(n) * scale * mult

    data = {
        "Accelerometer1RMS": vib1 + noise(0.0012, vib_noise),
        "Accelerometer2RMS": vib2 + noise(0.0015, vib_noise),
        "Current": current + noise(0.025),
        "Pressure": np.round((pressure + noise(0.02)) / 0.01) * 0.01,
        "Temperature": temperature + noise(0.12),
        "Thermocouple": thermo + noise(0.06),
        "Voltage": voltage + noise(0.6),
        "Volume Flow RateRMS": flow + noise(0.25, flow_noise),
    }
    # occasional single-reading spikes (glitches, not failures)
    for col in SENSORS:
        k = int(rng.integers(0, 4))
        idx = rng.integers(0, n, size=k)
        data[col][idx] += rng.choice([-1, 1], size=k) * 6 * np.std(np.diff(data[col][:200]))
    cp = np.zeros(n, dtype=np.int8)
    cp[[i for i in (a_start, a_end) if i < n]] = 1
    frame = pd.DataFrame(
        {"datetime": times.strftime("%Y-%m-%d %H:%M:%S"), **data, "anomaly": y, "changepoint": cp}
    )
    frame["anomaly"] = frame["anomaly"].astype(np.float64)
    frame["changepoint"] = frame["changepoint"].astype(np.float64)
    return frame


def write_pump_rig(folder: Path, n_files: int = 30, seed: int = 0, **options: Any) -> list[Path]:
    """Write ``n_files`` experiments as ``<kind>/<i>.csv`` (``;``-separated) plus one
    anomaly-free file without labels, like a real rig's recording folder. ``options``
    (``drift``, ``strength_range``, ``onset``) go to :func:`pump_rig_file`."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n_files):
        kind = KINDS[i % len(KINDS)]
        frame = pump_rig_file(int(rng.integers(0, 2**31)), kind=kind, **options)
        path = folder / kind / f"{i}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, sep=";", index=False)
        paths.append(path)
    free = pump_rig_file(int(rng.integers(0, 2**31)), kind="none", **options)
    free = free.drop(columns=["anomaly", "changepoint"])
    free.to_csv(folder / "anomaly-free.csv", sep=";", index=False)
    paths.append(folder / "anomaly-free.csv")
    return paths
