"""Training of TSVA or the U-Net baseline on a pool of simulated pairs or of pairs cut from real
z-stacks (CPU or CUDA, AMP on GPU; one process, or DistributedDataParallel under torchrun)."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import load_checkpoint, save_checkpoint
from . import distributed
from .dataset import PairPool, build_pool
from .distribution import SectionDistribution
from .errors import CheckpointError, TsvaExportError
from .network import NetworkConfig, build_network, load_compatible_weights
from .optics import Optics, Sample
from .textures import DEFAULT_SOURCE, load_textures, split_textures


@dataclass
class TrainConfig:
    arch: str = "tsva"
    base_width: int = 16
    depth: int = 3
    patch_size: int = 128           # size of the simulated pool's patches
    crop: int = 0                   # random crops of this size from the pool patches (0: whole patch)
    batch_size: int = 8
    steps: int = 2000
    lr: float = 5e-4               # the paper's Adam learning rate
    final_lr_fraction: float = 0.05  # cosine decay to lr * this (short budgets converge better)
    pool_pairs: int = 2000
    val_pairs: int = 60
    val_every: int = 0             # steps between validations; 0: once per epoch (pass over the pool)
    seed: int = 0
    threads: int = 1
    device: str = "auto"
    amp: bool = True               # mixed precision, CUDA only
    textures: str | None = None    # None: the packaged H&E fields
    holdout: list[str] = field(default_factory=list)
    pool: str | None = None        # cached training pool (.npz); built and saved if missing
    output: str = "runs/tsva"
    max_minutes: float = 0.0       # stop early (and save) after this long; 0: no limit
    progress: bool = True
    init_from: str | None = None   # start from these weights (.pt or exported .onnx; fresh optimiser and schedule)
    sections: str = "mixed"        # "mixed": every pair draws its section (distribution.py); "fixed": --thickness/--layers
    condition: str = "none"        # "defocus": the network takes dD as a third input
    zstacks: str | None = None     # folder of real z-stacks: train on pairs cut from them, not simulated
    zstacks_val: float = 0.2       # share of the stacks held out for validation (at least one)


def psnr_batch(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    mse = ((pred.clamp(0, 1) - truth) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def _device(name: str) -> torch.device:
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


def section_distribution(cfg: TrainConfig) -> SectionDistribution | None:
    if cfg.sections not in ("mixed", "fixed"):
        raise TsvaExportError(f"--sections must be mixed or fixed, got {cfg.sections!r}")
    return SectionDistribution() if cfg.sections == "mixed" else None


def zstack_pools(cfg: TrainConfig, optics: Optics) -> tuple[PairPool, PairPool, str]:
    """Pairs cut from real z-stacks (the paper's construction); whole stacks held out for validation."""
    from .zstack import ZStackError, build_stack_pool, read_zstacks
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


def data_pools(cfg: TrainConfig, optics: Optics, sample: Sample, log=print) -> tuple[PairPool, PairPool, str]:
    if cfg.zstacks:
        return zstack_pools(cfg, optics)
    distribution = section_distribution(cfg)
    textures = load_textures(cfg.textures, optics.pixel_size_um, min_size=cfg.patch_size)
    train_t, val_t = split_textures(textures, cfg.holdout or None)
    section = (f"per-pair sections: {distribution.describe()}" if distribution else
               f"section {sample.thickness_um:g} um in {sample.layers} layers")
    description = (f"{cfg.textures or DEFAULT_SOURCE}: train "
                   f"{', '.join(t.name for t in train_t)}; validation (held out) {', '.join(t.name for t in val_t)}; "
                   f"{cfg.pool_pairs} simulated {cfg.patch_size}px pairs; {section}")
    if cfg.pool and Path(cfg.pool).is_file():
        log(f"loading training pool {cfg.pool}")
        pool = PairPool.load(cfg.pool)
        if pool.y1.shape[-1] != cfg.patch_size:
            raise TsvaExportError(f"--pool {cfg.pool}: holds {pool.y1.shape[-1]}px patches, not {cfg.patch_size}")
        pool.check_simulated_with(optics, sample, f"--pool {cfg.pool}", distribution)
    else:
        pool = build_pool(train_t, optics, sample, cfg.pool_pairs, cfg.patch_size, cfg.seed, progress=cfg.progress,
                          distribution=distribution)
        if cfg.pool and distributed.is_main():
            pool.save(cfg.pool)
    val = build_pool(val_t, optics, sample, cfg.val_pairs, cfg.patch_size, cfg.seed + 10_000, jitter=0.0,
                     progress=False, distribution=distribution)
    return pool, val, description


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


def _checkpoint_of(path: str, flag: str, network: NetworkConfig, conditioning_may_differ: bool = False) -> dict:
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


def _init_weights(net: torch.nn.Module, cfg: TrainConfig, network: NetworkConfig, pool: PairPool, log) -> str:
    """--init-from a checkpoint (.pt) or an exported model (.onnx, e.g. the shipped one); returns
    the description of the earlier training kept for reproduction."""
    if cfg.init_from.endswith(".onnx"):
        from .onnx_weights import import_onnx_weights
        index = np.arange(min(len(pool), 32))
        y1, y2, _ = pool.tensors(index)
        source, have, meta = import_onnx_weights(cfg.init_from, calibration=torch.cat([y1, y2]))
        want = network.to_dict()
        if {**have.to_dict(), "condition": "-"} != {**want, "condition": "-"}:
            raise CheckpointError(f"--init-from {cfg.init_from}: network {have.to_dict()} differs from the requested {want}")
        load_compatible_weights(net, source.state_dict())
        log(f"starting from the weights of {cfg.init_from} (exported model)")
        earlier = meta.training_command if meta.training_command is not None else "?"
        return f"{earlier}, exported to {cfg.init_from}, then "
    init = _checkpoint_of(cfg.init_from, "--init-from", network, conditioning_may_differ=True)
    load_compatible_weights(net, init["state_dict"])
    log(f"starting from the weights of {cfg.init_from} (step {init.get('step')})")
    return f"{init.get('training_command', '?')} ({init.get('step', '?')} steps), then "


def train(cfg: TrainConfig, optics: Optics = Optics(), sample: Sample = Sample(), resume: str | None = None,
          command: str | None = None, log=print) -> dict:
    """One process, or one rank of a torchrun job (DistributedDataParallel: each rank draws its own
    batches, gradients are averaged; rank 0 validates, logs and writes the checkpoints)."""
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    world = distributed.setup(cfg.device)
    device = world.device if world.size > 1 else _device(cfg.device)
    if not world.main:
        log = lambda *_: None  # noqa: E731 -- one voice per job
    try:
        return _train(cfg, optics, sample, resume, command, log, device, world)
    finally:
        distributed.teardown(world)


def _train(cfg: TrainConfig, optics: Optics, sample: Sample, resume: str | None, command: str | None, log,
           device: torch.device, world: "distributed.World") -> dict:
    network = NetworkConfig(arch=cfg.arch, base_width=cfg.base_width, depth=cfg.depth, condition=cfg.condition)
    for name, size in (("--patch-size", cfg.patch_size), ("--crop", cfg.crop)):
        if size % (2 ** cfg.depth):
            raise TsvaExportError(f"{name} {size} must be a multiple of 2**depth = {2 ** cfg.depth}")
    if cfg.crop > cfg.patch_size:
        raise TsvaExportError(f"--crop {cfg.crop} is larger than --patch-size {cfg.patch_size}")
    distribution = None if cfg.zstacks else section_distribution(cfg)
    net = build_network(network)
    step, history, best, prior_minutes = 0, [], -math.inf, 0.0
    earlier = ""  # the commands that produced the starting weights, kept for reproduction
    resumed = None
    if resume:  # checked before the (slow) pool is built
        resumed = _checkpoint_of(resume, "--resume", network)
        net.load_state_dict(resumed["state_dict"])
        step, history, best = resumed["step"], resumed["history"], resumed.get("best_val_psnr", -math.inf)
        prior_minutes = resumed.get("minutes", 0.0)
        earlier = resumed.get("earlier_training", "")
        log(f"resumed {resume} at step {step}")
    pool, val, data_description = data_pools(cfg, optics, sample, log)
    if cfg.batch_size > len(pool):
        raise TsvaExportError(f"--batch-size {cfg.batch_size} is larger than the training pool ({len(pool)} pairs)")
    if resumed is None and cfg.init_from:
        earlier = _init_weights(net, cfg, network, pool, log)
    net = net.to(device)
    model = distributed.wrap(net, world)   # what the steps call; `net` is what is saved and validated
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])

    steps_per_epoch = max(1, len(pool) // (cfg.batch_size * world.size))
    val_every = cfg.val_every or steps_per_epoch
    with torch.no_grad():
        y1_val, _, truth_val = val.tensors(slice(None))
        sharper = float(psnr_batch(y1_val, truth_val).mean())
    log(f"{cfg.arch}: {sum(p.numel() for p in net.parameters())} parameters, {len(pool)} training pairs, "
        f"{len(val)} validation pairs (sharper shot alone: {sharper:.2f} dB), device {device}"
        + (f", {world.size} processes ({world.backend})" if world.size > 1 else ""))

    output = Path(cfg.output)
    if world.main:
        output.mkdir(parents=True, exist_ok=True)
    extra = lambda: dict(  # noqa: E731 -- everything needed to resume and to reproduce
        optics=optics.to_dict(), sample=sample.to_dict(), train=asdict(cfg), training_data=data_description,
        distribution=distribution.to_dict() if distribution else None, world_size=world.size,
        training_command=earlier + (command or " ".join(sys.argv)), earlier_training=earlier, step=step, history=history, best_val_psnr=best,
        optimizer=optimizer.state_dict(), minutes=minutes())

    start = time.monotonic()
    minutes = lambda: prior_minutes + (time.monotonic() - start) / 60  # noqa: E731

    def learning_rate() -> float:
        """Cosine decay over the budget: steps, or --max-minutes if that runs out first (so a
        run cut short by time still ends at a low learning rate)."""
        progress = step / cfg.steps
        if cfg.max_minutes > 0:
            progress = max(progress, minutes() / cfg.max_minutes)
        progress = min(progress, 1.0)
        return cfg.lr * (cfg.final_lr_fraction + (1 - cfg.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))

    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    rng = np.random.default_rng([cfg.seed + step, world.rank])  # each rank its own batches
    net.train()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.arch}", disable=not (cfg.progress and world.main),
               mininterval=10, file=sys.stderr)
    losses = []
    while step < cfg.steps:
        index = np.sort(rng.choice(len(pool), cfg.batch_size, replace=False))
        dd = pool.dd(index)
        y1, y2, truth = _random_dihedral(*_random_crop(pool.tensors(index), cfg.crop, rng), rng=rng)
        y1, y2, truth, dd = y1.to(device), y2.to(device), truth.to(device), dd.to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            loss = torch.nn.functional.mse_loss(model(y1, y2, dd).float(), truth)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        step += 1
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.2e}", refresh=False)
        # Every rank stops at the same step (a rank that stopped alone would hang the others).
        out_of_time = distributed.any_rank(cfg.max_minutes > 0 and minutes() > cfg.max_minutes, world)
        if step % val_every == 0 or step == cfg.steps or out_of_time:
            if world.main:
                val_psnr = evaluate_pool(net, val, device)
                history.append({"step": step, "epoch": step / steps_per_epoch, "train_loss": float(np.mean(losses)),
                                "val_psnr": val_psnr, "minutes": minutes(),
                                "lr": optimizer.param_groups[0]["lr"]})
                log(f"step {step}/{cfg.steps} epoch {step / steps_per_epoch:.1f}: train loss "
                    f"{history[-1]['train_loss']:.2e}, validation PSNR {val_psnr:.2f} dB (sharper shot {sharper:.2f})")
                if val_psnr > best:
                    best = val_psnr
                    save_checkpoint(output / "best.pt", net, network, **extra())
                save_checkpoint(output / "last.pt", net, network, **extra())
            losses = []
            distributed.barrier(world)
        if out_of_time:
            log(f"stopped after {cfg.max_minutes} minutes at step {step} (--max-minutes)")
            break
    bar.close()
    return {"steps": step, "best_val_psnr": best, "sharper_val_psnr": sharper, "history": history,
            "checkpoint": str(output / "best.pt"), "world_size": world.size, "rank": world.rank}
