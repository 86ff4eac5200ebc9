#!/usr/bin/env bash
# The README's load-test sweep: starts `tsva serve` (embedded backend, shipped model unless
# SERVE_ARGS says otherwise) on free loopback ports, runs `tsva loadtest --sweep` against it while
# sampling the gateway's CPU and RSS, writes the table, JSON and plot to OUT, and stops the gateway.
#   benchmarks/loadtest_sweep.sh                                   # CPU, defaults below
#   LEVELS=1,2,4,8,16 DURATION=30 SERVE_ARGS="--max-batch 32" benchmarks/loadtest_sweep.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
OUT=${OUT:-runs/loadtest-$(date +%Y%m%d-%H%M%S)}
LEVELS=${LEVELS:-1,2,4,8}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-5}
WINDOW=${WINDOW:-2}
TILE=${TILE:-1224x1024}
SERVE_ARGS=${SERVE_ARGS:-}
mkdir -p "$OUT"
py="$VENV/bin/python"
read -r port metrics_port < <("$py" -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1", 0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
# shellcheck disable=SC2086
"$VENV/bin/tsva" serve --host 127.0.0.1 --port "$port" --metrics-host 127.0.0.1 --metrics-port "$metrics_port" \
  $SERVE_ARGS >"$OUT/gateway.log" 2>&1 &
gateway=$!
trap 'kill -TERM $gateway 2>/dev/null; wait $gateway 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  "$py" -m tsva.client.healthcheck --server "127.0.0.1:$port" --timeout 1 >/dev/null 2>&1 && break
  kill -0 $gateway 2>/dev/null || { echo "gateway exited:"; tail -20 "$OUT/gateway.log"; exit 1; }
  sleep 0.5
done
echo "gateway pid $gateway on 127.0.0.1:$port; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/host.txt"
"$VENV/bin/tsva" loadtest --server "127.0.0.1:$port" --sweep "$LEVELS" --duration "$DURATION" --warmup "$WARMUP" \
  --window "$WINDOW" --tile-size "$TILE" --gateway-pid "$gateway" --out "$OUT/sweep.json" --plot "$OUT/sweep.png" \
  | tee "$OUT/sweep.txt"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/host.txt"
echo "results in $OUT"
