"""The training loop of `tsva train`: a `Trainer` over one TrainConfig, one method per stage
(resume, data, initial weights, schedule, step, validation, checkpoints). CPU or CUDA, AMP on GPU;
one process, or one rank of a torchrun job (DistributedDataParallel: each rank draws its own
batches, gradients are averaged; rank 0 validates, logs and writes the checkpoints)."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from . import distributed
from .checkpoint import load_checkpoint, save_checkpoint
from .dataset import PairPool, build_pool
from .distribution import SectionDistribution
from .errors import CheckpointError, TsvaExportError
from .network import NetworkConfig, build_network, load_compatible_weights
from .optics import Optics, Sample
from .textures import DEFAULT_SOURCE, load_textures, split_textures

if TYPE_CHECKING:
    from .train import TrainConfig


def pair_mse(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Each pair's mean squared error, [N]."""
    return ((pred - truth) ** 2).flatten(1).mean(1)


def psnr_batch(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    mse = pair_mse(pred.clamp(0, 1), truth)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def training_loss(pred: torch.Tensor, truth: torch.Tensor, kind: str) -> torch.Tensor:
    """mse: the batch's mean squared error (dominated by the pairs with the largest errors);
    psnr: the batch's mean of each pair's -PSNR in dB, i.e. mean log-MSE (each pair's relative
    improvement counts alike, which is what a per-cell median PSNR rewards)."""
    if kind == "mse":
        return torch.nn.functional.mse_loss(pred, truth)
    if kind == "psnr":
        return (10 * torch.log10(pair_mse(pred, truth) + 1e-10)).mean()
    raise TsvaExportError(f"--loss must be mse or psnr, got {kind!r}")


def device_of(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TsvaExportError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


def _random_dihedral(*tensors: torch.Tensor, rng: np.random.Generator) -> list[torch.Tensor]:
    """The same rotation/flip for every tensor of a batch (the PSF is radially symmetric)."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    out = [torch.rot90(t, k, dims=(2, 3)) for t in tensors]
    return [t.flip(3) if flip else t for t in out]


def _random_crop(tensors, size: int, rng: np.random.Generator):
    """One random window of the pool patches per step (more variety from the same pool)."""
    full = tensors[0].shape[-1]
    if not size or size >= full:
        return tensors
    y, x = rng.integers(0, full - size + 1, 2)
    return [t[..., y:y + size, x:x + size] for t in tensors]


def section_distribution(sections: str) -> SectionDistribution | None:
    if sections not in ("mixed", "fixed"):
        raise TsvaExportError(f"--sections must be mixed or fixed, got {sections!r}")
    return SectionDistribution() if sections == "mixed" else None


def evaluate_pool(net: torch.nn.Module, pool: PairPool, device: torch.device, batch: int = 16) -> float:
    net.eval()
    scores = []
    with torch.no_grad():
        for start in range(0, len(pool), batch):
            y1, y2, truth = (t.to(device) for t in pool.tensors(slice(start, start + batch)))
            dd = pool.dd(slice(start, start + batch)).to(device)
            scores.append(psnr_batch(net(y1, y2, dd).float(), truth).cpu())
    net.train()
    return float(torch.cat(scores).mean())


def checkpoint_of(path: str, flag: str, network: NetworkConfig, conditioning_may_differ: bool = False) -> dict:
    """A checkpoint to continue from: refused unless it holds exactly the requested network (for
    --init-from, an unconditioned network may seed a conditioned one)."""
    _, ckpt = load_checkpoint(path, expect_arch=network.arch)
    have = NetworkConfig(**ckpt["network"]).to_dict()
    want = network.to_dict()
    if conditioning_may_differ:
        have, want = {**have, "condition": "-"}, {**want, "condition": "-"}
    if have != want:
        raise CheckpointError(f"{flag} {path}: network {ckpt['network']} differs from the requested {network.to_dict()}")
    return ckpt


class Trainer:
    """One training run. `run()` calls the stages in the order that keeps runs reproducible: the
    network is built right after torch's seed, a --resume checkpoint is checked before the (slow)
    pools are built, and the batch generator is seeded from the step reached."""

    def __init__(self, cfg: "TrainConfig", optics: Optics, sample: Sample, world: distributed.World,
                 device: torch.device, command: str | None = None, log=print):
        self.cfg, self.optics, self.sample, self.world, self.device = cfg, optics, sample, world, device
        self.command = command
        self.log = log if world.main else (lambda *_: None)  # one voice per job
        self.network = NetworkConfig(arch=cfg.arch, base_width=cfg.base_width, depth=cfg.depth,
                                     condition=cfg.condition)
        for name, size in (("--patch-size", cfg.patch_size), ("--crop", cfg.crop)):
            if size % (2 ** cfg.depth):
                raise TsvaExportError(f"{name} {size} must be a multiple of 2**depth = {2 ** cfg.depth}")
        if cfg.crop > cfg.patch_size:
            raise TsvaExportError(f"--crop {cfg.crop} is larger than --patch-size {cfg.patch_size}")
        self.distribution = None if cfg.zstacks else section_distribution(cfg.sections)
        self.net = build_network(self.network)   # what is saved and validated
        self.model = self.net                      # what the steps call (DDP-wrapped under torchrun)
        self.step, self.history, self.best, self.prior_minutes = 0, [], -math.inf, 0.0
        self.earlier = ""  # the commands that produced the starting weights, kept for reproduction
        self.resumed: dict | None = None
        self.output = Path(cfg.output)
        self.pool: PairPool | None = None          # load_data()
        self.val: PairPool | None = None
        self.data_description = ""
        self.losses: list[float] = []              # training losses since the last validation

    # ------------------------------------------------------------------------------- stages

    def resume(self, path: str) -> None:
        ckpt = checkpoint_of(path, "--resume", self.network)
        self.net.load_state_dict(ckpt["state_dict"])
        self.step, self.history = ckpt["step"], ckpt["history"]
        self.best = ckpt.get("best_val_psnr", -math.inf)
        self.prior_minutes = ckpt.get("minutes", 0.0)
        self.earlier = ckpt.get("earlier_training", "")
        self.resumed = ckpt
        self.log(f"resumed {path} at step {self.step}")

    def load_data(self) -> None:
        """The training and validation pools, and their description for the checkpoint."""
        cfg = self.cfg
        if cfg.zstacks:
            self.pool, self.val, self.data_description = self._zstack_pools()
        else:
            self.pool, self.val, self.data_description = self._simulated_pools()
        if cfg.batch_size > len(self.pool):
            raise TsvaExportError(f"--batch-size {cfg.batch_size} is larger than the training pool "
                                  f"({len(self.pool)} pairs)")

    def _zstack_pools(self) -> tuple[PairPool, PairPool, str]:
        """Pairs cut from real z-stacks (the paper's construction); whole stacks held out for validation."""
        from .zstack import ZStackError, build_stack_pool, read_zstacks
        cfg, optics = self.cfg, self.optics
        stacks = read_zstacks(cfg.zstacks)
        if len(stacks) < 2:
            raise ZStackError(f"--zstacks {cfg.zstacks}: {len(stacks)} stack; at least 2 are needed "
                              "(whole stacks are held out for validation)")
        n_val = max(1, int(round(cfg.zstacks_val * len(stacks))))
        train_s, val_s = stacks[:-n_val], stacks[-n_val:]
        pool = build_stack_pool(train_s, optics.defocus_um, cfg.pool_pairs, cfg.patch_size, optics.focus_sigma_um,
                                cfg.seed, source=str(cfg.zstacks))
        val = build_stack_pool(val_s, optics.defocus_um, cfg.val_pairs, cfg.patch_size, optics.focus_sigma_um,
                               cfg.seed + 10_000, source=str(cfg.zstacks))
        named = sum(s.focus_named for s in stacks)
        description = (f"z-stacks {cfg.zstacks}: train {len(train_s)} stacks, validation (held out) "
                       f"{', '.join(s.path.name for s in val_s)}; {cfg.pool_pairs} {cfg.patch_size}px pairs at "
                       f"truth -/+ dD - n; truth named by {named} files, the others by maximum Brenner gradient")
        return pool, val, description

    def _simulated_pools(self) -> tuple[PairPool, PairPool, str]:
        """Simulated pairs over the textures (held-out textures for validation); --pool caches the
        training pool, refused if it was simulated with other settings."""
        cfg, optics, sample, distribution = self.cfg, self.optics, self.sample, self.distribution
        textures = load_textures(cfg.textures, optics.pixel_size_um, min_size=cfg.patch_size)
        train_t, val_t = split_textures(textures, cfg.holdout or None)
        section = (f"per-pair sections: {distribution.describe()}" if distribution else
                   f"section {sample.thickness_um:g} um in {sample.layers} layers")
        description = (f"{cfg.textures or DEFAULT_SOURCE}: train "
                       f"{', '.join(t.name for t in train_t)}; validation (held out) "
                       f"{', '.join(t.name for t in val_t)}; {cfg.pool_pairs} simulated {cfg.patch_size}px pairs; "
                       f"{section}")
        if cfg.pool and Path(cfg.pool).is_file():
            self.log(f"loading training pool {cfg.pool}")
            pool = PairPool.load(cfg.pool)
            if pool.y1.shape[-1] != cfg.patch_size:
                raise TsvaExportError(f"--pool {cfg.pool}: holds {pool.y1.shape[-1]}px patches, not {cfg.patch_size}")
            pool.check_simulated_with(optics, sample, f"--pool {cfg.pool}", distribution)
        else:
            pool = build_pool(train_t, optics, sample, cfg.pool_pairs, cfg.patch_size, cfg.seed,
                              progress=cfg.progress, distribution=distribution)
            if cfg.pool and distributed.is_main():
                pool.save(cfg.pool)
        val = build_pool(val_t, optics, sample, cfg.val_pairs, cfg.patch_size, cfg.seed + 10_000, jitter=0.0,
                         progress=False, distribution=distribution)
        return pool, val, description

    def init_weights(self) -> None:
        """--init-from a checkpoint (.pt) or an exported model (.onnx, e.g. the shipped one); keeps
        the description of the earlier training for reproduction."""
        cfg, network = self.cfg, self.network
        if cfg.init_from.endswith(".onnx"):
            from .onnx_weights import import_onnx_weights
            index = np.arange(min(len(self.pool), 32))
            y1, y2, _ = self.pool.tensors(index)
            source, have, meta = import_onnx_weights(cfg.init_from, calibration=torch.cat([y1, y2]))
            want = network.to_dict()
            if {**have.to_dict(), "condition": "-"} != {**want, "condition": "-"}:
                raise CheckpointError(f"--init-from {cfg.init_from}: network {have.to_dict()} differs from the "
                                      f"requested {want}")
            load_compatible_weights(self.net, source.state_dict())
            self.log(f"starting from the weights of {cfg.init_from} (exported model)")
            earlier = meta.training_command if meta.training_command is not None else "?"
            self.earlier = f"{earlier}, exported to {cfg.init_from}, then "
            return
        init = checkpoint_of(cfg.init_from, "--init-from", network, conditioning_may_differ=True)
        load_compatible_weights(self.net, init["state_dict"])
        self.log(f"starting from the weights of {cfg.init_from} (step {init.get('step')})")
        self.earlier = f"{init.get('training_command', '?')} ({init.get('step', '?')} steps), then "

    def prepare(self) -> None:
        """Network on its device (DDP-wrapped under torchrun), optimiser, epoch length, the sharper
        shot's validation PSNR (the bar to beat), output folder, AMP, batch generator, clock."""
        cfg, world = self.cfg, self.world
        self.net = self.net.to(self.device)
        self.model = distributed.wrap(self.net, world)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        if self.resumed is not None:
            self.optimizer.load_state_dict(self.resumed["optimizer"])
        self.steps_per_epoch = max(1, len(self.pool) // (cfg.batch_size * world.size))
        self.val_every = cfg.val_every or self.steps_per_epoch
        with torch.no_grad():
            y1_val, _, truth_val = self.val.tensors(slice(None))
            self.sharper = float(psnr_batch(y1_val, truth_val).mean())
        self.log(f"{cfg.arch}: {sum(p.numel() for p in self.net.parameters())} parameters, {len(self.pool)} "
                 f"training pairs, {len(self.val)} validation pairs (sharper shot alone: {self.sharper:.2f} dB), "
                 f"device {self.device}" + (f", {world.size} processes ({world.backend})" if world.size > 1 else ""))
        if world.main:
            self.output.mkdir(parents=True, exist_ok=True)
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.rng = np.random.default_rng([cfg.seed + self.step, world.rank])  # each rank its own batches
        self.start = time.monotonic()

    # ------------------------------------------------------------------------ schedule, step

    def minutes(self) -> float:
        return self.prior_minutes + (time.monotonic() - self.start) / 60

    def learning_rate(self) -> float:
        """Cosine decay over the budget: steps, or --max-minutes if that runs out first (so a
        run cut short by time still ends at a low learning rate)."""
        cfg = self.cfg
        progress = self.step / cfg.steps
        if cfg.max_minutes > 0:
            progress = max(progress, self.minutes() / cfg.max_minutes)
        progress = min(progress, 1.0)
        return cfg.lr * (cfg.final_lr_fraction + (1 - cfg.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))

    def train_step(self) -> float:
        """One optimiser step on a random batch (random crop and dihedral transform); the loss."""
        cfg, pool, rng, device = self.cfg, self.pool, self.rng, self.device
        index = np.sort(rng.choice(len(pool), cfg.batch_size, replace=False))
        dd = pool.dd(index)
        y1, y2, truth = _random_dihedral(*_random_crop(pool.tensors(index), cfg.crop, rng), rng=rng)
        y1, y2, truth, dd = y1.to(device), y2.to(device), truth.to(device), dd.to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=self.use_amp):
            loss = training_loss(self.model(y1, y2, dd).float(), truth, cfg.loss)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        self.losses.append(loss.item())
        return self.losses[-1]

    # ------------------------------------------------------------------ validation, checkpoints

    def validate(self) -> float:
        """Validation PSNR, recorded in the history with the mean training loss since the last one."""
        val_psnr = evaluate_pool(self.net, self.val, self.device)
        self.history.append({"step": self.step, "epoch": self.step / self.steps_per_epoch,
                             "train_loss": float(np.mean(self.losses)), "val_psnr": val_psnr,
                             "minutes": self.minutes(), "lr": self.optimizer.param_groups[0]["lr"]})
        self.log(f"step {self.step}/{self.cfg.steps} epoch {self.step / self.steps_per_epoch:.1f}: train loss "
                 f"{self.history[-1]['train_loss']:.2e}, validation PSNR {val_psnr:.2f} dB "
                 f"(sharper shot {self.sharper:.2f})")
        return val_psnr

    def checkpoint_extra(self) -> dict:
        """Everything needed to resume and to reproduce, beside the weights."""
        return dict(
            optics=self.optics.to_dict(), sample=self.sample.to_dict(), train=asdict(self.cfg),
            training_data=self.data_description,
            distribution=self.distribution.to_dict() if self.distribution else None, world_size=self.world.size,
            training_command=self.earlier + (self.command or " ".join(sys.argv)), earlier_training=self.earlier,
            step=self.step, history=self.history, best_val_psnr=self.best,
            optimizer=self.optimizer.state_dict(), minutes=self.minutes())

    def save_checkpoints(self, val_psnr: float) -> None:
        """last.pt always; best.pt when validation improved."""
        if val_psnr > self.best:
            self.best = val_psnr
            save_checkpoint(self.output / "best.pt", self.net, self.network, **self.checkpoint_extra())
        save_checkpoint(self.output / "last.pt", self.net, self.network, **self.checkpoint_extra())

    # ------------------------------------------------------------------------------- the run

    def run(self, resume: str | None = None) -> dict:
        cfg, world = self.cfg, self.world
        if resume:  # checked before the (slow) pool is built
            self.resume(resume)
        self.load_data()
        if self.resumed is None and cfg.init_from:
            self.init_weights()
        self.prepare()
        self.net.train()
        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"train {cfg.arch}",
                   disable=not (cfg.progress and world.main), mininterval=10, file=sys.stderr)
        while self.step < cfg.steps:
            self.train_step()
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(self.losses[-50:]):.2e}", refresh=False)
            # Every rank stops at the same step (a rank that stopped alone would hang the others).
            out_of_time = distributed.any_rank(cfg.max_minutes > 0 and self.minutes() > cfg.max_minutes, world)
            if self.step % self.val_every == 0 or self.step == cfg.steps or out_of_time:
                if world.main:
                    self.save_checkpoints(self.validate())
                self.losses = []
                distributed.barrier(world)
            if out_of_time:
                self.log(f"stopped after {cfg.max_minutes} minutes at step {self.step} (--max-minutes)")
                break
        bar.close()
        return {"steps": self.step, "best_val_psnr": self.best, "sharper_val_psnr": self.sharper,
                "history": self.history, "checkpoint": str(self.output / "best.pt"), "world_size": world.size,
                "rank": world.rank}
