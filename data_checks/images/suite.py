"""The great-expectations suites every image data set must pass before training.

Two suites: one row per image (decodable, format, mode, size, aspect, channels, brightness,
contrast, blur, label) and one row per class (present, enough examples). Each expectation carries
its rule name and severity in `meta`, so a failure maps straight to a `Finding` naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import great_expectations as gx
import pandas as pd

from data_checks.findings import Finding, Severity
from data_checks.gx_context import quiet_context, run_suite
from data_checks.images.config import ImageRules  # noqa: F401  (re-exported: the stage and its settings)
from data_checks.images.properties import suffix_format
from data_checks.images.thresholds import fit_rules

DEFAULT_SEVERITY = {
    "decode": Severity.ERROR,
    "format_mismatch": Severity.ERROR,
    "mode": Severity.ERROR,
    "size": Severity.ERROR,
    "aspect": Severity.ERROR,
    "channels": Severity.ERROR,
    "brightness": Severity.ERROR,
    "contrast": Severity.ERROR,
    "blur": Severity.WARN,
    "label": Severity.ERROR,
    "class_present": Severity.ERROR,
    "min_per_class": Severity.ERROR,
}


def _meta(rule: str, rules: ImageRules, text: str) -> dict:
    return {"rule": rule, "severity": str(rules.severity.get(rule, DEFAULT_SEVERITY[rule])), "text": text}


def _in_set(column: str, values: list, rule: str, rules: ImageRules, text: str):
    return gx.expectations.ExpectColumnValuesToBeInSet(
        column=column, value_set=values, meta=_meta(rule, rules, text)
    )


def _between(column: str, low: float | None, high: float | None, rule: str, rules: ImageRules, text: str):
    return gx.expectations.ExpectColumnValuesToBeBetween(
        column=column, min_value=low, max_value=high, meta=_meta(rule, rules, text)
    )


def image_suite(
    rules: ImageRules, classes: list[str], derived: frozenset[str] = frozenset()
) -> gx.ExpectationSuite:
    """Per-image expectations over the property table (see properties.PROPERTY_COLUMNS); `rules` with every
    bound set (thresholds.fit_rules), `derived` the ones set from this data set, which the messages say."""
    r = rules
    seen = lambda *bounds: " (from this data set's spread)" if derived & set(bounds) else ""  # noqa: E731
    return gx.ExpectationSuite(
        name="image_properties",
        expectations=[
            _in_set("decodable", [True], "decode", r, "file must decode as an image"),
            _in_set("format_matches_suffix", [True], "format_mismatch", r, "file content must match its suffix"),
            _in_set("mode", list(r.modes), "mode", r, f"colour mode must be one of {list(r.modes)}"),
            _between("min_side", r.min_side, None, "size", r, f"shorter side must be >= {r.min_side} px"),
            _between("max_side", None, r.max_side, "size", r, f"longer side must be <= {r.max_side} px"),
            _between("aspect", r.min_aspect, r.max_aspect, "aspect", r, f"width/height must lie in [{r.min_aspect}, {r.max_aspect}]"),
            _in_set("channels", list(r.channels), "channels", r, f"channel count must be one of {list(r.channels)}"),
            _between("brightness", r.min_brightness, r.max_brightness, "brightness", r,
                     f"mean grey level must lie in [{r.min_brightness}, {r.max_brightness}]{seen('min_brightness', 'max_brightness')} (lamp off or sensor saturated?)"),
            _between("contrast", r.min_contrast, None, "contrast", r, f"grey-level spread must be >= {r.min_contrast}{seen('min_contrast')} (blank frame?)"),
            _between("blur", r.min_blur, None, "blur", r, f"sharpness (variance of Laplacian) must be >= {r.min_blur}{seen('min_blur')}"),
            _in_set("label", classes, "label", r, f"label must be one of {classes}"),
        ],
    )  # fmt: skip


def class_suite(rules: ImageRules, classes: list[str]) -> gx.ExpectationSuite:
    """Per-class expectations over the class-count table."""
    e = gx.expectations
    return gx.ExpectationSuite(
        name="class_balance",
        expectations=[
            e.ExpectColumnValuesToBeBetween(
                column="count",
                min_value=1,
                meta=_meta("class_present", rules, "every known class needs images"),
            ),
            e.ExpectColumnValuesToBeBetween(
                column="count",
                min_value=rules.min_per_class,
                meta=_meta("min_per_class", rules, f"every class needs >= {rules.min_per_class} images"),
            ),
        ],
    )


def _image_table(properties: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    table = properties.copy()
    table["label"] = labels.to_numpy()
    table["format_matches_suffix"] = [
        (not ok) or fmt == suffix_format(p)
        for p, fmt, ok in zip(table["path"], table["format"], table["decodable"], strict=True)
    ]
    table["min_side"] = table[["width", "height"]].min(axis=1)
    table["max_side"] = table[["width", "height"]].max(axis=1)
    # Undecodable rows have no measurements; they fail `decode` only, not every range rule.
    measured = ["mode", "min_side", "max_side", "aspect", "channels", "brightness", "contrast", "blur"]
    fill = {
        "mode": "L",
        "channels": 1,
        "aspect": 1.0,
        "min_side": 10**4 // 2,
        "max_side": 1,
        "brightness": 128.0,
        "contrast": 100.0,
        "blur": 10**6,
    }
    for column in measured:
        table[column] = table[column].where(table["decodable"], fill[column])
    return table


def _to_findings(results: list, key: str) -> list[Finding]:
    findings = []
    for result in results:
        if result.success:
            continue
        meta = result.expectation_config.meta
        column = result.expectation_config.kwargs["column"]
        for failure in result.result.get("unexpected_index_list") or []:
            value = failure.get(column)
            message = f"{meta['text']}; found {column}={_show(value)}"
            if key == "path":
                findings.append(Finding(meta["rule"], Severity(meta["severity"]), message, failure["path"]))
            else:
                findings.append(
                    Finding(meta["rule"], Severity(meta["severity"]), f"class {failure[key]!r}: {message}")
                )
    return findings


def _show(value: object) -> str:
    value = value.item() if hasattr(value, "item") else value  # numpy scalars read as Python values
    return f"{value:.1f}" if isinstance(value, float) else repr(value)


PLAIN = ("decode", "format_mismatch")


def _plain_message(finding: Finding, row: pd.Series) -> str:
    """What a person understands for the two rules whose measured value is only True/False."""
    if finding.rule == "decode":
        error = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the file", str(row["decode_error"]))
        return f"cannot decode as an image ({error}); replace the file or remove it from the data set"
    return f"format does not match suffix {Path(finding.path).suffix}: {row['format']} data; rename it or re-save it"


def validate_images(
    properties: pd.DataFrame, labels: pd.Series, rules: ImageRules, classes: list[str], docs_dir: Path | None
) -> list[Finding]:
    """Run both suites; undecodable files get their decoder's message. Data Docs go to `docs_dir`."""
    context = quiet_context(docs_dir)
    table = _image_table(properties, labels)
    fitted, derived = fit_rules(rules, table)
    findings = _to_findings(
        run_suite(context, image_suite(fitted, classes, derived), table, "path", docs_dir is not None), "path"
    )
    rows = table.set_index("path")
    findings = [Finding(f.rule, f.severity, _plain_message(f, rows.loc[f.path]), f.path) if f.rule in PLAIN else f
                for f in findings]  # fmt: skip
    good = table[table["decodable"] & table["label"].isin(classes)]
    counts = good["label"].value_counts().reindex(classes, fill_value=0)
    count_table = pd.DataFrame({"label": classes, "count": counts.to_numpy()})
    findings += _to_findings(
        run_suite(context, class_suite(rules, classes), count_table, "label", docs_dir is not None), "label"
    )
    return findings
