"""Detections plus segmentation -> one list of defects and a verdict for a frame.

The network has two views of a defect. Its detection branch gives scored boxes; its
segmentation branch gives a class per pixel, from which connected components become
candidate defects (area, box, mean probability). A component that overlaps a detection of
the same class is the same defect, seen by ``both`` branches. Per-class rules (config
section ``merge``) then say which evidence counts for that class and what makes the frame
a reject.

Defaults lean towards catching defects, because a missed defect costs a coil while a
false reject costs a look at the strip: every class accepts evidence from *either*
branch, reporting and reject thresholds are low, and any area rejects. Classes the model
cannot segment (in the NEU model: crazing, pitted surface, rolled-in scale) simply never
get segmentation evidence, so ``either`` means detection for them.

The class names are the model's (a model trained on a plant's own data names its own): the
``default`` rule judges every class that ``rules`` does not name.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from inspectd.configtools import ConfigError, doc, fail
from inspectd.domain.verdicts import Defect, Status
from inspectd.model.box_ops import box_area, pairwise_intersection
from inspectd.model.config import CLASS_NAME

Evidence = Literal["detection", "segmentation", "either", "both"]


@dataclass
class ClassRule:
    evidence: Evidence = doc(
        "Which branch's evidence makes a defect of this class: `detection` (boxes; matching "
        "segmentation only adds its area), `segmentation` (connected regions of the class map; "
        "matching boxes only add their score), `either` (both kinds, the safe choice), or `both` "
        "(only defects that both branches see: fewest false alarms, most misses).",
        default="either")
    min_score: float = doc(
        "Defects scoring below this are not reported. The score is the detection's confidence "
        "(objectness x class probability), the region's mean pixel probability, or the higher of "
        "the two when both branches see the defect.", default=0.25)
    reject_score: float = doc(
        "A reported defect scoring at least this (and at least `min_area_px` big) makes the frame "
        "a reject. Must be >= min_score.", default=0.3)
    min_area_px: int = doc(
        "Smallest defect, in frame pixels, that can make the frame a reject (segmented pixels, or "
        "the box's area when no region matches). 0: any size rejects.", default=0)
    seg_min_prob: float = doc(
        "A pixel belongs to this class's regions when this is its most probable class with at "
        "least this probability.", default=0.5)
    seg_min_component_px: int = doc(
        "Segmented regions smaller than this many pixels are speckle, not defects, and are dropped "
        "(before matching).", default=16)

    def validate(self, where: str, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        for name in ("min_score", "reject_score", "seg_min_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                fail(where, p + name, f"expected a probability between 0 and 1, got {v!r}")
        if self.reject_score < self.min_score:
            fail(where, p + "reject_score",
                 f"must be >= min_score ({self.min_score}), got {self.reject_score} (defects below "
                 "min_score are not reported, so they could not reject)")
        for name in ("min_area_px", "seg_min_component_px"):
            if getattr(self, name) < 0:
                fail(where, p + name, f"must be >= 0, got {getattr(self, name)!r}")


@dataclass
class MergeConfig:
    default: ClassRule = doc(
        "The rule for every class that `rules` does not name: any class of any model, whatever "
        "data it was trained on.", default_factory=ClassRule)
    rules: dict[str, ClassRule] = doc(
        "Rules for single classes, keyed by the model's class names (the shipped model's: crazing, "
        "inclusion, patches, pitted_surface, rolled-in_scale, scratches). A class left out follows "
        "`default`; keys left out of a rule take the built-in defaults listed here, not "
        "`default`'s. A rule naming a class the model does not have is an error when the model "
        "is loaded (`inspectd check-config` reports it too).",
        default_factory=dict)
    match_overlap: float = doc(
        "A segmented region and a detection of the same class are one defect when their boxes' "
        "intersection covers at least this fraction of the smaller box.", default=0.3)

    def validate(self, where: str, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        for name in self.rules:
            if not CLASS_NAME.match(name):
                fail(where, f"{p}rules.{name}",
                     "a class name is letters, digits, '_', '-' or '.' (the model's class names)")
        if not 0.0 < self.match_overlap <= 1.0:
            fail(where, p + "match_overlap", f"expected a fraction in (0, 1], got {self.match_overlap!r}")

    def rule(self, name: str) -> ClassRule:
        """The rule for class ``name``: its own, else ``default``."""
        r = self.rules.get(name)
        return r if r is not None else self.default


@dataclass(slots=True)
class SegComponents:
    """Connected regions of the segmentation map, one row per region."""

    boxes: np.ndarray     # [C, 4] float32 x1, y1, x2, y2 (pixel edges: x2 = last column + 1)
    areas: np.ndarray     # [C] int64 pixels
    scores: np.ndarray    # [C] float32 mean probability of the region's class over the region
    names: list[str]      # [C] class names

    @classmethod
    def empty(cls) -> SegComponents:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32), [])


def seg_components(labels: np.ndarray, conf: np.ndarray, seg_class_names: Sequence[str],
                   config: MergeConfig) -> SegComponents:
    """Connected regions (8-connected) of every non-background class in a label map.

    ``labels`` [H, W] uint8 is the arg-max class per pixel, ``conf`` [H, W] float32 its
    probability. Per class, pixels with probability >= the rule's ``seg_min_prob`` form
    regions; regions under ``seg_min_component_px`` are dropped.
    """
    boxes, areas, scores, names = [], [], [], []
    if not labels.any():            # the usual frame: nothing but background
        return SegComponents.empty()
    confident: dict[float, np.ndarray] = {}     # one threshold pass per distinct seg_min_prob
    for s in range(1, len(seg_class_names)):
        name = seg_class_names[s]
        rule = config.rule(name)
        mask = labels == s
        if rule.seg_min_prob > 0:
            hi = confident.get(rule.seg_min_prob)
            if hi is None:
                hi = confident[rule.seg_min_prob] = conf >= rule.seg_min_prob
            mask &= hi
        # Label only the rectangle holding this class's pixels: defects are usually local, and
        # the labelling and the per-region sums cost per pixel labelled. (OpenCV's bounding
        # rectangle of the non-zero pixels: one pass, where numpy's any() per axis took two.)
        x0, y0, w, h = cv2.boundingRect(mask.view(np.uint8))
        if w == 0:
            continue
        sub = mask[y0:y0 + h, x0:x0 + w]
        n, lab, stats, _ = cv2.connectedComponentsWithStats(sub.view(np.uint8), connectivity=8,
                                                            ltype=cv2.CV_32S)
        if n <= 1:
            continue
        stats = stats[1:]                       # row 0 is the background
        area = stats[:, cv2.CC_STAT_AREA].astype(np.int64)
        keep = area >= max(1, rule.seg_min_component_px)
        if not keep.any():
            continue
        # Sums over the foreground pixels only, in row-major order (float64, as a mean should be).
        sums = np.bincount(lab[sub], weights=conf[y0:y0 + h, x0:x0 + w][sub], minlength=n)[1:]
        left, top = stats[:, cv2.CC_STAT_LEFT] + x0, stats[:, cv2.CC_STAT_TOP] + y0
        bx = np.stack([left, top, left + stats[:, cv2.CC_STAT_WIDTH], top + stats[:, cv2.CC_STAT_HEIGHT]], 1)
        boxes.append(bx[keep].astype(np.float32))
        areas.append(area[keep])
        scores.append((sums[keep] / area[keep]).astype(np.float32))
        names.extend([name] * int(keep.sum()))
    if not names:
        return SegComponents.empty()
    return SegComponents(np.concatenate(boxes), np.concatenate(areas), np.concatenate(scores), names)


def _as_label_map(seg: np.ndarray | tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(seg, tuple):
        labels, conf = seg
        return labels, conf
    if seg.ndim != 3:
        raise ValueError(f"seg: expected probabilities [S, H, W] or (labels, conf), got shape {seg.shape}")
    return seg.argmax(0).astype(np.uint8), seg.max(0).astype(np.float32)


def merge_frame(dets: tuple[np.ndarray, np.ndarray, np.ndarray],
                seg: np.ndarray | tuple[np.ndarray, np.ndarray] | SegComponents | None,
                config: MergeConfig, class_names: Sequence[str],
                seg_class_names: Sequence[str]) -> tuple[list[Defect], Status]:
    """One frame's defects and status from its detections and segmentation.

    ``dets``: (boxes [K, 4] frame pixels, scores [K], classes [K] indices into
    ``class_names``), already NMS'd and fused across tiles. ``seg``: per-pixel
    probabilities [S, H, W], or a (labels [H, W] uint8, conf [H, W] float32) pair as the
    stitcher makes, or precomputed ``SegComponents``, or None (no segmentation).

    Each region is matched to the same-class detection it overlaps most (intersection over
    the smaller box >= ``match_overlap``); a detection with regions becomes one ``both``
    defect (box = union, area = the regions' pixels, score = the higher branch score).
    The class rules then keep or drop each defect by its branch and score, and mark those
    that reject. Defects come back best score first.
    """
    boxes, scores, classes = dets
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    classes = np.asarray(classes, np.int64).reshape(-1)
    if seg is None:
        comps = SegComponents.empty()
    elif isinstance(seg, SegComponents):
        comps = seg
    else:
        labels, conf = _as_label_map(seg)
        comps = seg_components(labels, conf, seg_class_names, config)

    det_names = [class_names[c] for c in classes.tolist()]
    k, c = len(boxes), len(comps.names)

    # Region -> best-overlapping detection of the same class (vectorised over all pairs).
    owner = np.full(c, -1, np.int64)
    if k and c:
        same = np.array(det_names, dtype=object)[:, None] == np.array(comps.names, dtype=object)[None, :]
        inter = pairwise_intersection(boxes, comps.boxes)
        smaller = np.minimum(box_area(boxes)[:, None], box_area(comps.boxes)[None, :])
        ios = np.where(same, inter / np.maximum(smaller, 1e-6), 0.0)
        best = ios.argmax(0)
        ok = ios[best, np.arange(c)] >= config.match_overlap
        owner[ok] = best[ok]

    out_boxes = boxes.copy()
    out_scores = scores.copy()
    mask_area = np.zeros(k, np.int64)
    matched = np.zeros(k, bool)
    m = owner >= 0
    if m.any():
        o = owner[m]
        np.minimum.at(out_boxes[:, 0], o, comps.boxes[m, 0])
        np.minimum.at(out_boxes[:, 1], o, comps.boxes[m, 1])
        np.maximum.at(out_boxes[:, 2], o, comps.boxes[m, 2])
        np.maximum.at(out_boxes[:, 3], o, comps.boxes[m, 3])
        np.maximum.at(out_scores, o, comps.scores[m])
        np.add.at(mask_area, o, comps.areas[m])
        matched[o] = True
    det_area = np.where(matched, mask_area, np.rint(box_area(boxes)).astype(np.int64))

    candidates: list[Defect] = []
    for i in range(k):          # a handful of defects per frame: plain Python is clearer here
        candidates.append(Defect(det_names[i], float(out_scores[i]), _box(out_boxes[i]), int(det_area[i]),
                                 "both" if matched[i] else "detection"))
    for j in np.flatnonzero(~m).tolist():
        candidates.append(Defect(comps.names[j], float(comps.scores[j]), _box(comps.boxes[j]),
                                 int(comps.areas[j]), "segmentation"))

    defects: list[Defect] = []
    for d in candidates:
        rule = config.rule(d.cls)
        if not _counts(rule.evidence, d.branch) or d.score < rule.min_score:
            continue
        d.rejects = d.score >= rule.reject_score and d.area_px >= rule.min_area_px
        defects.append(d)
    defects.sort(key=lambda d: -d.score)
    status: Status = "reject" if any(d.rejects for d in defects) else "ok"
    return defects, status


def _counts(evidence: str, branch: str) -> bool:
    if evidence == "either":
        return True
    if evidence == "both":
        return branch == "both"
    return branch == evidence or branch == "both"


def _box(b: np.ndarray) -> tuple[float, float, float, float]:
    return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))


def check_rules_against_model(config: MergeConfig, class_names: Sequence[str],
                              seg_class_names: Sequence[str], where: str = "merge") -> None:
    """Refuse rules that can never be met by this model: a rule for a class the model does not
    have (a typo, or a config meant for another model), and segmentation evidence for a class
    the model does not segment, which would silently never report that class."""
    known = list(dict.fromkeys([*class_names, *seg_class_names[1:]]))
    for name in config.rules:
        if name not in known:
            raise ConfigError(f"{where}: rules.{name}: the model has no class {name!r} "
                              f"(its classes: {', '.join(known)})")
    for name in known:
        rule = config.rule(name)
        key = f"rules.{name}" if name in config.rules else "default"
        for_name = "" if name in config.rules else f" (for class {name!r}, which rules does not name)"
        if rule.evidence in ("segmentation", "both") and name not in seg_class_names:
            raise ConfigError(
                f"{where}: {key}.evidence: {rule.evidence!r} needs segmentation, but the model "
                f"segments only {', '.join(seg_class_names[1:]) or 'nothing'}{for_name}; use 'detection' or 'either'")
        if rule.evidence in ("detection", "both") and name not in class_names:
            raise ConfigError(
                f"{where}: {key}.evidence: {rule.evidence!r} needs detection, but the model "
                f"does not detect {name!r}")
