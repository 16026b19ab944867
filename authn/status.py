"""The status page: what this Apache child knows, for people and for Prometheus.

Mounted by an admin like mod_ldap's ``ldap-status`` and protected like any location (see
``conf/authn-status.conf``); the mod_python entry point is
``authn.handlers::statushandler``, this module only gathers and renders, without mod_python.

Shown:

* this process: pid, uptime, and the lockout counters of :data:`authn.lockout.policy.STATS`
  (requests checked, refused with 429, failures and successes counted, store faults);
* each password or group file this process has loaded: path, entries, when it was loaded,
  its age, how long the load took, and the warnings its parsing gave;
* each lockout store in use: up or down, and the highest live counters (client address,
  user, failures, seconds left), marked ``LOCKED`` when they are past the thresholds;
* each LDAP host this process connected to: up or down at the last attempt, why, and when;
* the credential cache: entries in this process's layer, hits (local and machine-wide),
  misses, hit ratio;
* whatever other parts registered with :func:`register`.

The ``authn_answers_total``, ``authn_denials_total``, ``authn_cache_*_total``,
``authn_lockout_store_errors_total`` and ``authn_file_reloads_total`` counters, and
``authn_build_info`` (the version), are machine-wide (:mod:`authn.metrics`): every child of
this Apache summed, without a ``pid`` label, monotonic across children that come and go and
across graceful restarts. The other series are this child's (its pid is on the page and in
their labels). Lockouts live in the shared store, so every child shows the same ones.

Rendering never raises for a store that is down or a file that was never loaded; it says so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from authn import __version__, authenticator
from authn.errors import AuthnError, StoreUnavailable
from authn.httpd.logtext import quote
from authn.lockout import policy as lockout
from authn.settings import settings_for
from authn.verdict import Reason

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_LISTED = 50


@dataclass(frozen=True, slots=True)
class Metric:
    """One value for both formats. ``kind`` is a Prometheus type (gauge, counter)."""

    name: str
    help: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)
    kind: str = "gauge"
    #: the same on every child (machine-wide counters, the version): no ``pid`` label, so a
    #: scrape that lands on another child continues the same series
    machine: bool = False


Provider = Callable[[], Iterable[Metric]]
_providers: list[Provider] = []


def register(provider: Provider) -> None:
    """Add a part's metrics to the page (each provider is called on every render and must
    not raise; if it does, the page says so and goes on)."""
    if provider not in _providers:
        _providers.append(provider)


# --- gathering ----------------------------------------------------------------------------

_MACHINE_HELP = {
    "answers": "requests answered by authn, every child of this Apache, by outcome",
    "denials": "denial lines (refused, locked out, unavailable), every child, by reason",
    "cache_local_hits": "cache hits in a process's own layer, every child",
    "cache_shared_hits": "cache hits in the machine-wide store, every child",
    "cache_misses": "cache lookups that ran the full password check, every child",
    "lockout_store_errors": "lockout store faults (each one failed open), every child",
    "file_reloads": "password and group file loads (first loads and reloads), every child",
}


def _machine_metrics() -> list[Metric]:
    """The counters of every child of this Apache instance, summed (:mod:`authn.metrics`):
    monotonic while the Apache parent runs, whichever child answers the scrape."""
    from authn import metrics as shared

    totals = shared.COUNTERS.totals()
    out = [
        Metric(
            "authn_build_info",
            "the authn version this Apache runs",
            1,
            {"version": __version__},
            machine=True,
        ),
        Metric(
            "authn_metrics_machine_wide",
            "1 when the authn_*_total counters sum every child (0: this child only)",
            int(shared.COUNTERS.machine_wide),
            machine=True,
        ),
    ]
    for name, value in totals.items():
        kind, _, rest = name.partition("_")
        if kind == "answers":
            out.append(
                Metric("authn_answers_total", _MACHINE_HELP[kind], value, {"outcome": rest}, "counter", True)
            )
        elif kind == "denials":
            reason = str(Reason[rest.upper()])
            out.append(
                Metric("authn_denials_total", _MACHINE_HELP[kind], value, {"reason": reason}, "counter", True)
            )
        else:
            out.append(
                Metric(f"authn_{name}_total", _MACHINE_HELP[name], value, kind="counter", machine=True)
            )
    return out


def _process_metrics() -> list[Metric]:
    stats = lockout.STATS
    helps = {
        "checks": "requests looked at by the lockout gate",
        "refused": "requests refused with 429 by the lockout",
        "failures": "failed password checks counted",
        "successes": "successful password checks seen",
        "cleared": "(user, address) counters cleared by a success",
        "store_errors": "lockout store faults (each one failed open)",
        "skipped": "requests let through unchecked while the lockout store was down",
    }
    metrics = [Metric("authn_process_start_time_seconds", "when this Apache child started", stats.started)]
    for name, value in stats.as_dict().items():
        metrics.append(Metric(f"authn_lockout_{name}_total", helps.get(name, name), value, kind="counter"))
    return metrics


def _file_metrics() -> list[Metric]:
    metrics: list[Metric] = []
    now = time.time()
    for (kind, path), source in sorted(authenticator._sources.items()):
        loaded = getattr(getattr(source, "_file", None), "_loaded", None)
        labels = {"kind": kind, "path": path}
        if loaded is None:
            metrics.append(Metric("authn_file_loaded", "1 when the file is loaded", 0, labels))
            continue
        value = loaded.value
        table = value if isinstance(value, Mapping) else getattr(value, "hashes", {})
        metrics += [
            Metric("authn_file_loaded", "1 when the file is loaded", 1, labels),
            Metric("authn_file_entries", "users in the file", len(table), labels),
            Metric(
                "authn_file_loaded_timestamp_seconds",
                "when it was loaded",
                loaded.loaded_at,
                labels,
            ),
            Metric(
                "authn_file_age_seconds",
                "seconds since it was loaded",
                now - loaded.loaded_at,
                labels,
            ),
            Metric(
                "authn_file_load_seconds",
                "how long reading and parsing took",
                loaded.load_seconds,
                labels,
            ),
            Metric(
                "authn_file_warnings",
                "lines the parser warned about",
                len(getattr(value, "warnings", ())),
                labels,
            ),
        ]
    return metrics


def _cache_metrics() -> list[Metric]:
    """The credential cache as this process sees it: size and hits."""
    from authn.cache import verdicts as cache

    stats = cache.STATS.as_dict()
    lookups = stats["local_hits"] + stats["shared_hits"] + stats["misses"]
    hits = stats["local_hits"] + stats["shared_hits"]
    helps = {
        "local_hits": "cache hits in this process's layer",
        "shared_hits": "cache hits in the machine-wide store",
        "misses": "cache lookups that ran the full password check",
        "stored": "granted verdicts stored",
    }
    metrics = [Metric(f"authn_cache_{k}_total", helps[k], v, kind="counter") for k, v in stats.items()]
    metrics += [
        Metric("authn_cache_local_entries", "entries in this process's layer", cache.local_entries()),
        Metric("authn_cache_hit_ratio", "hits / lookups in this process", hits / lookups if lookups else 0.0),
    ]
    return metrics


def _directory_metrics() -> list[Metric]:
    """The state of each LDAP host this process has opened a connection to."""
    from authn.sources.ldap.pool import HOST_STATE  # python-ldap only when it is in use

    metrics: list[Metric] = []
    now = time.time()
    for uri, state in sorted(HOST_STATE.items()):
        labels = {"host": uri}
        metrics += [
            Metric(
                "authn_ldap_host_up",
                "1 when the last connection to the host succeeded",
                int(state.up),
                labels if state.up else {**labels, "why": state.why[:200]},
            ),
            Metric(
                "authn_ldap_host_checked_age_seconds", "seconds since that attempt", now - state.at, labels
            ),
        ]
    return metrics


def _lockouts_in_use(options: Mapping[str, str]) -> list[lockout.Lockout]:
    found = {id(item.store): item for item in lockout.all_lockouts()}
    try:
        own = lockout.lockout_for(settings_for(options))
    except AuthnError:
        own = None  # the status location has no complete authn configuration of its own
    if own is not None:
        found.setdefault(id(own.store), own)
    return list(found.values())


@dataclass(frozen=True, slots=True)
class StoreReport:
    description: str
    policy: lockout.Policy
    error: str | None
    rows: list[tuple[str, str, str | None, int, int, bool]]  # kind, client, user, n, left, locked


def _store_reports(options: Mapping[str, str]) -> list[StoreReport]:
    reports = []
    now = time.time()
    for item in _lockouts_in_use(options):
        try:
            top = item.top(MAX_LISTED)
        except StoreUnavailable as exc:
            reports.append(StoreReport(item.store.description, item.policy, str(exc), []))
            continue
        rows = []
        for key, count in top:
            kind, client, user = lockout.describe_key(key)
            limit = item.policy.threshold if kind == "pair" else item.policy.client_threshold
            left = max(0, int(count.expires - now))
            rows.append((kind, client, user, count.failures, left, count.failures >= limit))
        reports.append(StoreReport(item.store.description, item.policy, None, rows))
    return reports


def _lockout_metrics(reports: list[StoreReport]) -> list[Metric]:
    metrics = []
    for report in reports:
        labels = {"store": report.description}
        metrics += [
            Metric(
                "authn_lockout_store_up",
                "1 when the lockout store answers",
                report.error is None,
                labels,
            ),
            Metric(
                "authn_lockout_locked",
                f"locked keys among the top {MAX_LISTED} counters",
                sum(r[5] for r in report.rows),
                labels,
            ),
            Metric(
                "authn_lockout_counters",
                f"live counters (at most {MAX_LISTED} counted)",
                len(report.rows),
                labels,
            ),
        ]
    return metrics


def _provided() -> tuple[list[Metric], list[str]]:
    metrics: list[Metric] = []
    problems: list[str] = []
    for provider in list(_providers):
        try:
            metrics.extend(provider())
        except Exception as exc:  # a broken part must not break the page
            problems.append(f"{getattr(provider, '__qualname__', provider)}: {exc!r}")
    return metrics, problems


# --- rendering ----------------------------------------------------------------------------


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(int(value))


def render_prometheus(metrics: Iterable[Metric]) -> str:
    """Prometheus text exposition format 0.0.4; every series carries this process's pid."""
    pid = str(os.getpid())
    lines: list[str] = []
    described: set[str] = set()
    for metric in metrics:
        if metric.name not in described:
            described.add(metric.name)
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
        labels = dict(metric.labels) if metric.machine else {"pid": pid, **metric.labels}
        text = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())
        lines.append(
            f"{metric.name}{{{text}}} {_number(metric.value)}"
            if text
            else f"{metric.name} {_number(metric.value)}"
        )
    return "\n".join(lines) + "\n"


