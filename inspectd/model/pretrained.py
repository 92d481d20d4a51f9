"""Starting weights for training (``--init``): a YOLOv5 ``.pt`` or an inspectd checkpoint, with a
report of what was loaded, what was adapted and what is new."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inspectd.errors import InspectdError
from inspectd.model.network import MultiTaskNet
from inspectd.model.yolov5 import TensorInit, is_torch_zip, map_yolov5, read_yolov5

# Report rows: (part, state-dict prefix, YOLOv5 layers).
PARTS = (
    ("encoder: backbone", "encoder.backbone.", "0-9"),
    ("encoder: FPN", "encoder.fpn.", "10-17"),
    ("detection: PAN", "pan.", "18-23"),
    ("detection: head", "det_head.", "24 (Detect)"),
    ("segmentation decoder", "seg_head.", "-"),
    ("deep supervision heads", "aux_heads.", "-"),
)


@dataclass
class InitReport:
    source: str
    kind: str                                  # 'yolov5' or 'inspectd'
    tensors: list[TensorInit]
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for part, prefix, layers in PARTS:
            ts = [t for t in self.tensors if t.name.startswith(prefix)]
            if not ts:
                continue
            row: dict[str, Any] = {"part": part, "yolov5_layers": layers if self.kind == "yolov5" else "-"}
            for st in ("loaded", "adapted", "new"):
                sel = [t for t in ts if t.status == st]
                row[st] = {"tensors": len(sel), "values": sum(t.numel for t in sel)}
            row["notes"] = sorted({f"{t.name.removeprefix(prefix)}: {t.note}" for t in ts
                                   if t.status == "adapted" and t.note})
            out.append(row)
        return out

    def table(self) -> str:
        """Markdown table, readable as is on a terminal."""
        def cell(c: dict[str, int]) -> str:
            return f"{c['tensors']} ({c['values']:,})" if c["tensors"] else "-"
        lines = ["| part | YOLOv5 layers | loaded | adapted | new |", "|---|---|---|---|---|"]
        for r in self.rows():
            lines.append(f"| {r['part']} | {r['yolov5_layers']} | {cell(r['loaded'])} | "
                         f"{cell(r['adapted'])} | {cell(r['new'])} |")
        tot = {st: sum(1 for t in self.tensors if t.status == st) for st in ("loaded", "adapted", "new")}
        lines.append(f"| total | | {tot['loaded']} | {tot['adapted']} | {tot['new']} |")
        return "\n".join(lines)

    def markdown(self) -> str:
        kind = "YOLOv5" if self.kind == "yolov5" else "inspectd"
        head = f"# Initial weights\n\nFrom `{self.source}` ({kind} checkpoint"
        if self.meta.get("preset"):
            head += f", {self.meta['preset']}, {self.meta.get('classes')} classes, saved {self.meta.get('date')}"
        head += ").\nCells: tensors (values); BatchNorm running statistics count as tensors.\n"
        by_note: dict[str, list[TensorInit]] = {}
        for t in self.tensors:
            if t.status == "adapted":
                by_note.setdefault(t.note, []).append(t)
        adapted = [f"- `{ts[0].name}` <- `{ts[0].source}`: {note}" if len(ts) == 1 else
                   f"- {len(ts)} tensors, `{ts[0].name}` ... `{ts[-1].name}` <- `{ts[0].source}` ... "
                   f"`{ts[-1].source}`: {note}" for note, ts in by_note.items()]
        body = [head, self.table(), ""]
        if adapted:
            body += ["Adapted:", *adapted, ""]
        if self.notes:
            body += ["Notes:", *[f"- {n}" for n in self.notes], ""]
        return "\n".join(body)

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "meta": self.meta, "rows": self.rows(),
                "notes": self.notes, "tensors": [asdict(t) for t in self.tensors]}

    def write(self, folder: str | Path) -> None:
        folder = Path(folder)
        (folder / "init_report.md").write_text(self.markdown())
        (folder / "init_report.json").write_text(json.dumps(self.to_json(), indent=1))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def initialise(model: MultiTaskNet, path: str | Path) -> InitReport:
    """Load starting weights into ``model`` from a YOLOv5 v6 ``.pt`` or an inspectd checkpoint.

    Raises InspectdError (one line) for a missing, damaged or unsafe file, or one that does not
    match the model config (another preset or architecture).
    """
    path = Path(path)
    if not path.is_file():
        raise InspectdError(f"init: checkpoint {path} not found")
    own = model.state_dict()
    if is_torch_zip(path) or path.suffix in (".pt", ".pth"):
        ck = read_yolov5(path)
        state, tensors, notes = map_yolov5(ck, own, model.cfg)
        model.load_state_dict(state)
        meta = {"preset": ck.preset, "depth_multiple": ck.depth_multiple, "width_multiple": ck.width_multiple,
                "classes": int(ck.yaml.get("nc", len(ck.names))), "date": ck.date, "weights_from": ck.entry,
                "source_tensors": len(ck.state), "sha256": _sha256(path)}
        notes.append("licence: YOLOv5's weights are GPL-3.0; a model trained from them is derived from "
                     "them (say so, with the licence, wherever it is shipped)")
        return InitReport(str(path), "yolov5", tensors, notes, meta)
    return _init_from_inspectd(model, path, own)


# Keys of the model config that only shape the segmentation decoder (and the training-only
# heads): a checkpoint that differs in them still gives the encoder and detection decoder.
DECODER_KEYS = frozenset({"aspp", "aspp_rates", "resdwab_blocks", "resdwab_dilations", "resdwab_expand",
                          "seg_fuse", "seg_width", "deep_supervision"})


def _init_from_inspectd(model: MultiTaskNet, path: Path, own: dict[str, Any]) -> InitReport:
    """Same network: every tensor loaded. A different segmentation decoder (DECODER_KEYS): every
    tensor whose name and shape match is loaded and the rest start new, as the report says."""
    from inspectd.model.checkpoint import load_checkpoint, read_metadata

    src_cfg, _ = read_metadata(path)
    mine, theirs = model.cfg.to_dict(), src_cfg.to_dict()
    for k in mine:
        if k not in DECODER_KEYS and k != "name" and mine[k] != theirs.get(k):
            raise InspectdError(f"init: {path}: {k} is {theirs.get(k)!r} there, {mine[k]!r} in this model "
                                "(only the segmentation decoder may differ)")
    loaded, _ = load_checkpoint(path)
    src = loaded.state_dict()
    state, tensors = {}, []
    for k, v in own.items():
        if k in src and src[k].shape == v.shape:
            state[k] = src[k]
            tensors.append(TensorInit(k, "loaded", k, "", v.numel()))
        else:
            state[k] = v
            tensors.append(TensorInit(k, "new", None, "", v.numel()))
    model.load_state_dict(state)
    notes = []
    changed = sorted(k for k in DECODER_KEYS if mine.get(k) != theirs.get(k))
    if changed:
        notes.append("segmentation decoder differs from the checkpoint's (" + ", ".join(
            f"{k}: {theirs.get(k)!r} -> {mine.get(k)!r}" for k in changed) + "): matching tensors loaded")
    return InitReport(str(path), "inspectd", tensors, notes, {"sha256": _sha256(path)})
