"""Training configuration (configs/train/*.yaml): data, schedule, stages, loss gains, augmentation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from inspectd.configtools import doc, fail, from_mapping, load_yaml
from inspectd.data.augment import AugmentConfig
from inspectd.model.loss import LossGains
from inspectd.model.network import GROUPS


@dataclass
class StageConfig:
    name: str = doc("stage name, shown in the progress bar and logs", default="all")
    epochs: int = doc("epochs in this stage", default=10)
    lr0: float = doc("peak learning rate (after warm-up); cosine-annealed to lr0 * lrf", default=0.01)
    freeze: list[str] = doc(
        "module groups frozen in this stage (encoder, detection, segmentation): no gradients and "
        "BatchNorm statistics held", default_factory=list)
    tasks: list[Literal["det", "seg"]] = doc(
        "losses used in this stage; a frozen task's loss is pointless", default_factory=lambda: ["det", "seg"])
    warmup_epochs: float = doc("linear learning-rate warm-up at the start of the stage", default=1.0)

    def validate(self, where: str, prefix: str) -> None:
        for g in self.freeze:
            if g not in GROUPS:
                fail(where, f"{prefix}.freeze", f"unknown module group {g!r} (known: {', '.join(GROUPS)})")
        if self.epochs < 1:
            fail(where, f"{prefix}.epochs", "must be at least 1")
        if not self.tasks:
            fail(where, f"{prefix}.tasks", "needs at least one of det, seg")


@dataclass
class DataConfig:
    root: str = doc(
        "data folder in the NEU layout (images/, annotations/, masks/, train.txt, val.txt, as "
        "shared/data/neu) or the YOLO layout (data.yaml, images/, labels/, masks/); docs/datasets.md. "
        "The model's classes are the data's", default="../shared/data/neu")
    train: str | None = doc(
        "training images: null = the layout's own (train.txt, or data.yaml's train:); else a list "
        "file (NEU: stems; YOLO: image paths) or, for YOLO, a folder of images; relative to root "
        "unless absolute", default=None)
    val: str | None = doc("validation images, as train (null = val.txt, or data.yaml's val:)", default=None)


@dataclass
class TrainConfig:
    model: str = doc("model preset name (configs/model/NAME.yaml) or path to a model YAML", default="n")
    model_overrides: dict[str, Any] = doc("keys of the model config to override", default_factory=dict)
    init: str | None = doc(
        "checkpoint whose weights start the run: an inspectd checkpoint (e.g. "
        "inspectd/models/inspectd-n-neu.safetensors to train the shipped model further) or a YOLOv5 v6 .pt "
        "of the same preset (e.g. ../shared/weights/yolov5n-v6.1-coco.pt; read without running "
        "its pickle, mapped onto encoder, PAN and head, report in the run folder's "
        "init_report.md). null = random weights",
        default=None)
    data: DataConfig = doc("where the images, labels and split lists are", default_factory=DataConfig)
    seed: int = doc("seed for weights, augmentation and data order", default=0)
    batch_size: int = doc("images per step", default=32)
    momentum: float = doc("SGD momentum (Nesterov)", default=0.937)
    weight_decay: float = doc("L2 decay on conv weights (not on BatchNorm or biases)", default=5e-4)
    lrf: float = doc("final learning rate as a fraction of lr0 (cosine schedule)", default=0.01)
    ema: bool = doc("keep an exponential moving average of the weights and evaluate/ship it", default=True)
    ema_tau: float = doc("EMA warm-up in steps: decay = 0.9999 * (1 - exp(-step / tau))", default=500.0)
    device: str = doc("where to train: 'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'",
                      default="auto")
    bf16: Literal["auto", "on", "off"] | bool = doc(
        "bfloat16 autocast on CPU: 'auto' turns it on where the CPU has native bf16 (avx512_bf16/AMX); "
        "on/off (YAML's true/false) force it", default="off")
    fp16: bool = doc("float16 autocast with a gradient scaler when training on CUDA", default=True)
    workers: int = doc("data-loading worker processes (0 = in the training process); augmentation is "
                       "seeded per image and epoch, so the result does not depend on it", default=0)
    threads: int = doc("torch CPU threads, 0 = all cores", default=0)
    eval_every: int = doc("validate every N epochs (and always after the last)", default=1)
    checkpoint_every: int = doc("write the resume state, checkpoints and curves every N epochs "
                                "(and always after the last)", default=1)
    eval_conf: float = doc("score threshold for mAP during validation", default=0.001)
    fitness: dict[str, float] = doc(
        "weights of val metrics in the fitness that picks the best checkpoint",
        default_factory=lambda: {"map50": 0.5, "miou": 0.5})
    stages: list[StageConfig] = doc("training stages, run in order", default_factory=lambda: [StageConfig()])
    loss: LossGains = doc("loss weights and gains (inspectd/model/loss.py says why each is set so)",
                          default_factory=LossGains)
    augment: AugmentConfig = doc("training augmentations, seeded per sample and epoch",
                                 default_factory=AugmentConfig)

    def validate(self, where: str, prefix: str) -> None:
        if self.batch_size < 1:
            fail(where, "batch_size", "must be at least 1")
        if not self.stages:
            fail(where, "stages", "needs at least one stage")
        if isinstance(self.bf16, bool):      # YAML reads a bare on/off as true/false
            self.bf16 = "on" if self.bf16 else "off"
        if self.workers < 0:
            fail(where, "workers", "must be 0 or more")
        if self.device != "auto" and not (self.device in ("cpu", "cuda") or
                                          (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            fail(where, "device", f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")


def load_train_config(path: str) -> TrainConfig:
    return from_mapping(TrainConfig, load_yaml(path), str(path))


def scale_epochs(cfg: TrainConfig, factor: float) -> None:
    """Every stage's epochs (at least one) and warm-up (at most half the stage) times ``factor``."""
    for s in cfg.stages:
        s.epochs = max(1, round(s.epochs * factor))
        s.warmup_epochs = min(s.warmup_epochs * factor, s.epochs / 2)


def set_total_epochs(cfg: TrainConfig, total: int) -> None:
    """Scale the stages to ``total`` epochs in all (at least one each), in proportion."""
    before = [s.epochs for s in cfg.stages]
    quota = [e * total / sum(before) for e in before]
    epochs = [max(1, int(q)) for q in quota]
    while sum(epochs) > total:                    # the floor of one epoch per stage overshot
        epochs[max((i for i in range(len(epochs)) if epochs[i] > 1), key=lambda i: epochs[i] - quota[i])] -= 1
    while sum(epochs) < total:                    # largest remainders first
        epochs[max(range(len(epochs)), key=lambda i: quota[i] - epochs[i])] += 1
    for s, b, e in zip(cfg.stages, before, epochs):
        s.epochs = e
        s.warmup_epochs = min(s.warmup_epochs * e / b, e / 2)
