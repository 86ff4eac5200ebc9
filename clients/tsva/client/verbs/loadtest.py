"""`tsva loadtest`: load a gateway and report tiles/s, fused MP/s, latency percentiles and errors.

    tsva loadtest --concurrency 8 --duration 30
    tsva loadtest --sweep 1,2,4,8,16 --duration 20 --plot sweep.png --out sweep.json
    tsva loadtest --concurrency 4 --duration 10 --json      # one JSON object on stdout

Exit status: 0 all measured tiles answered (error rate <= --max-error-rate); 1 errors above it, a
level stopped early (server gone) or nothing measured; 2 bad options or files.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from tsva.client.verbs.common import add_connection_arguments, number_type, token_of
from tsva.common.errors import EXIT_OK, BadInput, Failed

HELP = "load-test a server"

_positive_int = number_type(int, 1)
_non_negative_float = number_type(float, 0)


def _levels(text: str) -> list[int]:
    try:
        levels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected concurrency levels such as 1,2,4,8, got {text!r}") from None
    if not levels or levels[0] < 1:
        raise argparse.ArgumentTypeError(f"levels must be >= 1, got {text!r}")
    return levels


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    add_connection_arguments(parser)
    load = parser.add_argument_group("load")
    load.add_argument("--concurrency", type=_positive_int, default=4, help="concurrent streams (default %(default)s)")
    load.add_argument("--window", type=_positive_int, default=4,
                      help="tiles in flight per stream, or unary calls per caller (default %(default)s)")
    load.add_argument("--mode", choices=("stream", "unary"), default="stream",
                      help="FuseTiles streams or unary Fuse calls (default %(default)s)")
    amount = load.add_mutually_exclusive_group()
    amount.add_argument("--duration", type=_non_negative_float, default=None,
                        help="measured seconds per level, after the warm-up (default 10)")
    amount.add_argument("--count", type=_positive_int, help="measured tiles per level, after the warm-up")
    load.add_argument("--warmup", type=_non_negative_float, default=2.0,
                      help="seconds of load before measuring (excluded from the figures; default %(default)s)")
    load.add_argument("--sweep", type=_levels, metavar="N,N,...",
                      help="run one level per concurrency and print the table (overrides --concurrency)")
    load.add_argument("--give-up-after", type=_non_negative_float, default=5.0,
                      help="stop a level when every call has failed for this many seconds (default %(default)s)")
    load.add_argument("--allow-remote", action="store_true",
                      help="allow a non-loopback --server (only servers you may load)")
    tiles = parser.add_argument_group("tiles (simulated H&E pairs, never blank)")
    tiles.add_argument("--tile-size", default="1224x1024", metavar="WxH", help="default %(default)s")
    tiles.add_argument("--channels", type=int, choices=(1, 3), default=3)
    tiles.add_argument("--pixel-type", choices=("uint8", "uint16"), default="uint8")
    tiles.add_argument("--encoding", choices=("raw", "png", "tiff"), default="raw")
    tiles.add_argument("--distinct", type=_positive_int, default=4,
                       help="different tile pairs, sent in turn (default %(default)s)")
    tiles.add_argument("--seed", type=int, default=0)
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON object on stdout (the table goes to stderr)")
    out.add_argument("--out", type=Path, metavar="FILE.json",
                     help="write the results with every latency; rewritten after each level, so a run that "
                          "fails keeps its partial results")
    out.add_argument("--plot", type=Path, metavar="FILE.png", help="latency plot (needs matplotlib)")
    out.add_argument("--max-error-rate", type=_non_negative_float, default=0.0,
                     help="highest error fraction that still exits 0 (default %(default)s)")
    out.add_argument("--gateway-pid", type=int, help="sample this local process's CPU and RSS during each level")


HEADER = f"{'streams':>7} {'window':>6} {'tiles':>6} {'tiles/s':>8} {'MP/s':>7} {'p50 ms':>8} {'p90 ms':>8} " \
         f"{'p99 ms':>8} {'max ms':>8} {'cpu %':>6} {'rss MB':>7}  errors"


def format_row(level: dict, knee: bool = False) -> str:
    def ms(value):
        return f"{value:8.1f}" if value is not None else f"{'-':>8}"
    gateway = level.get("gateway") or {}
    cpu = gateway.get("cpu_percent")
    rss = gateway.get("rss_mb_peak")
    errors = ", ".join(f"{k}={v}" for k, v in level["errors"].items()) or "0"
    row = (f"{level['concurrency']:>7} {level['window']:>6} {level['tiles']:>6} {level['throughput']:>8.2f} "
           f"{level['fused_mp_per_s']:>7.2f} {ms(level['p50'])} {ms(level['p90'])} {ms(level['p99'])} {ms(level['max'])} "
           f"{(f'{cpu:6.0f}' if cpu is not None else '     -')} {(f'{rss:7.0f}' if rss is not None else '      -')}  {errors}")
    if level.get("aborted"):
        row += f"  [stopped: {level['aborted']}]"
    return row + ("  <- knee" if knee else "")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))  # Ctrl-C: the dispatcher's `tsva loadtest: interrupted`, 130


async def _run(args: argparse.Namespace) -> int:
    from tsva.client import security
    from tsva.client.loadtest import report
    from tsva.client.loadtest.procstat import ProcessSampler, check_pid
    from tsva.client.loadtest.runner import Connection, LoadRun, LoadSettings
    from tsva.client.loadtest.target import RemoteTargetError, check_target
    from tsva.client.loadtest.tiles import TileSpec, parse_size, request_template

    try:
        width, height = parse_size(args.tile_size)
        check_target(args.server, args.allow_remote)
        if args.gateway_pid is not None:
            check_pid(args.gateway_pid)
        token = token_of(args)
        connection = Connection(args.server, security.channel_credentials(args.tls_ca, args.tls_cert, args.tls_key),
                                security.token_metadata(token))
    except (ValueError, RemoteTargetError, security.SecurityConfigError) as exc:
        raise BadInput(f"error: {exc}") from exc
    if args.plot is not None:
        from tsva.client.loadtest.plot import PlotUnavailable, _pyplot
        try:
            _pyplot()  # fail before the load, not after it
        except PlotUnavailable as exc:
            raise BadInput(f"error: {exc}") from exc

    log = sys.stderr if args.json else sys.stdout
    info = await report.preflight(connection, timeout=args.timeout or 10.0)
    if isinstance(info, str):
        raise Failed(f"error: {info}")
    limits = info.get("limits", {})
    if limits.get("max_tile_width") and (width > limits["max_tile_width"] or height > limits["max_tile_height"]):
        raise BadInput(f"error: --tile-size {width}x{height}: the server accepts at most "
                       f"{limits['max_tile_width']}x{limits['max_tile_height']}")

    spec = TileSpec(width, height, args.channels, args.pixel_type, args.encoding)
    templates = [request_template(spec, args.seed + i) for i in range(args.distinct)]
    duration = args.duration if args.duration is not None or args.count is not None else 10.0
    levels = args.sweep or [args.concurrency]
    results = report.Results(args, info, spec, duration)
    print(f"tsva loadtest: {args.server} ({info.get('backend', '?')} backend, model {info.get('model_name', '?')}), "
          f"{args.mode}, {width}x{height}x{args.channels} {args.pixel_type} {args.encoding}, window {args.window}, "
          f"{f'{args.count} tiles' if args.count else f'{duration:g} s'} per level after {args.warmup:g} s warm-up",
          file=log)
    print(HEADER, file=log, flush=True)
    for concurrency in levels:
        settings = LoadSettings(concurrency=concurrency, window=args.window, duration_s=duration, count=args.count,
                                warmup_s=args.warmup, mode=args.mode, tile_timeout_s=args.timeout or 120.0,
                                give_up_after_s=args.give_up_after)
        sampler = ProcessSampler(args.gateway_pid) if args.gateway_pid is not None else None
        if sampler:
            sampler.start()
        stats = await LoadRun(connection, templates, settings, spec.megapixels).run()
        if sampler:
            stats.gateway = await sampler.stop()
        results.add(stats)
        print(format_row(results.levels[-1]), file=log, flush=True)
        if args.out:
            results.write(args.out)  # after every level: partial results survive a crash
        if stats.aborted:
            break
    summary = results.summary()
    if len(levels) > 1 and summary["knee"] is not None:
        print(f"knee: {summary['knee']} streams ({summary['throughput']:.2f} tiles/s, p99 {summary['p99']} ms); "
              f"beyond it throughput grows < 10% while latency climbs", file=log)
    if args.out:
        results.write(args.out)
    if args.plot is not None:
        from tsva.client.loadtest.plot import write_plot
        write_plot(args.plot, results.levels, results.latencies, results.title)
    if args.json:
        print(json.dumps(summary))
    status, reason = results.verdict(args.max_error_rate)
    if status != EXIT_OK:
        print(f"tsva loadtest: {reason}", file=sys.stderr)
    return status
