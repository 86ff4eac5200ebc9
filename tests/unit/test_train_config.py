"""`tsva train`'s flags are generated from TrainConfig's fields: the same names, defaults, types
and choices as the hand-written parser had (the list below was taken from `tsva train --help`
before the flags were generated), and the parsed flags give the TrainConfig the hand mapping gave."""
from __future__ import annotations

import argparse
from dataclasses import asdict, fields

import pytest
from tsva.export import flags
from tsva.export.train import TrainConfig
from tsva.export.verbs import train as train_verb

# (option strings, default, type, choices, action) of every `tsva train` flag before generation; a
# type of comma-separated numbers is shown by what it makes of "0.5,1".
BEFORE = [
    (("--arch",), "tsva", None, ("tsva", "unet"), "store"),
    (("--width",), 16, int, None, "store"),
    (("--depth",), 3, int, None, "store"),
    (("--patch-size",), 128, int, None, "store"),
    (("--crop",), 0, int, None, "store"),
    (("--batch-size",), 8, int, None, "store"),
    (("--steps",), 2000, int, None, "store"),
    (("--lr",), 0.0005, float, None, "store"),
    (("--loss",), "mse", None, ("mse", "psnr"), "store"),   # added after generation
    (("--pool-pairs",), 2000, int, None, "store"),
    (("--val-pairs",), 60, int, None, "store"),
    (("--val-every",), 0, int, None, "store"),
    (("--pool",), None, None, None, "store"),
    (("--seed",), 0, int, None, "store"),
    (("--threads",), 1, int, None, "store"),
    (("--device",), "auto", None, None, "store"),
    (("--no-amp",), False, None, None, "store_true"),
    (("--max-minutes",), 0.0, float, None, "store"),
    (("-o", "--output"), None, None, None, "store"),
    (("--resume",), None, None, None, "store"),
    (("--init-from",), None, None, None, "store"),
    (("--sections",), "mixed", None, ("mixed", "fixed"), "store"),
    (("--condition",), "none", None, ("none", "defocus"), "store"),
    (("--zstacks",), None, None, None, "store"),
    (("--no-progress",), False, None, None, "store_true"),
    (("--textures",), None, None, None, "store"),
    (("--holdout",), [], None, None, "append"),
    (("--na",), 0.75, float, None, "store"),
    (("--refractive-index",), 1.0, float, None, "store"),
    (("--pixel-size",), 0.25, float, None, "store"),
    (("--wavelengths",), (0.61, 0.53, 0.47), "0.5,1 -> (0.5, 1.0)", None, "store"),
    (("--defocus",), (0.5, 1.0, 1.5, 2.0, 2.5, 3.0), "0.5,1 -> (0.5, 1.0)", None, "store"),
    (("--focus-sigma",), 1.0, float, None, "store"),
    (("--layers",), 5, int, None, "store"),
    (("--thickness",), 4.0, float, None, "store"),
]
METAVARS = {"--pool": "NPZ", "--resume": "CKPT", "--init-from": "CKPT", "--zstacks": "DIR", "--textures": "DIR",
            "--holdout": "NAME"}
ACTIONS = {argparse._StoreAction: "store", argparse._StoreTrueAction: "store_true", argparse._AppendAction: "append"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tsva train")
    train_verb.add_arguments(parser)
    return parser


def test_the_generated_flags_are_the_flags_of_before():
    now = []
    for a in _parser()._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        kind = a.type if a.type in (None, int, float) else f"0.5,1 -> {a.type('0.5,1')}"
        now.append((tuple(a.option_strings), a.default, kind, a.choices and tuple(a.choices), ACTIONS[type(a)]))
        assert a.metavar == METAVARS.get(a.option_strings[-1]), a.option_strings
    assert sorted(now, key=str) == sorted(BEFORE, key=str)


def test_every_flag_is_in_the_help_with_its_default():
    text = _parser().format_help()
    for names, default, *_ in BEFORE:
        assert all(n in text for n in names)
    for shown in ("network (default tsva)", "base channels (default 16)", "Adam learning rate (default 0.0005)",
                  "validation pairs (default 60)", "checkpoint folder (default runs/ARCH)", "(default mixed)"):
        assert shown in " ".join(text.split()), shown


def _by_hand(args: argparse.Namespace) -> TrainConfig:
    """The verb's hand mapping from flags to TrainConfig before the flags were generated."""
    return TrainConfig(
        arch=args.arch, base_width=args.width, depth=args.depth, patch_size=args.patch_size, crop=args.crop,
        batch_size=args.batch_size, steps=args.steps, lr=args.lr, pool_pairs=args.pool_pairs,
        val_pairs=args.val_pairs, val_every=args.val_every, seed=args.seed, threads=args.threads,
        device=args.device, amp=not args.no_amp, textures=args.textures, holdout=args.holdout,
        pool=args.pool, output=args.output or f"runs/{args.arch}", max_minutes=args.max_minutes,
        progress=not args.no_progress, init_from=args.init_from, sections=args.sections,
        condition=args.condition, zstacks=args.zstacks, loss=args.loss)


@pytest.mark.parametrize("argv", [
    [],
    ["--arch", "unet"],
    ["--width", "8", "--depth", "2", "--patch-size", "32", "--crop", "16", "--batch-size", "2", "--steps", "3",
     "--lr", "1e-3", "--pool-pairs", "4", "--val-pairs", "2", "--val-every", "1", "--pool", "p.npz", "--seed", "7",
     "--threads", "2", "--device", "cpu", "--no-amp", "--max-minutes", "0.5", "-o", "out", "--init-from", "a.pt",
     "--sections", "fixed", "--condition", "defocus", "--loss", "psnr", "--zstacks", "stacks", "--no-progress", "--textures", "tex",
     "--holdout", "a.png", "--holdout", "b.png"],
])
def test_the_parsed_flags_give_the_config_the_hand_mapping_gave(argv):
    args = _parser().parse_args(argv)
    cfg = flags.from_namespace(TrainConfig, args)
    assert asdict(cfg) == asdict(_by_hand(args))


def test_the_defaults_of_the_flags_are_the_config_defaults():
    cfg = flags.from_namespace(TrainConfig, _parser().parse_args([]))
    assert asdict(cfg) == asdict(TrainConfig()) and cfg.output == "runs/tsva"
    # API-only settings have no flag.
    flagged = {f.name for f, _ in flags.flag_fields(TrainConfig)}
    assert {f.name for f in fields(TrainConfig)} - flagged == {"final_lr_fraction", "textures", "holdout", "zstacks_val"}



def test_the_optics_flags_give_the_optics_and_section_the_hand_mapping_gave():
    from tsva.export.optics import Optics, Sample
    from tsva.export.verbs.common import optics_from_args, sample_from_args
    for argv in ([], ["--na", "0.5", "--refractive-index", "1.5", "--pixel-size", "0.5", "--wavelengths", "0.55",
                      "--defocus", "1,2", "--focus-sigma", "0.5", "--layers", "3", "--thickness", "2.5"]):
        args = _parser().parse_args(argv)
        assert optics_from_args(args) == Optics(
            numerical_aperture=args.na, refractive_index=args.refractive_index, pixel_size_um=args.pixel_size,
            wavelengths_um=args.wavelengths, defocus_um=args.defocus, focus_sigma_um=args.focus_sigma)
        assert sample_from_args(args) == Sample(layers=args.layers, thickness_um=args.thickness)
    assert optics_from_args(args).defocus_um == (1.0, 2.0) and sample_from_args(args).layers == 3
