"""Hive partition values from an object's path: recording date and camera/source."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from exvad_ray import storage

DEFAULT_DATE_PATTERN = r"(?P<y>(?:19|20)\d{2})-?(?P<m>[01]\d)-?(?P<d>[0-3]\d)"
# A time of day right after the path's date (``2026-11-24T22-30-15``, ``20261124_223015``): read
# as UTC. Kept apart from the date pattern so that the run id (which hashes the pattern) is unchanged.
TIME_AFTER_DATE = re.compile(r"[T _.-]?(?P<H>[01]\d|2[0-3])[:.-]?(?P<M>[0-5]\d)(?:[:.-]?(?P<S>[0-5]\d))?(?!\d)")


@dataclasses.dataclass(frozen=True)
class PartitionRules:
    """`date_pattern`: regex with groups y, m, d (or one group `date`) searched in the path relative
    to the archive; `camera_pattern`: regex with group `camera`, default the first folder under the
    archive. Videos whose path has no date get `fallback_date` (the run's processing date)."""

    archive: str
    fallback_date: str
    date_pattern: str = DEFAULT_DATE_PATTERN
    camera_pattern: str | None = None

    def relative(self, uri: str) -> str:
        base = storage.normalize(self.archive).rstrip("/")
        norm = storage.normalize(uri)
        return norm[len(base):].lstrip("/") if norm.startswith(base) else norm.rsplit("/", 1)[-1]

    def date(self, uri: str) -> str:
        found = self.path_time(uri)
        return found[0].date().isoformat() if found else self.fallback_date

    def path_time(self, uri: str) -> tuple[dt.datetime, bool] | None:
        """(UTC datetime, has time of day) from the path's first valid date, or None."""
        rel = self.relative(uri)
        for m in re.finditer(self.date_pattern, rel):
            g = m.groupdict()
            try:
                day = (dt.date.fromisoformat(g["date"]) if g.get("date")
                       else dt.date(int(g["y"]), int(g["m"]), int(g["d"])))
            except (ValueError, KeyError, TypeError):
                continue
            t = TIME_AFTER_DATE.match(rel, m.end())
            clock = dt.time(int(t["H"]), int(t["M"]), int(t["S"] or 0)) if t else dt.time()
            return dt.datetime.combine(day, clock, tzinfo=dt.timezone.utc), bool(t)
        return None

    def camera(self, uri: str) -> str:
        rel = self.relative(uri)
        if self.camera_pattern:
            m = re.search(self.camera_pattern, rel)
            value = m.group("camera") if m else None
        else:
            parts = rel.split("/")
            value = parts[0] if len(parts) > 1 else None
        return sanitize(value or "root")  # no leading "_": readers skip such folders


def recorded_at(path_time: tuple[dt.datetime, bool] | None, creation_time: str | None) -> tuple[dt.datetime | None, str]:
    """When the video was recorded, and from what: the path's date and time ("path"), else the
    container's creation_time ("container"), else the path's date alone at 00:00 UTC ("path-date"),
    else (None, ""). Never the processing time."""
    if path_time and path_time[1]:
        return path_time[0], "path"
    created = parse_creation_time(creation_time)
    if created is not None:
        return created, "container"
    if path_time:
        return path_time[0], "path-date"
    return None, ""


def parse_creation_time(value: str | None) -> dt.datetime | None:
    """A container's ``creation_time`` tag (ISO 8601, often with a trailing Z) as UTC; None when
    absent, unparsable, or the zero/epoch placeholder some muxers write."""
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    t = t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)
    return t if t.year >= 1980 else None


def sanitize(value: str) -> str:
    """A value safe as a hive partition directory name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("._") or "_"
