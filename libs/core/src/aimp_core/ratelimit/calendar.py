"""UTC days and months as integers, from microseconds since the Unix epoch.

The same arithmetic runs in the Lua script (:mod:`aimp_core.ratelimit.lua`),
so the period a quota counts in is decided by Redis's clock alone. The civil
calendar conversions are Howard Hinnant's ``days_from_civil`` and
``civil_from_days`` (proleptic Gregorian, exact for any day).
"""

from __future__ import annotations

US_PER_S = 1_000_000
US_PER_DAY = 86_400 * US_PER_S


def day_index(now_us: int) -> int:
    """Days since 1970-01-01 (UTC)."""
    return now_us // US_PER_DAY


def civil_from_days(days: int) -> tuple[int, int]:
    """(year, month) of the UTC day ``days`` since the epoch."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    year = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    return (year + 1 if month <= 2 else year), month


def days_from_civil(year: int, month: int) -> int:
    """Days since the epoch of the first day of ``month`` in ``year``."""
    y = year - 1 if month <= 2 else year
    era = y // 400
    yoe = y - era * 400
    mp = month - 3 if month > 2 else month + 9
    doy = (153 * mp + 2) // 5
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def month_index(now_us: int) -> int:
    """Months since year 0 (``year * 12 + month - 1``) of the UTC month holding ``now_us``."""
    year, month = civil_from_days(day_index(now_us))
    return year * 12 + month - 1


def day_end_us(now_us: int) -> int:
    """The first microsecond of the next UTC day."""
    return (day_index(now_us) + 1) * US_PER_DAY


def month_end_us(now_us: int) -> int:
    """The first microsecond of the next UTC month."""
    year, month = civil_from_days(day_index(now_us))
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return days_from_civil(year, month) * US_PER_DAY


def month_length_s(now_us: int) -> int:
    """Seconds in the UTC month holding ``now_us`` (for the RateLimit-Policy window)."""
    year, month = civil_from_days(day_index(now_us))
    return (month_end_us(now_us) - days_from_civil(year, month) * US_PER_DAY) // US_PER_S
