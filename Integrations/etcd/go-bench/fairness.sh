#!/usr/bin/env bash
# Fairness check: etcd's Go client (go-bench) and csmr-etcd (Swift, grpc-swift-2) against the same
# local 3-member etcd, alternately, same load: closed loop, 64 clients, 16 per connection, half
# linearizable gets and half puts of 100-byte values over 1000 keys.
#
#   bash scripts/setup --go-bench && bash Integrations/etcd/go-bench/build.sh
#   swift build -c release --package-path Integrations/etcd --product csmr-etcd
#   bash Integrations/etcd/go-bench/fairness.sh [rounds] [seconds]     # from the repository root
#
# CSMR_ETCD names the csmr-etcd binary (default: Integrations/etcd/.build/release/csmr-etcd);
# CSMR_ETCD_BEFORE, if set, names a second one (say, an older build) run in each round too.
# Each client's CPU seconds (user + system) are printed with its line: on a machine whose cores
# the members share, a client's CPU is taken from etcd.
# Members run from a temporary folder and are stopped by PID when the script ends.
set -euo pipefail
cd "$(dirname "$0")/../../.."
rounds=${1:-2}
seconds=${2:-10}
clients=${CLIENTS:-64}
swift_bin=${CSMR_ETCD:-Integrations/etcd/.build/release/csmr-etcd}
before_bin=${CSMR_ETCD_BEFORE:-}
go_bin=Integrations/etcd/go-bench/go-bench
[ -x "$swift_bin" ] || { echo "fairness: build csmr-etcd first ($swift_bin)" >&2; exit 2; }
[ -x "$go_bin" ] || { echo "fairness: build go-bench first (Integrations/etcd/go-bench/build.sh)" >&2; exit 2; }
work=$(mktemp -d /tmp/csmr-fairness-XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
clients_urls=(); peers=(); cluster=""
for i in 0 1 2; do
  clients_urls+=("127.0.0.1:$(free_port)"); peers+=("http://127.0.0.1:$(free_port)")
  cluster+="${cluster:+,}m$i=${peers[$i]}"
done
for i in 0 1 2; do
  etcd --name "m$i" --data-dir "$work/m$i" --listen-client-urls "http://${clients_urls[$i]}" --advertise-client-urls "http://${clients_urls[$i]}" \
    --listen-peer-urls "${peers[$i]}" --initial-advertise-peer-urls "${peers[$i]}" --initial-cluster "$cluster" \
    --initial-cluster-token "fairness-$$" --initial-cluster-state new --logger zap --log-outputs stderr >"$work/m$i.log" 2>&1 &
  pids+=($!)
done
endpoints=$(IFS=,; echo "${clients_urls[*]}")
quoted=$(printf '"%s", ' "${clients_urls[@]}"); quoted=${quoted%, }
cat >"$work/fair.yaml" <<YAML
name: etcd-fairness
target: etcd
etcd: {endpoints: [$quoted], clients_per_connection: 16}
duration_s: $seconds
warmup_s: 2
clients: {count: $clients, loop: closed}
keys: {count: 1000}
values: {size_bytes: 100}
mix: {kv.get: 0.5, kv.put: 0.5}
YAML
sleep 5
echo "fairness: etcd members ${pids[*]} on $endpoints; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
timed() { /usr/bin/time -f '%U %S' -o "$work/cpu" "$@"; }
cpu_seconds() { awk '{printf "%.1f", $1 + $2}' "$work/cpu"; }
swift_round() { # label binary round
  timed "$2" run "$work/fair.yaml" --out "$work/$1-$3" --quiet >/dev/null 2>&1
  echo "round $3 $1 (op,count,errors,unfinished,offered,achieved_ops_s,mean,p50,p90,p99,...): $(grep '^all,' "$work/$1-$3/summary.csv"); cpu_s $(cpu_seconds)"
}
for round in $(seq 1 "$rounds"); do
  timed "$go_bin" -endpoints "$endpoints" -clients "$clients" -clients-per-conn 16 -duration "${seconds}s" -warmup 2s -put 0.5 -keys 1000 -value-size 100 >"$work/go.out"
  echo "round $round go    (clients,conns,ops_s,errors,p50_us,p99_us,p999_us,max_us): $(tail -1 "$work/go.out"); cpu_s $(cpu_seconds)"
  swift_round swift "$swift_bin" "$round"
  if [ -n "$before_bin" ]; then swift_round before "$before_bin" "$round"; fi
done
echo "fairness: load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
