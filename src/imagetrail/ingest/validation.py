"""Validating a report body against ``schemas/report-v1.schema.json``.

Errors name the field path the way a person reads it (``pushes[3].digest``) so the
collector's log says exactly what was wrong.

Two validators, one schema: ``jsonschema_rs`` (compiled, ~10 us of CPU per report) accepts the
valid bodies on the hot path; only when it refuses one does the reference implementation
``jsonschema`` (~0.7 ms of CPU per report) run, to pick and word the error. ``jsonschema`` has
the last word on a refusal, so a body is only ever refused with a message naming a field.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any, Dict, Optional

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from imagetrail.json_input import JsonInputError, check_depth, field_path
from imagetrail.report import compute_report_id

MAX_MESSAGE_CHARS = 400


class ReportInvalid(ValueError):
    """The body is JSON but not a valid report; the message starts with the field path."""


@lru_cache(maxsize=1)
def report_schema() -> Dict[str, Any]:
    text = resources.files("imagetrail").joinpath("schemas/report-v1.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    return Draft202012Validator(report_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)


@lru_cache(maxsize=1)
def _fast_validator() -> Any:
    return jsonschema_rs.validator_for(report_schema(), validate_formats=True)


def _describe(error: ValidationError) -> str:
    message = error.message
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "..."
    return f"{field_path(error.absolute_path, '(report)')}: {message}"


def passes_fast_check(body: Any) -> bool:
    """True when the compiled validator accepts ``body`` (microseconds; no message)."""
    return bool(_fast_validator().is_valid(body))


def schema_error(body: Any) -> Optional[str]:
    """The most relevant schema violation, worded with its field path, or None (slow: milliseconds)."""
    # A body the schema accepts nests a few levels; a refused one may nest arbitrarily, and the
    # reference validator and its messages recurse.
    try:
        check_depth(body)
    except JsonInputError as exc:
        return str(exc)
    error: Optional[ValidationError] = best_match(_validator().iter_errors(body))
    return _describe(error) if error is not None else None


def check_report_id(body: Dict[str, Any]) -> None:
    """Raise ReportInvalid unless the (schema-valid) body's reportId matches its content."""
    expected = compute_report_id(body)
    if body["reportId"] != expected:
        raise ReportInvalid(f"reportId: {body['reportId']!r} does not match the report's content "
                            f"(expected {expected}; see imagetrail.report.compute_report_id)")


def validate_report(body: Any) -> None:
    """Raise ReportInvalid unless ``body`` is a schema-valid report whose reportId matches its content."""
    if not passes_fast_check(body):
        message = schema_error(body)
        if message is not None:
            raise ReportInvalid(message)
    check_report_id(body)