def render_text(metrics: list[Metric], reports: list[StoreReport], problems: list[str]) -> str:
    """A plain-text page for people: one ``name{labels} value`` line per metric, then the
    lockout tables."""
    now = time.time()
    started = lockout.STATS.started
    out = [
        f"authn {__version__} status",
        f"pid {os.getpid()}, up {now - started:.0f} s "
        f"(since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))})",
        "",
    ]
    for metric in metrics:
        labels = ", ".join(f"{k}={v}" for k, v in metric.labels.items())
        out.append(f"{metric.name}{' [' + labels + ']' if labels else ''}: {_number(metric.value)}")
    for report in reports:
        policy = report.policy
        out += [
            "",
            f"lockout store {report.description}: " + (f"DOWN ({report.error})" if report.error else "up"),
            f"  policy: {policy.threshold} failures per user and address, "
            f"{policy.client_threshold} per address, window {policy.window} s",
        ]
        if not report.error:
            out.append(f"  live counters (highest {MAX_LISTED}): {len(report.rows) or 'none'}")
        for kind, client, user, failures, left, locked in report.rows:
            who = f"user={quote(user)} client={client}" if user is not None else f"client={client}"
            mark = "LOCKED" if locked else "counting"
            out.append(f"  {mark:8} {who} failures={failures} resets_in={left}s ({kind})")
    for problem in problems:
        out.append(f"status provider failed: {problem}")
    return "\n".join(out) + "\n"


def render(options: Mapping[str, str], *, prometheus: bool = False) -> str:
    """The whole page for a status location with these ``PythonOption`` values."""
    reports = _store_reports(options)
    provided, problems = _provided()
    metrics = [
        *_machine_metrics(),
        *_process_metrics(),
        *_file_metrics(),
        *_cache_metrics(),
        *_directory_metrics(),
        *_lockout_metrics(reports),
        *provided,
    ]
    if prometheus:
        return render_prometheus(metrics)
    return render_text(metrics, reports, problems)
