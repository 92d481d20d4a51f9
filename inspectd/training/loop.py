"""The training loop: staged or end-to-end, SGD + cosine + warm-up, EMA, resumable.

Data in either layout (``inspectd.data.layout``); the model's classes are the data's. On CUDA
the forward pass runs under float16 autocast with a gradient scaler (fp16's range needs it);
on CPU under bfloat16 autocast where the CPU has native bf16 (same range as float32: no scaler).
"""
from __future__ import annotations

import csv
import json
import math
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from inspectd.configtools import ConfigError, to_mapping
from inspectd.data.augment import Augment
from inspectd.data.layout import DataLayout, load_raws, open_layout
from inspectd.data.samples import DefectDataset, build_sample, collate
from inspectd.errors import InspectdError
from inspectd.model.checkpoint import save_checkpoint
from inspectd.model.config import load_preset
from inspectd.model.loss import MultiTaskLoss
from inspectd.model.network import MultiTaskNet, build_model
from inspectd.model.pretrained import InitReport, initialise
from inspectd.training.anchors import check_anchors
from inspectd.training.config import StageConfig, TrainConfig
from inspectd.training.ema import ModelEMA
from inspectd.training.validate import validate


class InputError(InspectdError):
    """A file the run reads is wrong: the data folder (``key`` "data.root") or the starting
    weights ("init"). Status 2 as raised, for a path the command line gave; a caller that took
    it from the training config raises it again as a ConfigError (78) naming the key."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def bf16_supported() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# Largest input chosen for the data on its own; beyond it, the user decides (or cuts tiles).
MAX_AUTO_INPUT = 1280


def fitting_input_size(preset: list[int], raws: list) -> list[int]:
    """The preset's input size, grown (to multiples of 32) until the largest image fits: the
    model sees images whole, at their own scale, as the daemon's tiles of that size will."""
    h = max((r.image.shape[0] for r in raws), default=0)
    w = max((r.image.shape[1] for r in raws), default=0)
    size = [max(preset[0], -(-h // 32) * 32), max(preset[1], -(-w // 32) * 32)]
    if max(size) > MAX_AUTO_INPUT:
        raise InspectdError(
            f"the images are up to {w}x{h} pixels, too large for one model input (at most {MAX_AUTO_INPUT} is "
            "chosen on its own): cut them into tiles, or set model_overrides.input_size and train on crops")
    return size


def make_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    """Three groups, as YOLOv5: decayed conv weights; BatchNorm weights and biases undecayed."""
    decay, no_decay_bn, bias = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if name == "bias":
                bias.append(p)
            elif isinstance(module, nn.BatchNorm2d):
                no_decay_bn.append(p)
            else:
                decay.append(p)
    groups = [g for g in ({"params": no_decay_bn, "weight_decay": 0.0},
                          {"params": decay, "weight_decay": weight_decay},
                          {"params": bias, "weight_decay": 0.0}) if g["params"]]
    opt = torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    for g in opt.param_groups:
        g["initial_lr"] = lr
    return opt


def lr_at(stage: StageConfig, lrf: float, epoch_float: float) -> float:
    """Cosine from lr0 to lr0 * lrf over the stage, after a linear warm-up."""
    e = stage.epochs
    if epoch_float < stage.warmup_epochs:
        return stage.lr0 * epoch_float / max(stage.warmup_epochs, 1e-9)
    t = min(epoch_float / e, 1.0)
    return stage.lr0 * (lrf + (1 - lrf) * 0.5 * (1 + math.cos(math.pi * t)))


def stage_of(cfg: TrainConfig, global_epoch: int) -> tuple[int, StageConfig, int]:
    start = 0
    for i, s in enumerate(cfg.stages):
        if global_epoch < start + s.epochs:
            return i, s, global_epoch - start
        start += s.epochs
    raise IndexError(global_epoch)


class Trainer:
    def __init__(self, cfg: TrainConfig, out_dir: str | Path, resume: bool = False,
                 train_stems: list[str] | None = None, val_stems: list[str] | None = None,
                 show_progress: bool = True):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.show_progress = show_progress
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        from inspectd.evaluation import resolve_device

        try:
            self.device = resolve_device(cfg.device)
        except InspectdError as exc:
            raise ConfigError(f"device: {exc}") from None
        mcfg = load_preset(cfg.model)
        if cfg.model_overrides:
            merged = {**mcfg.to_dict(), **cfg.model_overrides}
            mcfg = type(mcfg).from_dict(merged, f"model_overrides for {cfg.model}")
        try:
            self.layout: DataLayout = open_layout(cfg.data.root)
            self.train_stems = train_stems or self.layout.items("train", cfg.data.train)
            self.val_stems = val_stems if val_stems is not None else self.layout.items("val", cfg.data.val)
            # The classes are the data's; the segmentation head gets the classes its masks cover.
            class_names = self.layout.class_names()
            train_raws = load_raws(self.layout, self.train_stems, class_names, mcfg.in_channels)
            val_raws = load_raws(self.layout, self.val_stems, class_names, mcfg.in_channels)
            masked = self.layout.masked_classes()
        except ConfigError:
            raise
        except InspectdError as exc:
            raise InputError("data.root", str(exc)) from None
        mcfg = mcfg.replace(class_names=list(class_names),
                            seg_class_names=["background", *(c for c in class_names if c in masked)])
        if "input_size" not in cfg.model_overrides:
            try:
                mcfg = mcfg.replace(input_size=fitting_input_size(mcfg.input_size, train_raws + val_raws))
            except InspectdError as exc:
                raise InputError("data.root", str(exc)) from None
        # Anchors the data's boxes fit (kept unless too few do); an inspectd checkpoint to start
        # from brings its own, which the model must match.
        self.anchor_note = "anchors from model_overrides"
        if str(cfg.init or "").endswith(".safetensors"):
            self.anchor_note = "anchors of the preset (the init checkpoint must have the same)"
        elif "anchors" not in cfg.model_overrides:
            wh = np.concatenate([r.boxes[:, 2:] - r.boxes[:, :2] for r in train_raws] + [np.zeros((0, 2))])
            anchors, self.anchor_note = check_anchors(wh, mcfg.anchors, cfg.loss.anchor_t, cfg.seed)
            mcfg = mcfg.replace(anchors=anchors)
        self.model_cfg = mcfg
        seed_everything(cfg.seed)
        self.model: MultiTaskNet = build_model(mcfg)
        self.init_report: InitReport | None = None
        if cfg.init and not resume:  # on resume, last.pt holds the weights
            try:
                self.init_report = initialise(self.model, cfg.init)
            except InspectdError as exc:
                raise InputError("init", str(exc)) from None
        self.model.to(self.device)
        self.loss = MultiTaskLoss(self.model, cfg.loss).to(self.device)
        size = tuple(mcfg.input_size)
        names, seg_names = mcfg.class_names, mcfg.seg_class_names
        self.train_set = DefectDataset([build_sample(r, names, seg_names) for r in train_raws], size,
                                       Augment(cfg.augment), seed=cfg.seed)
        self.val_set = DefectDataset([build_sample(r, names, seg_names) for r in val_raws],
                                     size) if self.val_stems else None
        del train_raws, val_raws
        self.total_epochs = sum(s.epochs for s in cfg.stages)
        self.epoch = 0
        self.best_fitness = -math.inf
        self.history: list[dict] = []
        self.ema = ModelEMA(self.model, tau=cfg.ema_tau) if cfg.ema else None
        self.optimizer: torch.optim.Optimizer | None = None
        self.stage_index = -1
        cuda = self.device.type == "cuda"
        self.use_bf16 = not cuda and (cfg.bf16 == "on" or (cfg.bf16 == "auto" and bf16_supported()))
        self.use_fp16 = cuda and cfg.fp16
        self.autocast_dtype = torch.float16 if self.use_fp16 else torch.bfloat16 if self.use_bf16 else None
        # Disabled, the scaler passes the loss and the step straight through: one code path.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_fp16)
        self.out.mkdir(parents=True, exist_ok=True)
        if resume:
            self._resume()
        else:
            (self.out / "config.json").write_text(json.dumps(
                {"train": to_mapping(cfg), "model": mcfg.to_dict(), "data": self.data_info()}, indent=2))
            if self.init_report is not None:
                self.init_report.write(self.out)
                if show_progress:
                    print(f"initial weights from {cfg.init}:\n{self.init_report.table()}")
                    for note in self.init_report.notes:
                        print(f"  {note}")

    def data_info(self) -> dict:
        return {"root": str(self.layout.root), "layout": self.layout.kind, "train_images": len(self.train_set),
                "val_images": len(self.val_set) if self.val_set is not None else 0,
                "class_names": self.model_cfg.class_names, "seg_class_names": self.model_cfg.seg_class_names,
                "anchors": self.anchor_note}

    def precision(self) -> str:
        return "float16 autocast" if self.use_fp16 else "bfloat16 autocast" if self.use_bf16 else "float32"

    # -- state -----------------------------------------------------------------------------
    def _enter_stage(self, index: int) -> None:
        stage = self.cfg.stages[index]
        self.model.set_frozen(stage.freeze)
        self.optimizer = make_optimizer(self.model, stage.lr0, self.cfg.momentum, self.cfg.weight_decay)
        self.stage_index = index

    def _state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.ema.state_dict() if self.ema else {},
            "ema_updates": torch.tensor(self.ema.updates if self.ema else 0),
            "optimizer": self.optimizer.state_dict(),
            "epoch": torch.tensor(self.epoch),
            "stage_index": torch.tensor(self.stage_index),
            "best_fitness": torch.tensor(self.best_fitness),
            "scaler": self.scaler.state_dict(),
        }

    def _resume(self) -> None:
        path = self.out / "last.pt"
        if not path.exists():
            raise InspectdError(f"cannot resume: {path} not found")
        # weights_only: a resume file is tensors and plain containers, nothing to unpickle.
        st = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(st["model"])
        if self.ema and st["ema"]:
            self.ema.ema.load_state_dict(st["ema"])
            self.ema.updates = int(st["ema_updates"])
        self.epoch = int(st["epoch"])
        self.best_fitness = float(st["best_fitness"])
        self._enter_stage(int(st["stage_index"]))
        self.optimizer.load_state_dict(st["optimizer"])
        if st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        hist = self.out / "metrics.json"
        if hist.exists():
            self.history = json.loads(hist.read_text())

    # -- loop ------------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        cfg = self.cfg
        t_start = time.time()
        while self.epoch < self.total_epochs:
            si, stage, e_in = stage_of(cfg, self.epoch)
            if si != self.stage_index:
                self._enter_stage(si)
            row = self._train_epoch(stage, e_in)
            self.epoch += 1
            last = self.epoch == self.total_epochs
            if self.val_set is not None and (last or self.epoch % cfg.eval_every == 0):
                row.update(self._validate())
            row["elapsed_s"] = round(time.time() - t_start, 1)
            self.history.append(row)
            if last or self.epoch % cfg.checkpoint_every == 0 or "val_fitness" in row:
                self._save(row)
        return self.history

    def _train_epoch(self, stage: StageConfig, e_in: int) -> dict:
        cfg = self.cfg
        self.model.train()
        self.train_set.set_epoch(self.epoch)
        g = torch.Generator().manual_seed(cfg.seed * 1000 + self.epoch)
        loader = DataLoader(self.train_set, batch_size=cfg.batch_size, shuffle=True, generator=g,
                            collate_fn=collate, num_workers=cfg.workers, pin_memory=self.device.type == "cuda",
                            drop_last=len(self.train_set) > cfg.batch_size)
        n = len(loader)
        use_det, use_seg = "det" in stage.tasks, "seg" in stage.tasks
        sums: dict[str, float] = {}
        bar = tqdm(loader, total=n, disable=not self.show_progress, leave=True, dynamic_ncols=True,
                   desc=f"{stage.name} {e_in + 1}/{stage.epochs} (epoch {self.epoch + 1}/{self.total_epochs})")
        for i, batch in enumerate(bar):
            lr = lr_at(stage, cfg.lrf, e_in + i / n)
            warm = min((e_in + i / n) / max(stage.warmup_epochs, 1e-9), 1.0)
            for grp in self.optimizer.param_groups:
                grp["lr"] = lr
                grp["momentum"] = 0.8 + (cfg.momentum - 0.8) * warm
            dev = self.device
            x = batch["image"].to(dev, non_blocking=True).float() / 255.0
            with torch.autocast(dev.type, dtype=self.autocast_dtype or torch.float32,
                                enabled=self.autocast_dtype is not None):
                out = self.model(x)
            parts = self.loss(out, batch["targets"].to(dev, non_blocking=True), batch["seg"].to(dev, non_blocking=True),
                              use_det=use_det, use_seg=use_seg)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(parts.total).backward()
            self.scaler.unscale_(self.optimizer)     # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
            self.scaler.step(self.optimizer)         # skipped when fp16 gradients overflowed
            self.scaler.update()
            if self.ema:
                self.ema.update(self.model)
            for k, v in parts.items.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix({k: f"{sums[k] / (i + 1):.3f}" for k in ("box", "obj", "cls", "seg") if k in sums}
                            | {"lr": f"{lr:.2g}"})
        row = {"epoch": self.epoch + 1, "stage": stage.name, "lr": lr}
        row.update({f"train_{k}": v / n for k, v in sums.items()})
        return row

    def eval_model(self) -> MultiTaskNet:
        return self.ema.ema if self.ema else self.model

    def _validate(self) -> dict:
        res = validate(self.eval_model(), self.val_set, batch_size=self.cfg.batch_size, conf=self.cfg.eval_conf,
                       device=self.device)
        s = res.summary()
        fit = sum(w * s[k] for k, w in self.cfg.fitness.items() if not math.isnan(s.get(k, math.nan)))
        s["fitness"] = fit
        tqdm.write(f"  val: mAP@0.5 {s['map50']:.3f}  mAP@0.5:0.95 {s['map50_95']:.3f}  mIoU {s['miou']:.3f}"
                   f"  fitness {fit:.3f}")
        return {f"val_{k}": v for k, v in s.items()}

    def _save(self, row: dict) -> None:
        info = {"epoch": self.epoch, "total_epochs": self.total_epochs, "train_config": to_mapping(self.cfg),
                "data": self.data_info(), "device": str(self.device), "precision": self.precision(),
                "metrics": {k: v for k, v in row.items() if isinstance(v, (int, float))}}
        tmp = self.out / "last.pt.tmp"
        torch.save(self._state(), tmp)
        tmp.replace(self.out / "last.pt")
        save_checkpoint(self.eval_model(), self.out / "last.safetensors", info)
        fit = row.get("val_fitness")
        if fit is not None and fit > self.best_fitness:
            self.best_fitness = fit
            shutil.copyfile(self.out / "last.safetensors", self.out / "best.safetensors")
        (self.out / "metrics.json").write_text(json.dumps(self.history, indent=1))
        keys = sorted({k for r in self.history for k in r})
        with open(self.out / "metrics.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.history)
        try:
            from inspectd.metrics.plots import plot_training_curves
            plot_training_curves(self.history, self.out / "curves.png")
        except Exception as exc:  # a plot must never stop a training run
            tqdm.write(f"  (curves not plotted: {exc})")
