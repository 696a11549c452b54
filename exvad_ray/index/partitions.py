"""Hive partition values from an object's path: recording date and camera/source."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from exvad_ray import storage

DEFAULT_DATE_PATTERN = r"(?P<y>(?:19|20)\d{2})-?(?P<m>[01]\d)-?(?P<d>[0-3]\d)"


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
        rel = self.relative(uri)
        for m in re.finditer(self.date_pattern, rel):
            g = m.groupdict()
            try:
                if g.get("date"):
                    return dt.date.fromisoformat(g["date"]).isoformat()
                return dt.date(int(g["y"]), int(g["m"]), int(g["d"])).isoformat()
            except (ValueError, KeyError, TypeError):
                continue
        return self.fallback_date

    def camera(self, uri: str) -> str:
        rel = self.relative(uri)
        if self.camera_pattern:
            m = re.search(self.camera_pattern, rel)
            value = m.group("camera") if m else None
        else:
            parts = rel.split("/")
            value = parts[0] if len(parts) > 1 else None
        return sanitize(value or "root")  # no leading "_": readers skip such folders


def sanitize(value: str) -> str:
    """A value safe as a hive partition directory name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("._") or "_"
