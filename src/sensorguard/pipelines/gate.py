"""The quality gate: evaluate a candidate and production on the same readings, decide.

The room's rules: :func:`decide` is pure (metrics in, verdict out; no MLflow);
:func:`evaluate_gate` gets the metrics — the candidate's from the caller when they were
measured in the same process (``candidate_metrics``: training already evaluated the
held-out tail, so it is not scored twice), otherwise by loading and evaluating both
versions — and calls it. Recording a verdict (tags, audit) is :mod:`.lifecycle`'s job.

**Regime change.** Beside the metrics, the gate judges the evaluation readings against
the candidate's training range (the drift profile logged with its run) with the rule of
``sensorguard score`` and the watch service (:mod:`sensorguard.evaluation.regime`), per
asset, and records the verdict in ``GateDecision.regime`` (so in the audit trail). A
regime change rejects the candidate with the verdict and the retrain hint as the reason:
metrics measured on readings the model was not trained for measure the range, not the
detector (every reading out of range is an alarm), so neither a pass nor a comparison
with production means anything there. The store window of operator labels
(:mod:`.live_gate`) is judged the same way. A candidate whose run has no profile is not
judged (noted in the check).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from sensorguard.config import Settings, get_settings
from sensorguard.data import Readings
from sensorguard.detectors.base import BaseDetector
from sensorguard.errors import SensorGuardError
from sensorguard.evaluation.events import evaluate_detector
from sensorguard.registry import load_version, version_at

GATE_METRICS = (
    "f1",
    "precision",
    "recall",
    "event_recall",
    "events_total",
    "events_detected",
    "false_alarms_per_day",
    "mean_detection_delay_s",
)


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class GateDecision:
    """The gate's verdict on a candidate, with the metrics of both versions."""

    passed: bool
    candidate_version: int
    production_version: int | None
    candidate: dict[str, Any]
    production: dict[str, Any] | None
    checks: list[Check] = field(default_factory=list)
    evaluation_rows: int = 0
    evaluation_source: str = ""
    labels: dict[str, Any] | None = None  # on operator-labelled alarms (live_gate)
    regime: dict[str, Any] | None = None  # the evaluation data's regime verdict

    def add_check(self, name: str, passed: bool, detail: str) -> None:
        """Add a check to the verdict; a failed check rejects the candidate."""
        self.checks.append(Check(name, passed, detail))
        self.passed = self.passed and passed

    @property
    def reasons(self) -> list[str]:
        """Why it failed (the failed checks); ``[]`` when it passed."""
        return [c.detail for c in self.checks if not c.passed]

    def summary(self) -> str:
        head = "passed" if self.passed else "rejected"
        against = (
            f"against production v{self.production_version}"
            if self.production_version is not None
            else "(no production version yet: absolute thresholds only)"
        )
        text = f"gate {head} for v{self.candidate_version} {against}"
        if not self.passed:
            text += ": " + "; ".join(self.reasons)
        return text

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reasons"] = self.reasons
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateDecision:
        """The decision back from its :meth:`to_dict` form (as passed through XCom)."""
        fields = {k: v for k, v in d.items() if k != "reasons"}
        fields["checks"] = [Check(**c) for c in d.get("checks", [])]
        return cls(**fields)


def _metric(m: dict[str, Any] | None, key: str) -> float:
    if not m:
        return float("nan")
    v = m.get(key)
    return float(v) if isinstance(v, int | float) and v is not None else float("nan")


def _slim(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in GATE_METRICS if k in metrics}


def decide(
    candidate: dict[str, Any],
    production: dict[str, Any] | None,
    settings: Settings,
    *,
    candidate_version: int,
    production_version: int | None,
) -> GateDecision:
    """Apply the absolute thresholds and the no-regression rule to evaluation metrics."""
    checks: list[Check] = []
    events = int(candidate.get("events_total") or 0)
    checks.append(
        Check(
            "failure events in evaluation data",
            events > 0,
            f"the evaluation data holds {events} labelled failure event(s)"
            + ("" if events else ": the gate cannot verify detection without failures"),
        )
    )
    f1 = _metric(candidate, "f1")
    rec = _metric(candidate, "event_recall")
    fapd = _metric(candidate, "false_alarms_per_day")
    checks.append(
        Check(
            "minimum F1",
            f1 >= settings.gate_min_f1,
            f"F1 {f1:.3f} {'≥' if f1 >= settings.gate_min_f1 else '<'} "
            f"minimum {settings.gate_min_f1:.3f}",
        )
    )
    checks.append(
        Check(
            "minimum event recall",
            rec >= settings.gate_min_event_recall,
            f"event recall {rec:.3f} {'≥' if rec >= settings.gate_min_event_recall else '<'} "
            f"minimum {settings.gate_min_event_recall:.3f}",
        )
    )
    checks.append(
        Check(
            "maximum false alarms per day",
            fapd <= settings.gate_max_false_alarms_per_day,
            f"false alarms/day {fapd:.2f} "
            f"{'≤' if fapd <= settings.gate_max_false_alarms_per_day else '>'} "
            f"maximum {settings.gate_max_false_alarms_per_day:.2f}",
        )
    )
    if production is not None:
        tol = settings.gate_tolerance
        for key, label in (("f1", "F1"), ("event_recall", "event recall")):
            c, p = _metric(candidate, key), _metric(production, key)
            ok = not math.isnan(c) and (math.isnan(p) or c >= p - tol)
            checks.append(
                Check(
                    f"no {label} regression",
                    ok,
                    f"{label} {c:.3f} vs production v{production_version} {p:.3f} "
                    f"({'within' if ok else 'drops more than'} tolerance {tol:.3f})",
                )
            )
    return GateDecision(
        passed=all(c.passed for c in checks),
        candidate_version=candidate_version,
        production_version=production_version,
        candidate=_slim(candidate),
        production=None if production is None else _slim(production),
        checks=checks,
    )


