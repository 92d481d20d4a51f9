"""Merging detections and segmentation into defects and a verdict by per-class rules."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from inspectd.configtools import ConfigError, from_mapping
from inspectd.errors import InspectdError
from inspectd.model.config import NEU_CLASSES
from inspectd.runtime.merge import (
    ClassRule,
    MergeConfig,
    check_rules_against_model,
    merge_frame,
    seg_components,
)

DET = list(NEU_CLASSES)             # crazing, inclusion, patches, pitted_surface, rolled-in_scale, scratches
SEG = ["background", "inclusion", "patches", "scratches"]
H, W = 120, 200


def cls(name: str) -> int:
    return DET.index(name)


def dets(*items):
    """items: (name, score, (x1, y1, x2, y2))"""
    if not items:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return (np.array([b for _, _, b in items], np.float32), np.array([s for _, s, _ in items], np.float32),
            np.array([cls(n) for n, _, _ in items], np.int64))


def seg_map(*regions):
    """regions: (seg class name, prob, (x1, y1, x2, y2) pixel rectangle) -> (labels, conf)."""
    labels = np.zeros((H, W), np.uint8)
    conf = np.full((H, W), 0.97, np.float32)
    for name, p, (x1, y1, x2, y2) in regions:
        labels[y1:y2, x1:x2] = SEG.index(name)
        conf[y1:y2, x1:x2] = p
    return labels, conf


def cfg(**rules) -> MergeConfig:
    return from_mapping(MergeConfig, {"rules": rules}, "test.yaml", prefix="merge")


# --- config ---------------------------------------------------------------------------------------
def test_default_rule_covers_any_class_and_leans_to_catching():
    c = MergeConfig()
    assert c.rules == {}
    for name in [*NEU_CLASSES, "blob", "any-class.2"]:      # a model trained on other data too
        rule = c.rule(name)
        assert rule is c.default and rule.evidence == "either" and rule.min_area_px == 0
        assert rule.reject_score <= 0.5


def test_partial_section_keeps_defaults_for_the_rest():
    c = from_mapping(MergeConfig, yaml.safe_load(
        "default: {min_score: 0.4, reject_score: 0.5}\nrules: {scratches: {reject_score: 0.6}}"), "f.yaml", "merge")
    assert c.rule("scratches").reject_score == 0.6
    assert c.rule("scratches").min_score == ClassRule().min_score       # built-in defaults, not default's
    assert c.rule("crazing") == c.rule("blob") == ClassRule(min_score=0.4, reject_score=0.5)


def test_rule_names_are_checked_against_the_model_and_the_topic_rules():
    with pytest.raises(ConfigError, match=r"f.yaml: merge.rules.a/b: a class name is letters"):
        from_mapping(MergeConfig, {"rules": {"a/b": {}}}, "f.yaml", "merge")
    c = from_mapping(MergeConfig, {"rules": {"scrathces": {}}}, "f.yaml", "merge")   # the model decides
    with pytest.raises(ConfigError, match=r"merge: rules.scrathces: the model has no class 'scrathces' "
                                          r"\(its classes: crazing, inclusion"):
        check_rules_against_model(c, DET, SEG)
    check_rules_against_model(cfg(blob={}), ["blob", "streak"], ["background", "blob"])


@pytest.mark.parametrize("rule,msg", [
    ({"evidence": "eyes"}, "evidence"),
    ({"min_score": 1.5}, "min_score"),
    ({"min_score": 0.5, "reject_score": 0.4}, "reject_score"),
    ({"min_area_px": -1}, "min_area_px"),
])
def test_bad_rule_values_are_config_errors(rule, msg):
    with pytest.raises(ConfigError, match=rf"merge.rules.inclusion.{msg}"):
        from_mapping(MergeConfig, {"rules": {"inclusion": rule}}, "f.yaml", "merge")


def test_rules_that_the_model_cannot_meet_are_refused():
    with pytest.raises(InspectdError, match=r"rules.crazing.evidence: 'segmentation' needs segmentation"):
        check_rules_against_model(cfg(crazing={"evidence": "segmentation"}), DET, SEG)
    check_rules_against_model(cfg(crazing={"evidence": "detection"}, patches={"evidence": "both"}), DET, SEG)
    # The default rule judges the classes rules does not name: it must be met by them too.
    seg_default = from_mapping(MergeConfig, {"default": {"evidence": "segmentation"}}, "f.yaml", "merge")
    with pytest.raises(ConfigError, match=r"default.evidence: 'segmentation' needs segmentation.*'crazing'"):
        check_rules_against_model(seg_default, DET, SEG)
    seg_default.rules = {c: ClassRule() for c in ("crazing", "pitted_surface", "rolled-in_scale")}
    check_rules_against_model(seg_default, DET, SEG)


# --- segmentation regions -----------------------------------------------------------------------
def test_seg_components_area_box_score_and_speckle():
    labels, conf = seg_map(("patches", 0.8, (10, 10, 40, 30)), ("patches", 0.6, (100, 50, 110, 90)),
                           ("scratches", 0.9, (150, 5, 153, 9)),          # 12 px: speckle
                           ("inclusion", 0.4, (60, 60, 80, 80)))          # below seg_min_prob 0.5
    comps = seg_components(labels, conf, SEG, MergeConfig())
    assert comps.names == ["patches", "patches"]
    np.testing.assert_array_equal(comps.areas, [600, 400])
    np.testing.assert_allclose(comps.boxes, [[10, 10, 40, 30], [100, 50, 110, 90]])
    np.testing.assert_allclose(comps.scores, [0.8, 0.6], rtol=1e-6)


def test_seg_components_match_a_pixel_by_pixel_reference():
    """Random blobs of every class, touching each other: each region's class, pixels, box and
    mean probability, against cv2's plain labelling and per-label sums written out."""
    import cv2
    rng = np.random.default_rng(7)
    configs = [MergeConfig(rules={"scratches": ClassRule(seg_min_prob=0.7, seg_min_component_px=3)}),
               MergeConfig(default=ClassRule(seg_min_prob=0.0, seg_min_component_px=1))]
    for i in range(40):
        cfg = configs[i % 2]
        noise = cv2.GaussianBlur(rng.uniform(0, 1, (120, 160)).astype(np.float32), (0, 0), 3)
        labels = np.digitize(noise, np.quantile(noise, [0.55, 0.7, 0.85])).astype(np.uint8)
        if i % 4 >= 2:              # one class only (the usual frame), in a corner of the frame
            labels = (labels[:60, :70] > 1) * np.uint8(1 + i % 3)
            labels = np.pad(labels, ((60, 0), (90, 0)))
        conf = rng.uniform(0.3, 1.0, labels.shape).astype(np.float32)
        got = seg_components(labels, conf, SEG, cfg)
        want = []
        for s, name in enumerate(SEG[1:], 1):
            rule = cfg.rule(name)
            mask = ((labels == s) & (conf >= rule.seg_min_prob)).astype(np.uint8)
            n, lab = cv2.connectedComponents(mask, connectivity=8)
            for k in range(1, n):
                ys, xs = np.nonzero(lab == k)
                if len(ys) >= max(1, rule.seg_min_component_px):
                    want.append((name, len(ys), (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1),
                                 conf[ys, xs].astype(np.float64).mean()))
        assert len(want) > 5
        key = lambda r: (r[0], r[2])   # noqa: E731
        have = sorted(zip(got.names, got.areas.tolist(), [tuple(b) for b in got.boxes.tolist()],
                          got.scores.tolist()), key=key)
        want.sort(key=key)
        assert [(n, a, b) for n, a, b, _ in have] == [(n, a, tuple(float(v) for v in b)) for n, a, b, _ in want]
        np.testing.assert_allclose([h[3] for h in have], [w[3] for w in want], rtol=1e-6)


