"""`run_cycle`: read the new telemetry windows, judge them, update every device's state.

The function the Prefect flow `monitor-drift` and `shopfloor monitor run` call. References come
from `reference_for(model, version)` (registry.references: the one logged with each registered
version); windows of a version without one are counted and skipped, never guessed at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edge.telemetry import TelemetryStore
from monitor.detect import Assessment, Rules, assess, correct, device_state, explain
from monitor.store import DeviceState, MonitorStore


@dataclass
class CycleReport:
    assessments: list[Assessment] = field(default_factory=list)
    states: list[DeviceState] = field(default_factory=list)  # every device touched in this cycle
    newly_drifted: list[DeviceState] = field(default_factory=list)  # what the cycle raises events for
    skipped: int = 0  # windows of versions without a reference


def _strongest(assessment: Assessment) -> str | None:
    if not assessment.tests:
        return None
    name, (effect, _) = min(assessment.tests.items(), key=lambda kv: kv[1][1])  # the smallest p-value
    return f"{name}={effect:.3g}"


def _update(
    store: MonitorStore, assessment: Assessment, window, reference: dict, rules: Rules
) -> tuple[DeviceState, bool]:
    before = store.state(assessment.device, assessment.model)
    flags = ((before.flags if before else []) + [assessment.flagged])[-max(rules.persist_n, 1) :]
    state = device_state(flags, rules)
    episode = before is not None and before.state != "ok" and state != "ok" and before.since  # watch -> drift
    since = (
        before.since
        if episode or (before is not None and before.state == state and before.since)
        else assessment.ended
    )
    if assessment.flagged:
        assessment.explanation = explain(assessment, window, reference, since)
    after = DeviceState(assessment.device, assessment.model, assessment.version, state, flags, since, assessment.window_id,
                        _strongest(assessment), assessment.q_value, assessment.accuracy,
                        assessment.explanation or (before.explanation if before and state != "ok" else None))  # fmt: skip
    store.save(after, assessment)
    return after, state == "drift" and (before is None or before.state != "drift")


def run_cycle(telemetry: TelemetryStore, store: MonitorStore, reference_for: Callable[[str, str], dict | None],
              models: list[str], rules: Rules | None = None) -> CycleReport:  # fmt: skip
    rules = rules or Rules()
    report, pending, references = CycleReport(), [], {}
    for model in models:
        read = telemetry.windows(model, after_seq=store.last_seq(model))
        for seq, stored in read:
            key = (model, stored.window.version)
            if key not in references:
                references[key] = reference_for(*key)
            if references[key] is None:
                report.skipped += 1
                continue
            pending.append((stored, assess(stored.device, stored.window, references[key], rules, seed=seq)))
        if read:
            store.read_up_to(model, read[-1][0])
    if not pending:
        return report
    correct([a for _, a in pending], references, rules)
    for stored, assessment in pending:
        state, new_drift = _update(
            store, assessment, stored.window, references[(assessment.model, assessment.version)], rules
        )
        report.assessments.append(assessment)
        report.states = [s for s in report.states if (s.device, s.model) != (state.device, state.model)] + [
            state
        ]
        if new_drift:
            report.newly_drifted.append(state)
    return report
