#!/usr/bin/env python
"""The int8 form's quality: `tsva evaluate` of the float file and of its int8 form on the same
pairs, in one run, and the TSVA median PSNR each loses per section x dD cell.

Both evaluations run at once (one ONNX Runtime thread each, so the two cores serve one each), with
the same seeds and therefore the same simulated pairs (held-out texture, 24 pairs per cell by
default); each writes its usual report folder. Usage:

    python benchmarks/int8_quality.py                 # the shipped model.onnx and model.int8.onnx
    python benchmarks/int8_quality.py --float runs/m.onnx --int8 runs/m.int8.onnx --pairs 8 --json

The target (issue 10): no cell loses more than 0.2 dB.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "model_repository" / "tsva" / "1" / "model.onnx"
LIMIT_DB = 0.2


def evaluate_command(model: Path, output: Path, args) -> list[str]:
    return [sys.executable, "-m", "tsva.common.cli", "evaluate", "--tsva", str(model), "--textures", args.textures,
            "--holdout", args.holdout, "--pairs", str(args.pairs), "--threads", "1", "-o", str(output)]


def tsva_medians(report: Path) -> dict[tuple[float, float], float]:
    cells = json.loads((report / "evaluation.json").read_text())["cells"]
    return {(c["thickness_um"], c["dd_um"]): c["methods"]["tsva"]["psnr_median"] for c in cells}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--float", dest="float_model", default=str(SHIPPED), help="float32 ONNX model")
    parser.add_argument("--int8", dest="int8_model", default=str(SHIPPED.with_name("model.int8.onnx")))
    parser.add_argument("--textures", default=str(REPO.parent / "shared" / "data" / "he"))
    parser.add_argument("--holdout", default="torchstain_target.png")
    parser.add_argument("--pairs", type=int, default=24, help="pairs per cell (default %(default)s)")
    parser.add_argument("-o", "--output", default=str(REPO / "runs" / "int8_quality"), help="report folders go here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    out = Path(args.output)
    reports = {"float32": out / "float32", "int8": out / "int8"}
    models = {"float32": Path(args.float_model), "int8": Path(args.int8_model)}
    running = {name: subprocess.Popen(evaluate_command(models[name], reports[name], args), cwd=REPO,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for name in reports}
    for name, process in running.items():
        _, err = process.communicate()
        if process.returncode:
            raise SystemExit(f"tsva evaluate of {models[name]} failed ({process.returncode}): {err[-2000:]}")
    ref, int8 = tsva_medians(reports["float32"]), tsva_medians(reports["int8"])
    loss = {cell: ref[cell] - int8[cell] for cell in ref}
    worst = max(loss, key=loss.get)
    result = {"float32": str(models["float32"]), "int8": str(models["int8"]), "pairs_per_cell": args.pairs,
              "cells": [{"thickness_um": t, "dd_um": dd, "float32_db": round(ref[t, dd], 3),
                         "int8_db": round(int8[t, dd], 3), "loss_db": round(loss[t, dd], 3)} for t, dd in ref],
              "worst_cell": {"thickness_um": worst[0], "dd_um": worst[1], "loss_db": round(loss[worst], 3)},
              "mean_loss_db": round(sum(loss.values()) / len(loss), 3),
              "cells_over_limit": sum(v > LIMIT_DB for v in loss.values())}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    dds = sorted({dd for _, dd in ref})
    print("TSVA median PSNR lost by the int8 form (dB), section (um) x dD (um)")
    print("| section | " + " | ".join(f"{dd:g}" for dd in dds) + " |")
    print("| --- |" + " --- |" * len(dds))
    for t in sorted({t for t, _ in ref}):
        print(f"| {t:g} | " + " | ".join(f"{loss[t, dd]:+.2f}" for dd in dds) + " |")
    print(f"worst cell: section {worst[0]:g} um, dD {worst[1]:g} um: {loss[worst]:.3f} dB; mean {result['mean_loss_db']} dB; "
          f"cells over {LIMIT_DB} dB: {result['cells_over_limit']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