def evaluate_gate(
    candidate_version: int,
    eval_readings: Readings,
    *,
    settings: Settings | None = None,
    candidate_detector: BaseDetector | None = None,
    candidate_metrics: dict[str, Any] | None = None,
    candidate_profile: dict[str, Any] | None = None,
) -> GateDecision:
    """Evaluate the candidate and the current production version on the same readings.

    ``candidate_metrics``: the candidate's metrics on exactly ``eval_readings`` when the
    caller has them (training's held-out evaluation); otherwise the candidate is scored
    here (``candidate_detector``, or the registered version loaded).
    ``candidate_profile``: its training profile (else read from its run) for the regime
    verdict.
    """
    settings = settings or get_settings()
    name = settings.model_name
    loaded_candidate: Any = None
    if eval_readings.y is None:
        raise SensorGuardError(
            f"{eval_readings.source}: the quality gate needs labelled evaluation readings",
            "pass labelled data with --data, or force with --force --reason TEXT",
        )
    if candidate_metrics is None:
        if candidate_detector is None:
            loaded_candidate = load_version(name, candidate_version, settings=settings)
            candidate_detector = loaded_candidate.detector
        candidate_metrics = evaluate_detector(candidate_detector, eval_readings)
    prod_version = version_at(name, settings.production_alias, settings)
    prod_metrics = None
    prod_detector = None
    if prod_version is not None and prod_version != candidate_version:
        prod = load_version(name, prod_version, alias=settings.production_alias, settings=settings)
        prod_detector = prod.detector
        try:
            prod_metrics = evaluate_detector(prod.detector, eval_readings)
        except SensorGuardError as exc:
            # e.g. production was trained on other sensors: it cannot be compared, so the
            # candidate is judged on the absolute thresholds alone (and the reason is shown)
            prod_metrics = {"error": str(exc)}
    elif prod_version == candidate_version:
        prod_version = None
    decision = decide(
        candidate_metrics,
        prod_metrics if prod_metrics and "error" not in prod_metrics else None,
        settings,
        candidate_version=candidate_version,
        production_version=prod_version,
    )
    if prod_metrics and "error" in prod_metrics:
        decision.checks.append(
            Check(
                "production comparable", True, f"production not comparable: {prod_metrics['error']}"
            )
        )
    decision.evaluation_rows = len(eval_readings)
    decision.evaluation_source = str(eval_readings.source)
    if candidate_profile is None:
        candidate_profile = _training_profile(name, candidate_version, loaded_candidate, settings)
    add_regime_check(decision, eval_readings, candidate_profile, "evaluation data")
    from sensorguard.pipelines.live_gate import add_label_checks

    add_label_checks(
        decision,
        lambda: (
            candidate_detector or load_version(name, candidate_version, settings=settings).detector
        ),
        prod_detector,
        settings,
        candidate_profile=candidate_profile,
    )
    return decision


def _training_profile(
    name: str, version: int, loaded: Any, settings: Settings
) -> dict[str, Any] | None:
    """The candidate's training (drift) profile: from the loaded version when it was
    loaded anyway, else the artifact of its run (one small JSON); ``None`` if absent."""
    if loaded is not None:
        return getattr(loaded, "training_profile", None)
    from sensorguard.registry.runs import load_training_profile_artifact
    from sensorguard.registry.versions import run_id_of

    try:
        run_id = run_id_of(name, version, settings)
        return load_training_profile_artifact(run_id, settings) if run_id else None
    except SensorGuardError:
        return None


def add_regime_check(
    decision: GateDecision, readings: Readings, profile: dict[str, Any] | None, what: str
) -> None:
    """Judge ``readings`` against the training ``profile`` (per asset, the rule of
    ``sensorguard score``); record the verdict and a check that a regime change fails."""
    from sensorguard.evaluation.regime import RETRAIN_HINT, ranges_from_profile, regime_of_readings

    try:
        ranges = ranges_from_profile(profile or {})
    except SensorGuardError:
        decision.add_check(
            "training regime", True, f"{what} not judged: the candidate has no training profile"
        )
        return
    regimes, _ = regime_of_readings(readings, ranges)
    decision.regime = {"source": what, **regimes.to_dict()}
    if regimes.regime_change:
        detail = (
            f"{what} is a regime change for the candidate ({regimes.summary()}): {RETRAIN_HINT}"
        )
    else:
        detail = f"{what} within the candidate's training range"
    decision.add_check("training regime", not regimes.regime_change, detail)


def unlabelled_decision(
    candidate_version: int, production_version: int | None, source: str
) -> GateDecision:
    """The verdict when the evaluation readings carry no labels: rejected, with the reason."""
    detail = f"{source}: no label column, so the gate cannot measure detection"
    return GateDecision(
        passed=False,
        candidate_version=candidate_version,
        production_version=production_version,
        candidate={},
        production=None,
        checks=[Check("labelled evaluation data", False, detail)],
        evaluation_source=source,
    )
