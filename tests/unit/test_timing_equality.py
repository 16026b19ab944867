"""Unknown users cost what wrong passwords cost: both run one full hash check of the file's
scheme and cost (behaviour checked by counting the checks, never by timing)."""

import itertools
import time
from collections import Counter
from pathlib import Path

import pytest

from authn import hashes
from authn.sources import passwordfile
from authn.sources.passwordfile import PasswordFile


def test_unknown_and_disabled_users_run_one_check_like_a_wrong_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = hashes.make_hash(b"pw", "bcrypt", 6)
    path = tmp_path / "users"
    path.write_text(f"alice:{stored}\nbob:!{stored}\n")
    source = PasswordFile(str(path))
    calls: list[hashes.HashInfo] = []
    real_verify = hashes.verify

    def spy(password: bytes, hashed: str) -> bool:
        calls.append(hashes.identify(hashed))
        return real_verify(password, hashed)

    monkeypatch.setattr(passwordfile.hashes, "verify", spy)
    for user in ("alice", "nobody", "bob"):
        calls.clear()
        assert not source.check(user, b"wrong").granted
        assert calls == [hashes.HashInfo("bcrypt", 6)], user


# --- the times themselves ---------------------------------------------------------------------
# A file mixing schemes whose costs differ by large factors (bcrypt 8 is about 8x bcrypt 5,
# bcrypt 5 and SHA-512 crypt about 4x apr1, apr1 about 100x {SHA}): unknown names must spread
# over the same cost bands as the users, in the same proportions, each name always in the same
# band. Times are the minimum of a few checks (load only ever adds time), compared between
# bands, never against absolute figures, so a loaded CI machine does not make it fail.

TIMED_MIX: list[tuple[str, int | None, int, str]] = [
    # scheme, cost, how many users, how each line is written
    ("bcrypt", 5, 36, "plain"),
    ("bcrypt", 8, 6, "plain"),
    ("bcrypt", 8, 4, "disabled"),  # "!" + hash: costs what bcrypt 8 costs
    ("apr1", None, 20, "plain"),
    ("sha1", None, 16, "plain"),
    ("sha512-crypt", None, 14, "plain"),
    ("plaintext", None, 4, "plain"),  # crypt(3) reads "se" as a DES salt: a few microseconds
]
UNKNOWN_NAMES = 400
REPEATS = 3
BAND_FACTOR = 3.0  # classes whose median times are closer than this share a band


def timed_check(source: PasswordFile, user: str) -> float:
    """Microseconds of one check of a wrong password for ``user``, the least of a few."""
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter_ns()
        source.check(user, b"wrong password")
        best = min(best, (time.perf_counter_ns() - started) / 1000)
    return best


def quantiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    return tuple(ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in (0.1, 0.5, 0.9))  # type: ignore[return-value]


def test_unknown_names_spread_over_the_users_cost_bands(tmp_path: Path) -> None:
    lines, users = [], []
    for scheme, cost, count, how in TIMED_MIX:
        for i in range(count):
            user = f"{scheme}{cost or ''}-{how}-{i}"
            stored = f"secret{i}" if scheme == "plaintext" else hashes.make_hash(b"pw", scheme, cost)
            lines.append(f"{user}:{'!' if how == 'disabled' else ''}{stored}")
            users.append(user)
    path = tmp_path / "users"
    path.write_text("\n".join(lines) + "\n")
    source = PasswordFile(str(path))
    table = source.table()

    def class_of_user(user: str) -> hashes.TimingClass:
        return hashes.timing_class(table.hashes[user].removeprefix("!"))

    known = {user: timed_check(source, user) for user in users}
    names = [f"visitor-{i}" for i in range(UNKNOWN_NAMES)]
    unknown = {name: timed_check(source, name) for name in names}

    by_class: dict[hashes.TimingClass, list[float]] = {}
    for user, took in known.items():
        by_class.setdefault(class_of_user(user), []).append(took)
    drawn: dict[hashes.TimingClass, list[float]] = {}
    for name, took in unknown.items():
        drawn.setdefault(hashes.timing_class(table.dummy_for(name)), []).append(took)
    report = ["class: users p10/p50/p90 us | unknown names drawing it p10/p50/p90 us"]
    for timing in sorted(by_class, key=lambda t: quantiles(by_class[t])[1]):
        k, u = quantiles(by_class[timing]), quantiles(drawn.get(timing, [0.0]))
        report.append(
            f"{timing}: {len(by_class[timing])} users {k[0]:.0f}/{k[1]:.0f}/{k[2]:.0f} | "
            f"{len(drawn.get(timing, []))} names {u[0]:.0f}/{u[1]:.0f}/{u[2]:.0f}"
        )
    print("\n".join(report))

    # Bands of classes that cost about the same, from the users' own times.
    medians = sorted(quantiles(times)[1] for times in by_class.values())
    bounds = [
        (lower * upper) ** 0.5 for lower, upper in itertools.pairwise(medians) if upper / lower >= BAND_FACTOR
    ]
    assert len(bounds) >= 3, report  # {SHA} and DES, apr1, bcrypt 5 and SHA-512, bcrypt 8

    def band(took: float) -> int:
        return sum(took > bound for bound in bounds)

    def shares(times: list[float]) -> list[float]:
        counted = Counter(band(t) for t in times)
        return [counted[i] / len(times) for i in range(len(bounds) + 1)]

    user_shares, name_shares = shares(list(known.values())), shares(list(unknown.values()))
    mix_shares = [0.0] * (len(bounds) + 1)
    for user in users:  # what each user should cost, by the median of its class
        mix_shares[band(quantiles(by_class[class_of_user(user)])[1])] += 1 / len(users)
    report.append(f"bands split at {[round(b) for b in bounds]} us")
    report.append(
        "share per band: file {}, users {}, unknown names {}".format(
            *([round(s, 3) for s in shares] for shares in (mix_shares, user_shares, name_shares))
        )
    )
    print(report[-1])
    for expected, of_users, of_names in zip(mix_shares, user_shares, name_shares, strict=True):
        assert of_users == pytest.approx(expected, abs=0.1), report
        assert of_names == pytest.approx(expected, abs=0.1), report

    # One name costs the same every time: measured again, later, in another order.
    again = names[:100][::-1]
    same = sum(band(timed_check(source, name)) == band(unknown[name]) for name in again)
    assert same >= 95, report