# --- merging ------------------------------------------------------------------------------------
def test_detection_and_region_of_one_defect_become_one_defect_seen_by_both():
    d = dets(("patches", 0.5, (12, 8, 45, 31)))
    s = seg_map(("patches", 0.8, (10, 10, 40, 30)))
    defects, status = merge_frame(d, s, MergeConfig(), DET, SEG)
    assert len(defects) == 1
    x = defects[0]
    assert (x.cls, x.branch, x.area_px) == ("patches", "both", 600)
    assert x.score == pytest.approx(0.8)                   # the higher branch score
    assert x.box == (10.0, 8.0, 45.0, 31.0)                # union of box and region
    assert status == "reject" and x.rejects


def test_region_of_another_class_is_not_matched():
    d = dets(("inclusion", 0.5, (12, 8, 45, 31)))
    s = seg_map(("patches", 0.8, (10, 10, 40, 30)))
    defects, _ = merge_frame(d, s, MergeConfig(), DET, SEG)
    assert sorted((x.cls, x.branch) for x in defects) == [("inclusion", "detection"), ("patches", "segmentation")]
    det_only = next(x for x in defects if x.branch == "detection")
    assert det_only.area_px == 33 * 23                      # no mask: the box's area


def test_seg_probabilities_are_accepted_directly():
    labels, conf = seg_map(("scratches", 0.9, (50, 10, 60, 100)))
    probs = np.zeros((len(SEG), H, W), np.float32)
    probs[labels, np.arange(H)[:, None], np.arange(W)[None, :]] = conf
    probs[0][labels != 0] = 1 - conf[labels != 0]
    defects, _ = merge_frame(dets(), probs, MergeConfig(), DET, SEG)
    assert [(x.cls, x.branch, x.area_px) for x in defects] == [("scratches", "segmentation", 900)]


