"""YOLOv5 v6 checkpoints (``yolov5n.pt`` ...) as a starting point for the multitask network.

inspectd's encoder, PAN and detection head are YOLOv5 v6's layers 0-24 under other names, so
every YOLOv5 tensor has one place here:

- layers 0-9 (backbone) -> ``encoder.backbone``; the 6x6 RGB stem becomes the 1-channel (Mono8)
  stem by summing its kernel over the input channels (a grey pixel is R = G = B);
- layers 10-17 (top-down head) -> ``encoder.fpn``; layers 18-23 (bottom-up) -> ``pan``;
- layer 24 (Detect) -> ``det_head.m``: per anchor, the box (x, y, w, h) and objectness rows are
  kept; the COCO class rows are dropped and the dataset's class rows keep the fresh head's init
  (YOLOv5's class-prior bias). The anchors come from the inspectd config.

The file is read with ``safe_pickle`` (nothing it names is imported or run).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from inspectd.errors import InspectdError
from inspectd.model.config import ModelConfig
from inspectd.model.safe_pickle import StandIn, load_torch_zip

# YOLOv5 v6 module types of model.model[0..24] (yolov5n/s/m/l/x.yaml).
V6_LAYERS = ("Conv", "Conv", "C3", "Conv", "C3", "Conv", "C3", "Conv", "C3", "SPPF",
             "Conv", "Upsample", "Concat", "C3", "Conv", "Upsample", "Concat", "C3",
             "Conv", "Concat", "C3", "Conv", "Concat", "C3", "Detect")
# YOLOv5 layer -> inspectd module (layers without weights: Upsample, Concat).
LAYER_TO_MODULE = {
    0: "encoder.backbone.stem", 1: "encoder.backbone.stage2.0", 2: "encoder.backbone.stage2.1",
    3: "encoder.backbone.stage3.0", 4: "encoder.backbone.stage3.1", 5: "encoder.backbone.stage4.0",
    6: "encoder.backbone.stage4.1", 7: "encoder.backbone.stage5.0", 8: "encoder.backbone.stage5.1",
    9: "encoder.backbone.stage5.2",
    10: "encoder.fpn.lateral5", 13: "encoder.fpn.c3_p4", 14: "encoder.fpn.lateral4", 17: "encoder.fpn.c3_p3",
    18: "pan.down3", 20: "pan.c3_n4", 21: "pan.down4", 23: "pan.c3_n5",
    24: "det_head",
}
DETECT_LAYER = 24
# (depth, width) -> the released model of that size, to name a mismatch.
PRESET_NAMES = {(0.33, 0.25): "yolov5n", (0.33, 0.5): "yolov5s", (0.67, 0.75): "yolov5m",
                (1.0, 1.0): "yolov5l", (1.33, 1.25): "yolov5x"}

Status = Literal["loaded", "adapted", "new"]


@dataclass
class TensorInit:
    """Where one tensor of the network got its starting value."""

    name: str                 # inspectd state-dict key
    status: Status
    source: str | None = None  # YOLOv5 state-dict key it came from
    note: str = ""
    numel: int = 0


@dataclass
class YoloV5Checkpoint:
    path: Path
    state: dict[str, torch.Tensor]     # 'model.0.conv.weight' -> tensor as stored (often float16)
    yaml: dict[str, Any]               # the model's yaml: depth/width_multiple, nc, anchors, ...
    layer_types: list[str]             # class name of model.model[i]
    names: list[str]                   # class names it was trained on
    entry: str                         # 'ema' or 'model': which object the weights came from
    date: str | None = None

    @property
    def depth_multiple(self) -> float:
        v = self.yaml.get("depth_multiple")
        return float(v) if isinstance(v, (int, float)) else float("nan")

    @property
    def width_multiple(self) -> float:
        v = self.yaml.get("width_multiple")
        return float(v) if isinstance(v, (int, float)) else float("nan")

    @property
    def preset(self) -> str:
        return PRESET_NAMES.get((round(self.depth_multiple, 2), round(self.width_multiple, 2)), "custom")

    def anchors_pixels(self) -> list[list[float]] | None:
        """Detect's anchors in input pixels (the buffer is in grid units of each stride)."""
        a = self.state.get(f"model.{DETECT_LAYER}.anchors")
        if a is None or a.shape != (3, 3, 2):
            return None
        strides = torch.tensor([8.0, 16.0, 32.0]).view(3, 1, 1)
        return (a.float() * strides).reshape(3, 6).round().tolist()


