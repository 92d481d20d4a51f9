"""Markdown tables of evaluation results, as ``inspectd evaluate`` prints them.

Values are percentages with two decimals, like the NEU papers; ``-`` marks an undefined value
(a class without ground truth, a precision with nothing above the threshold).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from inspectd.metrics.detection import DetectionMetrics
from inspectd.metrics.segmentation import ConfusionMatrix


def _pct(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A GitHub-style table; ``align`` is one of ``l``/``r`` per column (default: first left)."""
    align = align or "l" + "r" * (len(header) - 1)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    fmt = lambda cells: "| " + " | ".join(  # noqa: E731
        str(c).ljust(w) if a == "l" else str(c).rjust(w) for c, w, a in zip(cells, widths, align)
    ) + " |"
    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1)) for w, a in zip(widths, align)) + "|"
    return "\n".join([fmt(header), rule, *(fmt(r) for r in rows)])


def detection_table(m: DetectionMetrics) -> str:
    thr = f"{m.score_threshold:g}"
    header = [
        "class", "boxes", "AP@0.5 all-point", "AP@0.5 101-point", "AP@0.5:0.95 101-point",
        f"P@{thr}", f"R@{thr}", "TP", "FP",
    ]
    rows = [
        [name, str(int(n)), _pct(a), _pct(a101), _pct(a95), _pct(p), _pct(r), str(int(tp)), str(int(fp))]
        for name, n, a, a101, a95, p, r, tp, fp in zip(
            m.class_names, m.num_gt, m.ap50, m.ap50_101, m.ap50_95, m.precision, m.recall, m.tp, m.fp
        )
    ]
    rows.append([
        "**mean**", str(int(m.num_gt.sum())), _pct(m.map50), _pct(m.map50_101), _pct(m.map50_95),
        _pct(m.precision_all), _pct(m.recall_all), str(int(m.tp.sum())), str(int(m.fp.sum())),
    ])
    notes = (
        f"Detection, {m.num_images} images, values in %. AP means are over classes with boxes; "
        f"P/R at score >= {thr} and IoU 0.5, pooled over classes in the mean row."
    )
    return notes + "\n\n" + markdown_table(header, rows)


def segmentation_table(cm: ConfusionMatrix) -> str:
    iou = cm.iou()
    pixels = cm.matrix.sum(axis=1)
    rows = [[name, _pct(v), f"{int(n):,}"] for name, v, n in zip(cm.class_names, iou, pixels)]
    rows.append(["**mean**", _pct(cm.miou()), f"{int(pixels.sum()):,}"])
    notes = (
        "Segmentation, one confusion matrix over the set (ignored pixels excluded), values in %; "
        f"pixel accuracy {_pct(cm.pixel_accuracy())}."
    )
    return notes + "\n\n" + markdown_table(["class", "IoU", "target pixels"], rows)


def speed_table(speed: Mapping[str, float]) -> str:
    """``speed``: label -> frames per second."""
    rows = [[label, f"{fps:.1f}"] for label, fps in speed.items()]
    return markdown_table(["model speed", "frames/s"], rows)


def render_markdown(
    detection: DetectionMetrics | None = None,
    segmentation: ConfusionMatrix | None = None,
    speed: Mapping[str, float] | None = None,
    title: str | None = None,
) -> str:
    """The whole report: whichever parts are given, separated by blank lines."""
    parts = [f"## {title}"] if title else []
    if detection is not None:
        parts.append(detection_table(detection))
    if segmentation is not None:
        parts.append(segmentation_table(segmentation))
    if speed:
        parts.append(speed_table(speed))
    return "\n\n".join(parts) + "\n"


__all__ = ["detection_table", "markdown_table", "render_markdown", "segmentation_table", "speed_table"]
