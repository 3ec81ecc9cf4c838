"""Collector settings from the command line and the environment (the command line wins)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

DEFAULT_DEADLINE_SECONDS = 20.0
MAX_DEADLINE_SECONDS = 55.0  # the post-job step must stay well under a minute
DEFAULT_AUDIENCE = "api://imagetrail"
DEFAULT_BREAKER_SECONDS = 300.0  # after a failed delivery, jobs on the host keep their reports this long
DEFAULT_PROBE_SECONDS = 30.0  # while open, one job per interval checks whether the backend is back
MAX_BREAKER_SECONDS = 3600.0

# Environment variables whose values are secrets: never printed, never stored in a report.
SECRET_VARIABLES = (
    "SYSTEM_ACCESSTOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "IMAGETRAIL_API_KEY",
    "IMAGETRAIL_ENTRA_CLIENT_SECRET",
    "GITHUB_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
)

_TRUE = ("1", "true", "yes", "on")


def env_flag(env: Mapping[str, str], name: str) -> bool:
    return (env.get(name) or "").strip().lower() in _TRUE


def _deadline(raw: Optional[str]) -> "tuple[float, Optional[str]]":
    if raw is None or not raw.strip():
        return DEFAULT_DEADLINE_SECONDS, None
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_DEADLINE_SECONDS, (
            f"IMAGETRAIL_DEADLINE_SECONDS is not a number; using {DEFAULT_DEADLINE_SECONDS:g} s"
        )
    if not 1.0 <= value <= MAX_DEADLINE_SECONDS:
        bounded = min(max(value, 1.0), MAX_DEADLINE_SECONDS) if value == value else DEFAULT_DEADLINE_SECONDS
        return bounded, (f"IMAGETRAIL_DEADLINE_SECONDS must be between 1 and {MAX_DEADLINE_SECONDS:g}; "
                         f"using {bounded:g} s")
    return value, None


def _seconds(env: Mapping[str, str], name: str, default: float, maximum: float,
             minimum: float = 0.0) -> "tuple[float, Optional[str]]":
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default, None
    try:
        value = float(raw)
    except ValueError:
        return default, f"{name} is not a number; using {default:g} s"
    if not minimum <= value <= maximum:
        return default, f"{name} must be between {minimum:g} and {maximum:g}; using {default:g} s"
    return value, None


@dataclass
class Settings:
    dry_run: bool = False
    report_file: Optional[str] = None
    url: Optional[str] = None
    api_key: Optional[str] = None
    disabled: bool = False
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS
    audience: str = DEFAULT_AUDIENCE
    entra_client_id: Optional[str] = None
    entra_tenant_id: Optional[str] = None
    entra_scope: Optional[str] = None
    entra_authority_host: Optional[str] = None
    entra_managed_identity: bool = False
    service_connection_id: Optional[str] = None
    breaker_seconds: float = DEFAULT_BREAKER_SECONDS  # 0 turns the host's breaker off
    probe_seconds: float = DEFAULT_PROBE_SECONDS
    problem: Optional[str] = None  # a setting that was malformed and replaced by its default

    @classmethod
    def from_env(cls, env: Mapping[str, str], dry_run: bool = False,
                 report_file: Optional[str] = None) -> "Settings":
        deadline, problem = _deadline(env.get("IMAGETRAIL_DEADLINE_SECONDS"))
        breaker, breaker_problem = _seconds(env, "IMAGETRAIL_BREAKER_SECONDS", DEFAULT_BREAKER_SECONDS,
                                            MAX_BREAKER_SECONDS)
        probe, probe_problem = _seconds(env, "IMAGETRAIL_PROBE_SECONDS", DEFAULT_PROBE_SECONDS,
                                        MAX_BREAKER_SECONDS, minimum=1.0)
        return cls(
            dry_run=dry_run or env_flag(env, "IMAGETRAIL_DRY_RUN"),
            report_file=report_file or (env.get("IMAGETRAIL_REPORT_FILE") or None),
            url=(env.get("IMAGETRAIL_URL") or "").strip().rstrip("/") or None,
            api_key=(env.get("IMAGETRAIL_API_KEY") or "").strip() or None,
            disabled=env_flag(env, "IMAGETRAIL_DISABLE"),
            deadline_seconds=deadline,
            audience=(env.get("IMAGETRAIL_AUDIENCE") or "").strip() or DEFAULT_AUDIENCE,
            entra_client_id=(env.get("IMAGETRAIL_ENTRA_CLIENT_ID") or "").strip() or None,
            entra_tenant_id=(env.get("IMAGETRAIL_ENTRA_TENANT_ID") or "").strip() or None,
            entra_scope=(env.get("IMAGETRAIL_ENTRA_SCOPE") or "").strip() or None,
            entra_authority_host=(env.get("IMAGETRAIL_ENTRA_AUTHORITY_HOST") or "").strip().rstrip("/")
            or None,
            entra_managed_identity=env_flag(env, "IMAGETRAIL_ENTRA_MANAGED_IDENTITY"),
            service_connection_id=(env.get("IMAGETRAIL_SERVICE_CONNECTION_ID") or "").strip() or None,
            breaker_seconds=breaker,
            probe_seconds=probe,
            problem=problem or breaker_problem or probe_problem,
        )