def is_torch_zip(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _module_state(obj: Any, prefix: str, out: dict[str, torch.Tensor], where: str,
                  seen: set[int] | None = None) -> None:
    """Walk a stand-in nn.Module tree the way ``state_dict()`` does."""
    seen = set() if seen is None else seen
    if id(obj) in seen or prefix.count(".") > 32:
        raise InspectdError(f"{where}: module {prefix.rstrip('.')} contains itself or nests too deep")
    seen.add(id(obj))
    d = obj.__dict__
    skip = d.get("_non_persistent_buffers_set") or set()
    for attr in ("_parameters", "_buffers"):
        items = d.get(attr)
        if not isinstance(items, dict):
            raise InspectdError(f"{where}: {prefix or 'model'} is not a module ({attr} missing)")
        for k, v in items.items():
            if not isinstance(k, str):
                raise InspectdError(f"{where}: {prefix or 'model'} has a {attr} key that is not a name")
            if v is None or (attr == "_buffers" and k in skip):
                continue
            if not isinstance(v, torch.Tensor):
                raise InspectdError(f"{where}: {prefix}{k} is not a tensor")
            out[prefix + k] = v
    modules = d.get("_modules")
    if not isinstance(modules, dict):
        raise InspectdError(f"{where}: {prefix or 'model'} is not a module (_modules missing)")
    for k, m in modules.items():
        if m is None:
            continue
        if not isinstance(k, str) or not isinstance(m, StandIn):
            raise InspectdError(f"{where}: {prefix}{k} is not a module")
        _module_state(m, f"{prefix}{k}.", out, where, seen)


def read_yolov5(path: str | Path) -> YoloV5Checkpoint:
    """The weights and layout of a YOLOv5 checkpoint, read without executing it."""
    path = Path(path)
    obj = load_torch_zip(path)
    where = f"checkpoint {path}"
    if not isinstance(obj, dict):
        raise InspectdError(f"{where} is not a YOLOv5 checkpoint (its top level is not a dict)")
    entry = "ema" if isinstance(obj.get("ema"), StandIn) else "model"
    model = obj.get(entry)
    if not isinstance(model, StandIn) or not model._pickled_name.startswith("models."):
        raise InspectdError(f"{where} is not a YOLOv5 checkpoint (no YOLOv5 'model' object in it)")
    yaml = model.__dict__.get("yaml")
    if not isinstance(yaml, dict):
        raise InspectdError(f"{where} is not a YOLOv5 checkpoint (its model has no yaml description)")
    state: dict[str, torch.Tensor] = {}
    _module_state(model, "", state, where)
    seq = model.__dict__.get("_modules", {}).get("model")
    layers = list(seq.__dict__.get("_modules", {}).values()) if isinstance(seq, StandIn) else []
    names = model.__dict__.get("names")
    date = obj.get("date")
    return YoloV5Checkpoint(
        path=path, state=state, yaml=yaml,
        layer_types=[m._pickled_name.rsplit(".", 1)[-1] for m in layers if isinstance(m, StandIn)],
        names=list(names) if isinstance(names, (list, tuple, dict)) else [],
        entry=entry, date=date if isinstance(date, str) else None)


def check_compatible(ck: YoloV5Checkpoint, cfg: ModelConfig) -> None:
    """One line naming the first difference between the checkpoint's network and the config's."""
    where = f"checkpoint {ck.path}"
    if ck.layer_types[:len(V6_LAYERS)] != list(V6_LAYERS) or len(ck.layer_types) != len(V6_LAYERS):
        for i, (kind, expected) in enumerate(zip(ck.layer_types, V6_LAYERS)):
            if kind != expected:
                raise InspectdError(f"{where}: layer {i} is {kind}, the YOLOv5 v6 layout inspectd maps "
                                    f"has {expected} (another architecture or YOLOv5 version)")
        raise InspectdError(f"{where}: {len(ck.layer_types)} layers, the YOLOv5 v6 layout inspectd maps "
                            f"has {len(V6_LAYERS)} (another architecture, e.g. a P6 model)")
    if not all(isinstance(ck.yaml.get(k), (int, float)) for k in ("depth_multiple", "width_multiple")):
        raise InspectdError(f"{where}: its yaml has no numeric depth_multiple/width_multiple")
    want = (round(cfg.depth_multiple, 2), round(cfg.width_multiple, 2))
    got = (round(ck.depth_multiple, 2), round(ck.width_multiple, 2))
    if got != want:
        raise InspectdError(
            f"{where} is {ck.preset} (depth {got[0]}, width {got[1]}); model config {cfg.name!r} "
            f"expects depth {want[0]}, width {want[1]} ({PRESET_NAMES.get(want, 'custom')})")


def map_yolov5(ck: YoloV5Checkpoint, own: dict[str, torch.Tensor],
               cfg: ModelConfig) -> tuple[dict[str, torch.Tensor], list[TensorInit], list[str]]:
    """The network's state dict with every YOLOv5 tensor in its place.

    ``own`` is the fresh network's state dict (its values stand for what is new). Returns the
    new state, one TensorInit per network tensor, and notes (e.g. anchors that differ).
    """
    check_compatible(ck, cfg)
    where = f"checkpoint {ck.path}"
    state = {k: v.clone() for k, v in own.items()}
    inits: dict[str, TensorInit] = {}
    notes: list[str] = []
    na, no = 3, 5 + cfg.num_classes
    for src, value in ck.state.items():
        parts = src.split(".", 2)
        if len(parts) < 3 or parts[0] != "model" or not parts[1].isdigit():
            raise InspectdError(f"{where}: tensor {src} is outside the YOLOv5 layer list")
        layer, rest = int(parts[1]), parts[2]
        if layer not in LAYER_TO_MODULE:
            raise InspectdError(f"{where}: layer {layer} has weights ({src}), inspectd's network has no place for them")
        if layer == DETECT_LAYER and rest == "anchors":
            continue  # compared below; the anchors come from the inspectd config
        dst = f"{LAYER_TO_MODULE[layer]}.{rest}"
        if dst not in state:
            raise InspectdError(f"{where}: tensor {src} has no counterpart {dst} in the network")
        target = state[dst]
        v = value.to(target.dtype)
        if v.dim() != target.dim():
            raise InspectdError(f"{where}: {src} has shape {tuple(value.shape)}, the network's {dst} is "
                                f"{tuple(target.shape)}")
        if layer == DETECT_LAYER:
            # Rows are anchor-major: anchor a owns rows a*no .. a*no + no - 1 (x, y, w, h, obj, classes).
            nc_src = v.shape[0] // na - 5
            if v.shape[0] % na or nc_src < 1 or v.shape[1:] != target.shape[1:]:
                raise InspectdError(f"{where}: {src} has shape {tuple(v.shape)}, expected "
                                    f"(3 x (5 + classes), {', '.join(map(str, target.shape[1:]))})")
            tv = target.view(na, no, *target.shape[1:])
            tv[:, :5] = v.view(na, 5 + nc_src, *v.shape[1:])[:, :5]
            inits[dst] = TensorInit(dst, "adapted", src, f"box+objectness rows kept (5 per anchor); class rows new for the "
                                    f"{cfg.num_classes} classes (class-prior bias), the checkpoint's {nc_src} "
                                    f"class rows dropped", target.numel())
            continue
        status: Status
        if layer == 0 and rest == "conv.weight" and v.shape[1] == 3 and target.shape[1] == 1:
            v = v.sum(dim=1, keepdim=True)
            status, note = "adapted", "RGB kernel summed over input channels -> 1 channel (Mono8)"
        else:
            status, note = "loaded", ""
        if v.shape != target.shape:
            raise InspectdError(f"{where}: {src} has shape {tuple(value.shape)}, the network's {dst} is "
                                f"{tuple(target.shape)}")
        state[dst] = v.clone()
        inits[dst] = TensorInit(dst, status, src, note, target.numel())
    for k, v in own.items():
        if k in inits:
            continue
        if k.startswith(tuple(LAYER_TO_MODULE[i] + "." for i in LAYER_TO_MODULE if i != DETECT_LAYER)) \
                or k.startswith("det_head.m."):
            raise InspectdError(f"{where}: no tensor for the network's {k} (another architecture?)")
        note = "from the inspectd config" if k == "det_head.anchors" else ""
        inits[k] = TensorInit(k, "new", None, note, v.numel())
    src_anchors = ck.anchors_pixels()
    if src_anchors is not None and [[float(x) for x in a] for a in cfg.anchors] != src_anchors:
        notes.append(f"anchors differ from the checkpoint's (its {_fmt(src_anchors)}; inspectd's "
                     f"{_fmt(cfg.anchors)}): box rows kept anyway, anchors from the inspectd config")
    if cfg.in_channels == 1:
        notes.append("stem: the RGB kernel summed over its input channels (grey input, R = G = B)")
    return state, [inits[k] for k in own], notes


def _fmt(anchors: list[list[float]] | list[list[int]]) -> str:
    return " / ".join(",".join(str(int(x)) for x in a) for a in anchors)