@pytest.mark.parametrize("evidence,expected", [
    ("either", {"both", "detection", "segmentation"}),
    ("detection", {"both", "detection"}),
    ("segmentation", {"both", "segmentation"}),
    ("both", {"both"}),
])
def test_evidence_kinds(evidence, expected):
    d = dets(("scratches", 0.6, (10, 10, 20, 100)),       # matched by the first region
             ("scratches", 0.6, (150, 10, 160, 100)))      # no region
    s = seg_map(("scratches", 0.7, (11, 12, 19, 98)),
                ("scratches", 0.7, (80, 10, 90, 100)))     # no box
    defects, _ = merge_frame(d, s, cfg(scratches={"evidence": evidence}), DET, SEG)
    assert {x.branch for x in defects} == expected
    assert len(defects) == len(expected)


def test_detection_only_classes_are_reported_under_default_rules():
    d = dets(("crazing", 0.4, (0, 0, 200, 120)), ("rolled-in_scale", 0.35, (20, 20, 60, 60)))
    defects, status = merge_frame(d, seg_map(), MergeConfig(), DET, SEG)
    assert {x.cls for x in defects} == {"crazing", "rolled-in_scale"}
    assert all(x.branch == "detection" for x in defects) and status == "reject"


def test_thresholds_min_score_reject_score_and_min_area():
    c = cfg(inclusion={"min_score": 0.2, "reject_score": 0.5, "min_area_px": 100})
    # below min_score: not reported
    defects, status = merge_frame(dets(("inclusion", 0.15, (10, 10, 40, 40))), None, c, DET, SEG)
    assert defects == [] and status == "ok"
    # reported, but below reject_score
    defects, status = merge_frame(dets(("inclusion", 0.45, (10, 10, 40, 40))), None, c, DET, SEG)
    assert len(defects) == 1 and not defects[0].rejects and status == "ok"
    # at reject_score, big enough
    defects, status = merge_frame(dets(("inclusion", 0.5, (10, 10, 40, 40))), None, c, DET, SEG)
    assert defects[0].rejects and status == "reject"
    # scores high enough but too small (9 x 9 = 81 px < 100)
    defects, status = merge_frame(dets(("inclusion", 0.9, (10, 10, 19, 19))), None, c, DET, SEG)
    assert len(defects) == 1 and not defects[0].rejects and status == "ok"


def test_mask_area_not_box_area_decides_min_area():
    # A thin diagonal scratch: a big box, few pixels.
    labels, conf = seg_map()
    for i in range(100):
        labels[10 + i, 20 + i] = SEG.index("scratches")
    c = cfg(scratches={"min_area_px": 150, "seg_min_component_px": 10})
    d = dets(("scratches", 0.9, (20, 10, 120, 110)))
    defects, status = merge_frame(d, (labels, conf), c, DET, SEG)
    assert len(defects) == 1 and defects[0].branch == "both" and defects[0].area_px == 100
    assert status == "ok"


def test_one_detection_gathers_several_regions_and_each_region_its_best_detection():
    d = dets(("scratches", 0.6, (10, 10, 30, 110)), ("scratches", 0.6, (100, 10, 120, 110)))
    s = seg_map(("scratches", 0.7, (15, 10, 25, 50)), ("scratches", 0.7, (15, 60, 25, 100)),  # two pieces
                ("scratches", 0.7, (105, 20, 115, 100)))
    defects, _ = merge_frame(d, s, MergeConfig(), DET, SEG)
    assert len(defects) == 2 and all(x.branch == "both" for x in defects)
    assert sorted(x.area_px for x in defects) == [800, 800]


def test_defects_best_first_and_status_ok_when_nothing_rejects():
    d = dets(("patches", 0.26, (0, 0, 10, 10)), ("inclusion", 0.28, (50, 50, 60, 60)))
    defects, status = merge_frame(d, None, MergeConfig(), DET, SEG)
    assert [x.score for x in defects] == pytest.approx([0.28, 0.26])
    assert status == "ok"


def test_more_regions_than_16_bit_labels_hold():
    # 90,000 single-pixel regions (one per 2 x 2 block): the labelling must use 32-bit labels.
    labels = np.zeros((600, 600), np.uint8)
    labels[::2, ::2] = SEG.index("patches")
    conf = np.full(labels.shape, 0.9, np.float32)
    comps = seg_components(labels, conf, SEG, MergeConfig(default=ClassRule(seg_min_component_px=1)))
    assert len(comps.names) == 90_000 and set(comps.names) == {"patches"}
    assert comps.areas.max() == 1 and comps.boxes[-1].tolist() == [598, 598, 599, 599]
