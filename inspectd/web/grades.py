"""Coil grades by rules: the first grade whose limits a coil meets is its grade.

A bad rules file is a usage error (2): the command line names it.

A rules file (``inspectd web --grades FILE``) is YAML::

    grades:
      - name: A
        max_defects: {total: 5, scratches: 0}   # counts on the coil; "total" is every class
        max_per_100m: {total: 2}                # counts per 100 m of coil
        max_reject_frames: 0
        max_uninspected_m: 0.5
      - name: B
        max_per_100m: {total: 20}
        max_uninspected_m: 5
      - name: C                                  # no limits: every other coil

Keys left out are not checked. The last grade should have no limits, or a coil may get none
(shown as "-").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from inspectd.errors import InspectdError


@dataclass(frozen=True)
class Grade:
    name: str
    max_defects: dict[str, int] = field(default_factory=dict)
    max_per_100m: dict[str, float] = field(default_factory=dict)
    max_reject_frames: int | None = None
    max_uninspected_m: float | None = None

    def reasons_against(self, s: dict[str, Any]) -> list[str]:
        """What keeps coil summary ``s`` out of this grade (empty: it is in)."""
        out = []
        counts = dict(s.get("counts") or {})
        counts["total"] = s.get("defects", sum(counts.values()))
        for cls, limit in self.max_defects.items():
            if counts.get(cls, 0) > limit:
                out.append(f"{counts.get(cls, 0)} {cls} > {limit}")
        length = float(s.get("length_m") or 0.0)
        for cls, rate_limit in self.max_per_100m.items():
            n = counts.get(cls, 0)
            per = n * 100.0 / length if length > 0 else (float("inf") if n else 0.0)
            if per > rate_limit:
                out.append(f"{per:.1f} {cls}/100 m > {rate_limit:g}")
        if self.max_reject_frames is not None and s.get("reject_frames", 0) > self.max_reject_frames:
            out.append(f"{s.get('reject_frames')} reject frames > {self.max_reject_frames}")
        if self.max_uninspected_m is not None and (s.get("uninspected_m") or 0.0) > self.max_uninspected_m:
            out.append(f"{s.get('uninspected_m'):.2f} m uninspected > {self.max_uninspected_m:g} m")
        return out


DEFAULT_GRADES: tuple[Grade, ...] = (
    Grade("A", max_per_100m={"total": 2.0}, max_reject_frames=0, max_uninspected_m=0.0),
    Grade("B", max_per_100m={"total": 10.0}, max_uninspected_m=1.0),
    Grade("C", max_per_100m={"total": 50.0}),
    Grade("D"),
)


def grade(s: dict[str, Any], rules: tuple[Grade, ...] = DEFAULT_GRADES) -> tuple[str, list[str]]:
    """(grade name, why not the better ones) for a coil summary from ``inspectd.store.read``."""
    why: list[str] = []
    for g in rules:
        against = g.reasons_against(s)
        if not against:
            return g.name, why
        why.append(f"not {g.name}: " + ", ".join(against))
    return "-", why


def load_grades(path: str | Path) -> tuple[Grade, ...]:
    where = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InspectdError(f"{where}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InspectdError(f"{where}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("grades"), list) or not data["grades"]:
        raise InspectdError(f"{where}: grades: expected a list of grades")
    out = []
    for i, item in enumerate(data["grades"]):
        key = f"grades[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InspectdError(f"{where}: {key}: expected a mapping with a name")
        unknown = set(item) - {"name", "max_defects", "max_per_100m", "max_reject_frames", "max_uninspected_m"}
        if unknown:
            raise InspectdError(f"{where}: {key}.{sorted(unknown)[0]}: unknown key")
        for k in ("max_defects", "max_per_100m"):
            v = item.get(k, {})
            if not isinstance(v, dict) or not all(isinstance(n, (int, float)) and not isinstance(n, bool) and n >= 0
                                                  for n in v.values()):
                raise InspectdError(f"{where}: {key}.{k}: expected class: number pairs (numbers >= 0)")
        for k in ("max_reject_frames", "max_uninspected_m"):
            v = item.get(k)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
                raise InspectdError(f"{where}: {key}.{k}: expected a number >= 0")
        out.append(Grade(item["name"], {str(k): int(v) for k, v in item.get("max_defects", {}).items()},
                         {str(k): float(v) for k, v in item.get("max_per_100m", {}).items()},
                         item.get("max_reject_frames"), item.get("max_uninspected_m")))
    return tuple(out)
