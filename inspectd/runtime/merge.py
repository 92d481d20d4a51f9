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
    regions; regions under ``seg_min_component_px`` are dropped. Regions come class by class,
    in the model's class order.
    """
    # Label only the rectangle holding the defect pixels: defects are usually local, and the
    # labelling and the per-region sums cost per pixel labelled.
    x0, y0, w, h = cv2.boundingRect(labels)
    if w == 0:                      # the usual frame: nothing but background
        return SegComponents.empty()
    labels, conf = labels[y0:y0 + h, x0:x0 + w], conf[y0:y0 + h, x0:x0 + w]
    # Classes that share a seg_min_prob (usually all: the default rule's) are found together.
    by_prob: dict[float, list[int]] = {}
    for s in range(1, len(seg_class_names)):
        by_prob.setdefault(config.rule(seg_class_names[s]).seg_min_prob, []).append(s)
    found: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for prob, classes in by_prob.items():
        lab, cf, ox, oy = labels, conf, x0, y0
        if prob > 0:                # the confident pixels only, and their own rectangle
            lab = labels * (conf >= prob).view(np.uint8)    # (np.where: twice the cost)
            bx, by, bw, bh = cv2.boundingRect(lab)
            if bw == 0:
                continue
            lab, cf, ox, oy = lab[by:by + bh, bx:bx + bw], conf[by:by + bh, bx:bx + bw], x0 + bx, y0 + by
        top = int(lab.max())
        low = int((lab - np.uint8(1)).min()) + 1        # the smallest class present (0 wraps to 255)
        if low == top:
            # One class in the rectangle (the usual frame): its pixels are the non-zero ones,
            # labelled as they are, with no mask made per class.
            if top in classes:
                found[top] = _regions(lab.astype(bool), cf, ox, oy,
                                      config.rule(seg_class_names[top]).seg_min_component_px)
            continue
        for s in classes:
            if not low <= s <= top:
                continue
            mask = lab == s
            mx, my, mw, mh = cv2.boundingRect(mask.view(np.uint8))
            if mw:
                found[s] = _regions(mask[my:my + mh, mx:mx + mw], cf[my:my + mh, mx:mx + mw], ox + mx, oy + my,
                                    config.rule(seg_class_names[s]).seg_min_component_px)
    present = [s for s in sorted(found) if len(found[s][1])]
    if not present:
        return SegComponents.empty()
    names = [n for s in present for n in [seg_class_names[s]] * len(found[s][1])]
    boxes, areas, scores = (np.concatenate([found[s][i] for s in present]) for i in range(3))
    return SegComponents(boxes, areas, scores, names)


def _regions(fg: np.ndarray, conf: np.ndarray, x0: int, y0: int,
             min_px: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (frame pixels), areas and mean ``conf`` of the 8-connected regions of ``fg`` (a
    bool rectangle whose corner is x0, y0) of at least ``min_px`` pixels."""
    # 16-bit labels (half the memory written) wherever they cannot overflow: 8-connected
    # regions are at most one per 2 x 2 block.
    h, w = fg.shape
    ltype = cv2.CV_16U if ((h + 1) // 2) * ((w + 1) // 2) < 65535 else cv2.CV_32S
    n, lab, stats, _ = cv2.connectedComponentsWithStats(fg.view(np.uint8), connectivity=8, ltype=ltype)
    keep = (stats[1:, cv2.CC_STAT_AREA] >= max(1, min_px)).nonzero()[0] + 1     # row 0: background
    # Sums over the region pixels only (a bincount over the whole rectangle costs more), in
    # row-major pixel order and float64, as a mean should be.
    sums = np.bincount(lab[fg], weights=conf[fg], minlength=n)[keep]
    stats = stats[keep]
    boxes = stats[:, :4].astype(np.float32)         # left, top, width, height -> x1, y1, x2, y2
    boxes[:, :2] += (x0, y0)
    boxes[:, 2:] += boxes[:, :2]
    area = stats[:, cv2.CC_STAT_AREA].astype(np.int64)
    return boxes, area, (sums / area).astype(np.float32)


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
    owner = [-1] * c
    det_box_area = box_area(boxes)
    if k and c:
        same = np.array([[d == r for r in comps.names] for d in det_names])
        inter = pairwise_intersection(boxes, comps.boxes)
        smaller = np.minimum(det_box_area[:, None], box_area(comps.boxes)[None, :])
        ios = np.where(same, inter / np.maximum(smaller, 1e-6), 0.0)
        owner = [o if ok else -1 for o, ok in zip(ios.argmax(0).tolist(), (ios.max(0) >= config.match_overlap).tolist())]

    # The few defects of a frame as Python floats (the float32 values exactly): a detection
    # takes the union of its box and its regions' boxes, the higher score, and the regions'
    # pixels as its area; an unmatched detection, its box's area in float32 as before.
    out_boxes = boxes.tolist()
    out_scores = scores.tolist()
    det_area = np.rint(det_box_area).astype(np.int64).tolist()
    matched = [False] * k
    comp_boxes, comp_scores, comp_areas = comps.boxes.tolist(), comps.scores.tolist(), comps.areas.tolist()
    candidates: list[Defect] = []
    for j, o in enumerate(owner):
        if o < 0:
            candidates.append(Defect(comps.names[j], comp_scores[j], _box(comp_boxes[j]), comp_areas[j], "segmentation"))
            continue
        u, r = out_boxes[o], comp_boxes[j]
        u[0], u[1], u[2], u[3] = min(u[0], r[0]), min(u[1], r[1]), max(u[2], r[2]), max(u[3], r[3])
        out_scores[o] = max(out_scores[o], comp_scores[j])
        det_area[o] = det_area[o] + comp_areas[j] if matched[o] else comp_areas[j]
        matched[o] = True
    candidates[:0] = [Defect(det_names[i], out_scores[i], _box(out_boxes[i]), det_area[i],
                             "both" if matched[i] else "detection") for i in range(k)]

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


def _box(b: list[float]) -> tuple[float, float, float, float]:
    return (b[0], b[1], b[2], b[3])


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
