"""A deterministic centrifugal pump simulator with labelled failures.

One pump, driven by a variable-speed motor, runs at a few speed setpoints (50 %, 75 %,
100 % of 2950 rpm) that change every 2-6 hours. Sensors follow the pump affinity laws
(flow ∝ speed, head ∝ speed², power ∝ speed³) with a slowly varying system resistance,
a daily ambient temperature cycle, slow fouling (efficiency drops ~1 % per week until a
4-weekly cleaning), thermal lags, measurement noise and short sensor dropouts (NaN runs).

Failure modes (rows labelled ``BROKEN`` while the failure lasts, then ``RECOVERING``
while its traces fade after the repair; ``failure_mode`` names the mode on both):

* ``bearing_wear`` — vibration rises (to about +3 mm/s) and the bearing heats up (to
  about +20 °C) over 3-8 h, accelerating; motor current rises slightly (friction).
* ``cavitation`` — suction pressure drops by ~0.7 bar; vibration gains broadband noise;
  flow and discharge pressure drop a little and fluctuate; current fluctuates.
* ``leak`` — a leak between pump and flow meter: measured flow drops ~15 % relative to
  speed, discharge pressure drops ~8 %, the motor draws ~5 % more power.
* ``stuck_sensor`` — one sensor freezes at its last value. Each stuck episode spans a
  setpoint change, so the frozen value soon disagrees with the other sensors (a frozen
  value alone is only visible as zero variance, which a per-reading detector cannot see).
* ``spike`` — a 15-45 min burst of large spikes (about every other reading) on one sensor.

Everything is drawn from generators seeded by ``seed``: the same arguments give an
identical frame, and the normal process (regimes, noise, drift, dropouts) comes from its
own stream, so ``failures=False`` with the same seed shows the same pump without them
(apart from setpoint changes forced into stuck-sensor episodes). Seven days at
one-minute resolution (~10,000 rows) take a few milliseconds.

(About 500 lines on purpose: one generator. The schedule, the normal process and the
failure profiles draw from their seeded streams in a fixed order, and that order is what
makes a seed give an identical frame; split, it would be easy to change by accident.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from sensorguard.errors import DataValidationError

SENSORS: tuple[str, ...] = (
    "motor_speed",
    "flow_rate",
    "suction_pressure",
    "discharge_pressure",
    "motor_current",
    "power",
    "vibration_rms",
    "bearing_temp",
    "fluid_temp",
)
"""Sensor columns, in output order."""

UNITS: dict[str, str] = {
    "motor_speed": "rpm",
    "flow_rate": "m3/h",
    "suction_pressure": "bar",
    "discharge_pressure": "bar",
    "motor_current": "A",
    "power": "kW",
    "vibration_rms": "mm/s",
    "bearing_temp": "°C",
    "fluid_temp": "°C",
}

FAILURE_MODES: tuple[str, ...] = ("bearing_wear", "cavitation", "leak", "stuck_sensor", "spike")

STATUS_NORMAL, STATUS_BROKEN, STATUS_RECOVERING = "NORMAL", "BROKEN", "RECOVERING"

SETPOINTS: tuple[float, ...] = (0.5, 0.75, 1.0)
"""Speed setpoints as fractions of the nominal speed."""
NOMINAL_SPEED = 2950.0  # rpm
NOMINAL_FLOW = 120.0  # m3/h at full speed
NOMINAL_DP = 6.0  # bar differential pressure at full speed
REGIME_HOURS = (2.0, 6.0)  # a setpoint holds this long (uniform)
WARMUP_HOURS = 6.0  # no failure starts earlier
CLEANING_HOURS = 28 * 24.0  # fouling is cleaned away this often

# Broken and recovering durations in hours (uniform ranges)
_BROKEN_HOURS: dict[str, tuple[float, float]] = {
    "bearing_wear": (3.0, 8.0),
    "cavitation": (0.75, 2.5),
    "leak": (1.5, 5.0),
    "stuck_sensor": (1.5, 4.0),
    "spike": (0.25, 0.75),
}
_RECOVER_HOURS: dict[str, tuple[float, float]] = {
    "bearing_wear": (0.75, 1.5),
    "cavitation": (0.3, 0.6),
    "leak": (0.3, 0.6),
    "stuck_sensor": (0.15, 0.3),
    "spike": (0.15, 0.3),
}
STUCK_SENSORS = ("flow_rate", "discharge_pressure", "motor_current", "vibration_rms")
SPIKE_SCALE: dict[str, float] = {
    "vibration_rms": 4.0,
    "motor_current": 25.0,
    "discharge_pressure": 3.0,
    "flow_rate": 50.0,
    "suction_pressure": 1.0,
    "bearing_temp": 20.0,
}
# Measurement noise (standard deviation, sensor units)
_NOISE: dict[str, float] = {
    "motor_speed": 4.0,
    "flow_rate": 1.0,
    "suction_pressure": 0.02,
    "discharge_pressure": 0.03,
    "motor_current": 0.35,
    "power": 0.15,
    "vibration_rms": 0.03,
    "bearing_temp": 0.25,
    "fluid_temp": 0.15,
}
_DECIMALS: dict[str, int] = {s: 3 for s in SENSORS} | {"motor_speed": 1}


@dataclass(frozen=True)
class Failure:
    """One injected failure: rows ``start:end`` BROKEN, ``end:recovered`` RECOVERING.

    ``as_dict`` gives inclusive times: ``end`` is the last BROKEN row, ``recovered`` the
    last RECOVERING row (as :func:`failure_events` reports them)."""

    mode: str
    start: int
    end: int
    recovered: int
    sensor: str | None = None

    def as_dict(self, times: pd.DatetimeIndex) -> dict[str, Any]:
        last = len(times) - 1
        return {
            "mode": self.mode,
            "sensor": self.sensor or "",
            "start": times[self.start].isoformat(),
            "end": times[min(self.end - 1, last)].isoformat(),
            "recovered": times[min(self.recovered - 1, last)].isoformat(),
            "rows": self.recovered - self.start,
        }


def _lag(x: np.ndarray, tau_s: float, dt_s: float) -> np.ndarray:
    """First-order lag (time constant ``tau_s``), starting in steady state."""
    a = 1.0 - np.exp(-dt_s / tau_s)
    y, _ = lfilter([a], [1.0, -(1.0 - a)], x, zi=np.array([(1.0 - a) * x[0]]))
    return np.asarray(y)


def _ar1(rng: np.random.Generator, n: int, std: float, tau_s: float, dt_s: float) -> np.ndarray:
    """A stationary AR(1) process with the given standard deviation and time constant."""
    phi = np.exp(-dt_s / tau_s)
    e = rng.normal(0.0, std * np.sqrt(1.0 - phi**2), n)
    e[0] = rng.normal(0.0, std)
    y, _ = lfilter([1.0], [1.0, -phi], e, zi=np.zeros(1))
    return np.asarray(y)


def _parse_modes(failure_modes: Iterable[str] | str | None) -> list[str]:
    if failure_modes is None:
        return list(FAILURE_MODES)
    if isinstance(failure_modes, str):
        failure_modes = [m for m in failure_modes.split(",")]
    modes = [m.strip().lower().replace("-", "_") for m in failure_modes if m.strip()]
    unknown = [m for m in modes if m not in FAILURE_MODES]
    if unknown or not modes:
        raise DataValidationError(
            f"unknown failure mode(s): {', '.join(unknown) or '(none given)'}",
            f"choose from: {', '.join(FAILURE_MODES)}",
        )
    return list(dict.fromkeys(modes))


def _step_seconds(freq: str) -> float:
    try:
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq).nanos, unit="ns")
    except (ValueError, TypeError):
        step = None
    if step is None or step <= pd.Timedelta(0):
        raise DataValidationError(
            f"invalid sampling frequency {freq!r}",
            "use a fixed pandas frequency such as 10s, 1min or 5min",
        )
    return float(step.total_seconds())


def _regimes(rng: np.random.Generator, t_h: np.ndarray) -> np.ndarray:
    """Speed setpoint per row: held 2-6 h, never the same twice in a row."""
    total = float(t_h[-1]) + 1e-9
    bounds = [0.0]
    values = [float(rng.choice(SETPOINTS))]
    while bounds[-1] <= total:
        bounds.append(bounds[-1] + rng.uniform(*REGIME_HOURS))
        others = [s for s in SETPOINTS if s != values[-1]]
        values.append(float(rng.choice(others)))
    idx = np.searchsorted(np.asarray(bounds), t_h, side="right") - 1
    return np.asarray(values)[idx]


_MIN_SLOT_ROWS = 60  # a failure needs at least this many rows of its own


def _warmup_rows(n: int, per_h: float) -> int:
    """Rows before the first failure: six hours, or a quarter of a short simulation."""
    return min(round(WARMUP_HOURS * per_h), n // 4)


def _schedule(
    rng: np.random.Generator,
    modes: list[str],
    n_failures: int,
    n: int,
    dt_s: float,
    setpoint: np.ndarray,
) -> list[Failure]:
    """Place failures in equal slots after the warm-up, at most one per slot."""
    per_h = 3600.0 / dt_s
    first = _warmup_rows(n, per_h)
    if n_failures <= 0:
        return []
    slot = (n - first) / n_failures
    if slot < _MIN_SLOT_ROWS:
        hours = (n_failures * _MIN_SLOT_ROWS + first) / per_h
        raise DataValidationError(
            f"cannot fit {n_failures} failure(s) into this simulation",
            f"simulate at least {hours / 24:.2f} days, or ask for fewer failures",
        )
    assigned = [modes[i % len(modes)] for i in range(n_failures)]
    rng.shuffle(assigned)
    failures: list[Failure] = []
    for k, mode in enumerate(assigned):
        lo = first + int(k * slot)
        hi = first + int((k + 1) * slot)
        room = hi - lo
        broken = int(rng.uniform(*_BROKEN_HOURS[mode]) * per_h)
        recover = int(rng.uniform(*_RECOVER_HOURS[mode]) * per_h)
        # shrink to fit 70 % of the slot, keeping the broken/recovering proportion
        budget = int(0.7 * room)
        if broken + recover > budget:
            scale = budget / (broken + recover)
            broken, recover = int(broken * scale), int(recover * scale)
        broken = max(broken, _MIN_SLOT_ROWS // 6)
        recover = max(recover, 1)
        sensor: str | None = None
        if mode == "stuck_sensor":
            sensor = str(rng.choice(STUCK_SENSORS))
            lead = max(1, min(int(rng.uniform(0.15, 0.75) * per_h), broken // 3))
            first_ok = lo + int(0.1 * room)
            last_ok = max(first_ok + 1, hi - broken - recover)
            # freeze `lead` rows before a setpoint change, so the frozen value soon
            # contradicts the other sensors; force a change only if the slot has none
            changes = np.flatnonzero(np.diff(setpoint[first_ok : last_ok + lead]) != 0)
            changes = changes + first_ok + 1
            changes = changes[changes - lead >= first_ok]
            if len(changes):
                start = int(rng.choice(changes)) - lead
            else:
                start = int(rng.integers(first_ok, last_ok))
                switch = start + lead
                current = setpoint[start]
                new = float(rng.choice([s for s in SETPOINTS if s != current]))
                stop = switch
                while stop < n and setpoint[stop] == current:
                    stop += 1
                setpoint[switch:stop] = new
        else:
            if mode == "spike":
                sensor = str(rng.choice(list(SPIKE_SCALE)))
            start = int(
                rng.integers(
                    lo + int(0.1 * room), max(lo + int(0.1 * room) + 1, hi - broken - recover)
                )
            )
        end = min(start + broken, n)
        failures.append(Failure(mode, start, end, min(end + recover, n), sensor))
    return failures


def _profile(f: Failure, ramp_rows: int) -> np.ndarray:
    """Severity 0..1 over rows ``f.start:f.recovered``: grows while broken, then decays."""
    b = f.end - f.start
    pos = np.arange(1, b + 1, dtype=np.float64)
    if f.mode == "bearing_wear":
        broken = (pos / b) ** 1.5  # wear accelerates
    else:
        broken = np.minimum(1.0, pos / max(1, ramp_rows))
    r = f.recovered - f.end
    last = broken[-1] if b > 0 else 0.0
    fading = last * np.exp(-np.arange(1, r + 1) / max(1.0, r / 3.0))
    return np.concatenate([broken, fading])


def simulate_pump(
    days: float = 7.0,
    freq: str = "1min",
    seed: int = 0,
    failure_modes: Iterable[str] | str | None = None,
    n_failures: int | None = None,
    start: str | pd.Timestamp = "2026-01-01",
    asset_id: str = "pump-01",
    failures: bool = True,
) -> pd.DataFrame:
    """Simulate a pump: ``timestamp, asset_id, <SENSORS...>, machine_status, failure_mode``.

    ``n_failures`` defaults to one per simulated day (at least one, fewer when a very short
    simulation has no room); failure modes are
    assigned round-robin over ``failure_modes`` (default: all of :data:`FAILURE_MODES`)
    in a seeded random order, so every mode appears once ``n_failures`` reaches their
    count. ``failures=False`` gives a failure-free history (all rows ``NORMAL``).
    The injected failures (mode, sensor, start, end, recovered) are listed in
    ``df.attrs["failures"]``; :func:`failure_events` recovers them from the labels.
    """
    if not np.isfinite(days) or days <= 0:
        raise DataValidationError(f"days must be positive, got {days}", "e.g. --days 7")
    dt_s = _step_seconds(freq)
    n = round(days * 86400.0 / dt_s)
    if n < 10:
        raise DataValidationError(
            f"{days} day(s) at {freq} give only {n} rows", "simulate more days or a finer freq"
        )
    if n > 50_000_000:
        raise DataValidationError(
            f"{n} rows is too many to simulate", "use fewer days or a coarser freq"
        )
    try:
        t0 = pd.Timestamp(start)
    except (ValueError, TypeError):
        raise DataValidationError(
            f"invalid start time {start!r}", "use e.g. 2026-01-01 or 2026-01-01T06:00"
        ) from None
    if t0 is pd.NaT:
        raise DataValidationError(f"invalid start time {start!r}", "use e.g. 2026-01-01")
    modes = _parse_modes(failure_modes)
    if n_failures is not None and n_failures < 0:
        raise DataValidationError(f"n_failures must be >= 0, got {n_failures}")
    if not failures:
        count = 0
    elif n_failures is not None:
        count = n_failures
    else:  # one per day, as many as fit in a short simulation
        fit = (n - _warmup_rows(n, 3600.0 / dt_s)) // _MIN_SLOT_ROWS
        count = min(max(1, round(days)), fit)

    # two streams: the normal process does not depend on which failures are injected,
    # so the same seed with and without failures gives the same normal operation
    rng, frng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    times = pd.date_range(t0, periods=n, freq=pd.Timedelta(seconds=dt_s))
    t_h = np.arange(n) * dt_s / 3600.0
    per_h = 3600.0 / dt_s

    setpoint = _regimes(rng, t_h)
    plan = _schedule(frng, modes, count, n, dt_s, setpoint)

    # --- operating point
    s = _lag(setpoint, 30.0, dt_s)  # VFD ramp
    r = _ar1(rng, n, 0.015, 1800.0, dt_s)  # system resistance variation
    t_amb = (
        18.0 + 6.0 * np.sin(2 * np.pi * (t_h - 9.0) / 24.0) + _ar1(rng, n, 1.0, 6 * 3600.0, dt_s)
    )
    # fouling costs ~1 % efficiency per week until the 4-weekly cleaning resets it
    fouling = 0.01 * np.mod(t_h, CLEANING_HOURS) / (24.0 * 7.0)
    level = 0.1 * np.sin(2 * np.pi * t_h / 11.0 + rng.uniform(0, 2 * np.pi))
    suction = 1.6 + level + _ar1(rng, n, 0.03, 1200.0, dt_s) - 0.12 * s**2
    flow = NOMINAL_FLOW * s * (1.0 + r) * (1.0 - 0.5 * fouling)
    dp = NOMINAL_DP * s**2 * (1.0 - 0.5 * r)
    hydraulic_kw = flow * dp / 36.0
    efficiency = 0.72 * (1.0 - fouling)
    elec_kw = (hydraulic_kw / efficiency + 0.8 * s) / 0.93
    vib = 0.6 + 1.6 * s**2
    bearing_target = t_amb + 12.0 + 18.0 * s**2
    fluid_target = 0.5 * t_amb + 12.0 + 3.0 * s**2
    vib_extra_noise = np.zeros(n)

    # --- physical failures act on the process before measurement
    ramp = max(1, round(per_h / 6))  # 10 minutes
    meter_flow = np.ones(n)
    current_extra = np.zeros(n)
    for f in plan:
        w = slice(f.start, f.recovered)
        g = _profile(f, ramp)
        k = len(g)
        if f.mode == "bearing_wear":
            vib[w] += 3.0 * g
            vib_extra_noise[w] += 0.15 * g
            bearing_target[w] += 20.0 * g
            elec_kw[w] += 0.7 * g
        elif f.mode == "cavitation":
            suction[w] -= 0.7 * g
            vib[w] += g * (0.8 + 0.6 * np.abs(frng.normal(0, 1, k)))
            flow[w] *= 1.0 - 0.08 * g + frng.normal(0, 0.03, k) * g
            dp[w] *= 1.0 - 0.1 * g + frng.normal(0, 0.04, k) * g
            current_extra[w] += g * frng.normal(0, 1.0, k)
        elif f.mode == "leak":
            meter_flow[w] *= 1.0 - 0.15 * g
            flow[w] *= 1.0 + 0.04 * g
            dp[w] *= 1.0 - 0.08 * g
            elec_kw[w] *= 1.0 + 0.05 * g

    current = 9.0 + elec_kw * 1000.0 / (np.sqrt(3.0) * 400.0 * 0.86) + current_extra
    clean = {
        "motor_speed": NOMINAL_SPEED * s,
        "flow_rate": flow * meter_flow,
        "suction_pressure": suction,
        "discharge_pressure": suction + dp,
        "motor_current": current,
        "power": elec_kw,
        "vibration_rms": vib,
        "bearing_temp": _lag(bearing_target, 25 * 60.0, dt_s),
        "fluid_temp": _lag(fluid_target, 2 * 3600.0, dt_s),
    }

    # --- measurement
    data: dict[str, np.ndarray] = {}
    for name in SENSORS:
        noise = rng.normal(0.0, _NOISE[name], n)
        if name == "vibration_rms":
            noise = (
                noise
                + clean[name] * rng.normal(0.0, 0.04, n)
                + vib_extra_noise * rng.normal(0, 1, n)
            )
        data[name] = clean[name] + noise

    # --- sensor faults act on the measured values
    for f in plan:
        if f.mode == "stuck_sensor" and f.sensor is not None:
            col = data[f.sensor]
            col[f.start : f.end] = col[max(0, f.start - 1)]
        elif f.mode == "spike" and f.sensor is not None:
            k = f.end - f.start
            hit = frng.random(k) < 0.5
            amp = frng.uniform(0.5, 1.0, k) * SPIKE_SCALE[f.sensor] * frng.choice([-1.0, 1.0], k)
            if f.sensor == "vibration_rms":
                amp = np.abs(amp)
            data[f.sensor][f.start : f.end] += np.where(hit, amp, 0.0)
    data["vibration_rms"] = np.maximum(data["vibration_rms"], 0.0)

    # --- dropouts: short NaN runs per sensor, and whole-row communication losses
    for name in SENSORS:
        for _ in range(int(rng.poisson(1.5 * days))):
            a = int(rng.integers(0, n))
            length = max(1, int(rng.uniform(1, 10) * 60.0 / dt_s))
            data[name][a : a + length] = np.nan
    for _ in range(int(rng.poisson(0.5 * days))):
        a = int(rng.integers(0, n))
        length = max(1, int(rng.uniform(1, 5) * 60.0 / dt_s))
        for name in SENSORS:
            data[name][a : a + length] = np.nan

    status = np.full(n, STATUS_NORMAL, dtype=object)
    mode_col = np.full(n, "", dtype=object)
    for f in plan:
        status[f.start : f.end] = STATUS_BROKEN
        status[f.end : f.recovered] = STATUS_RECOVERING
        mode_col[f.start : f.recovered] = f.mode

    frame = pd.DataFrame({"timestamp": times, "asset_id": asset_id})
    for name in SENSORS:
        frame[name] = np.round(data[name], _DECIMALS[name])
    frame["machine_status"] = pd.Series(status, dtype="str")
    frame["failure_mode"] = pd.Series(mode_col, dtype="str")
    frame.attrs["failures"] = [f.as_dict(times) for f in plan]
    frame.attrs["seed"] = seed
    return frame


def failure_events(df: pd.DataFrame, time_column: str = "timestamp") -> pd.DataFrame:
    """Failure episodes of a simulated (or similarly labelled) frame.

    One row per contiguous non-NORMAL run: ``mode, start, end`` (last BROKEN row),
    ``recovered`` (last row of the run) and ``rows``.
    """
    status = df["machine_status"].astype(str).str.upper().to_numpy()
    mode = (
        df["failure_mode"].astype(str).to_numpy()
        if "failure_mode" in df
        else np.full(len(df), "", dtype=object)
    )
    abnormal = status != STATUS_NORMAL
    cols = ["mode", "start", "end", "recovered", "rows"]
    if not abnormal.any():
        return pd.DataFrame(columns=cols)
    edges = np.diff(np.concatenate([[0], abnormal.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    times = pd.to_datetime(df[time_column]).reset_index(drop=True)
    rows = []
    for a, b in zip(starts, stops, strict=True):
        broken = np.flatnonzero(status[a:b] == STATUS_BROKEN)
        last_broken = a + (int(broken[-1]) if len(broken) else b - a - 1)
        rows.append(
            {
                "mode": str(mode[a]),
                "start": times[a],
                "end": times[last_broken],
                "recovered": times[b - 1],
                "rows": int(b - a),
            }
        )
    return pd.DataFrame(rows, columns=cols)
