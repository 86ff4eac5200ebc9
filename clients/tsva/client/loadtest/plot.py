"""The latency plot for people (PNG). matplotlib is an optional extra of the client
(`pip install 'tsva-client[loadtest]'`), imported only when a plot is asked for."""
from __future__ import annotations

from pathlib import Path

import numpy as np


class PlotUnavailable(RuntimeError):
    pass


def _pyplot():
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise PlotUnavailable("--plot needs matplotlib, which is not installed: "
                              "pip install 'tsva-client[loadtest]', or leave --plot out") from None
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    return plt


def write_plot(path: str | Path, levels: list[dict], latencies: list[list[float]], title: str) -> Path:
    """Left: latency distribution (CDF) of every level; right (sweeps): throughput and p50/p99
    against concurrency, where the knee shows."""
    plt = _pyplot()
    sweep = len(levels) > 1
    fig, axes = plt.subplots(1, 2 if sweep else 1, figsize=(12 if sweep else 6.5, 4.5), squeeze=False)
    cdf = axes[0][0]
    for level, values in zip(levels, latencies):
        if not values:
            continue
        ordered = np.sort(np.asarray(values))
        cdf.plot(ordered, np.arange(1, ordered.size + 1) / ordered.size,
                 label=f"c={level['concurrency']} (p99 {level['p99']:.0f} ms)")
    cdf.set_xlabel("tile latency (ms)")
    cdf.set_ylabel("fraction of tiles")
    cdf.set_title("latency distribution")
    cdf.grid(alpha=0.3)
    cdf.legend(fontsize=8)
    if sweep:
        conc = [level["concurrency"] for level in levels]
        ax = axes[0][1]
        ax.plot(conc, [level["throughput"] for level in levels], "o-", color="tab:blue", label="tiles/s")
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel("tiles/s", color="tab:blue")
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        lat = ax.twinx()
        lat.plot(conc, [level["p50"] or np.nan for level in levels], "s--", color="tab:orange", label="p50")
        lat.plot(conc, [level["p99"] or np.nan for level in levels], "^--", color="tab:red", label="p99")
        lat.set_ylabel("latency (ms)")
        handles = ax.get_legend_handles_labels()[0] + lat.get_legend_handles_labels()[0]
        lat.legend(handles, [h.get_label() for h in handles], loc="upper center", fontsize=8)
        ax.set_title("throughput and latency against concurrency")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
