#!/usr/bin/env bash
# brook vs Mosquitto, side by side on this machine.
#
#   bench/run.sh            # 3 rounds, full sizes (about 10 minutes)
#   bench/run.sh --quick    # 1 round, small sizes (about 1 minute)
#
# Builds brook and brook-bench in release, starts brook (temp data dir, free
# loopback ports, an admin token, an insert_bucket action on bench/durable/#,
# a device made through the admin API) and Debian's mosquitto (free loopback
# port, max_queued_messages 0, set_tcp_nodelay true), runs every scenario
# against both alternately (the first broker alternates per round), and
# prints a table of medians with the brook/Mosquitto ratio per figure.
# brook also runs the connections, fan-in and latency scenarios over
# MQTT over WebSocket (brook-bench --ws, label brook-ws; the connections
# one on a fresh broker of its own): a second table gives ws next to tcp.
# Both brokers also run fan-in and latency in MQTT 5 (brook-bench --mqtt 5,
# labels brook-v5 and mosquitto-v5, in the same round right next to the
# 3.1.1 runs): a third table gives v5 next to 3.1.1 with the ratio v5/v4.
# Raw result lines (one JSON object per scenario run) are kept in
# target/bench/. Options: --quick, --rounds N, --keep (keep the temp dir
# with both brokers' logs), --mqtt5-only (only fan-in and latency, 3.1.1
# and MQTT 5, on both brokers).
set -euo pipefail

QUICK=0
ROUNDS=""
KEEP=0
MQTT5_ONLY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS="$2"; shift ;;
        --keep) KEEP=1 ;;
        --mqtt5-only) MQTT5_ONLY=1 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "bench/run.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

MOSQUITTO="$(command -v mosquitto || true)"
if [ -z "$MOSQUITTO" ] && [ -x /usr/sbin/mosquitto ]; then MOSQUITTO=/usr/sbin/mosquitto; fi
if [ -z "$MOSQUITTO" ]; then
    echo "bench/run.sh: mosquitto is not installed; the comparison needs it:" >&2
    echo "    apt-get install mosquitto" >&2
    exit 1
fi

cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
echo "== building brook and brook-bench (release)" >&2
cargo build --release --quiet --bin brook --bin brook-bench
BROOK="$TARGET/release/brook"
BENCH="$TARGET/release/brook-bench"

if [ "$QUICK" = 1 ]; then
    : "${ROUNDS:=1}"
    FANIN_N=10000; LAT_D=3; CONN=2000; SLOW_D=4; DUR_N=2000; CHURN_T=10000; CHURN_S=1000
else
    : "${ROUNDS:=3}"
    FANIN_N=50000; LAT_D=10; CONN=10000; SLOW_D=15; DUR_N=10000; CHURN_T=100000; CHURN_S=10000
fi

# Both brokers and the generator need a file descriptor per idle client.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONN + 1024)) ]; then
    NEW=$(( $(ulimit -n) - 1024 ))
    echo "bench/run.sh: open files limited to $(ulimit -n); connections scenario uses $NEW clients instead of $CONN" >&2
    CONN=$NEW
fi

WORK="$(mktemp -d /tmp/brook-bench.XXXXXX)"
mkdir -p "$TARGET/bench"
RESULTS="$TARGET/bench/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
ADMIN="bench-admin-$RANDOM$RANDOM"
BROOK_PID=""
MOSQ_PID=""
BROOK_RUNS=0

start_brokers() { # fresh processes; brook gets a new data dir, device and token
    BROOK_RUNS=$((BROOK_RUNS + 1))
    local dir="$WORK/brook$BROOK_RUNS"
    B_MQTT=$("$BENCH" free-port)
    B_HTTP=$("$BENCH" free-port)
    B_WS=$("$BENCH" free-port)
    mkdir -p "$dir/data" "$dir/actions"
    cat >"$dir/actions/bench.toml" <<'EOF'
[[action]]
name = "bench-store"
devices = ["*"]
trigger = { mqtt_topic = ["bench/durable/#"] }
type = "insert_bucket"
EOF
    cat >"$dir/config.toml" <<EOF
[server]
data_dir = "$dir/data"

[mqtt]
listen = "127.0.0.1:$B_MQTT"
ws_listen = "127.0.0.1:$B_WS"

[http]
listen = "127.0.0.1:$B_HTTP"
admin_token = "$ADMIN"

[actions]
dir = "$dir/actions"

[log]
level = "warn"
EOF
    "$BROOK" serve --config "$dir/config.toml" >>"$WORK/brook.log" 2>&1 &
    BROOK_PID=$!
    if ! "$BENCH" wait-http "http://127.0.0.1:$B_HTTP/health" --seconds 30; then
        echo "brook did not start; its log:" >&2; cat "$WORK/brook.log" >&2; exit 1
    fi
    TOKEN=$("$BENCH" --http "http://127.0.0.1:$B_HTTP" create-device --admin-token "$ADMIN" --name bench)

    M_PORT=$("$BENCH" free-port)
    cat >"$WORK/mosquitto.conf" <<EOF
listener $M_PORT 127.0.0.1
allow_anonymous true
max_queued_messages 0
set_tcp_nodelay true
persistence false
log_dest stderr
log_type error
log_type warning
EOF
    "$MOSQUITTO" -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
    MOSQ_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$M_PORT") 2>/dev/null && break
        sleep 0.1
    done
    if ! kill -0 "$MOSQ_PID" 2>/dev/null; then
        echo "mosquitto did not start; its log:" >&2; cat "$WORK/mosquitto.log" >&2; exit 1
    fi
}

stop_brokers() {
    if [ -n "$BROOK_PID" ]; then kill "$BROOK_PID" 2>/dev/null; wait "$BROOK_PID" 2>/dev/null || true; fi
    if [ -n "$MOSQ_PID" ]; then kill "$MOSQ_PID" 2>/dev/null; wait "$MOSQ_PID" 2>/dev/null || true; fi
    BROOK_PID=""
    MOSQ_PID=""
}

cleanup() {
    stop_brokers
    if [ "$KEEP" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

run() { # run BROKER SCENARIO ARGS...   (BROKER-v5: the same in MQTT 5)
    local broker="$1"; shift
    local scenario="$1"
    local conn
    local base="${broker%-v5}"
    local mqtt=3.1.1
    if [ "$base" != "$broker" ]; then mqtt=5; fi
    if [ "$base" = brook ]; then
        conn=(--port "$B_MQTT" --username bench --password "$TOKEN"
              --broker-pid "$BROOK_PID" --http "http://127.0.0.1:$B_HTTP")
    elif [ "$base" = brook-ws ]; then
        conn=(--ws --port "$B_WS" --username bench --password "$TOKEN"
              --broker-pid "$BROOK_PID" --http "http://127.0.0.1:$B_HTTP")
    else
        conn=(--port "$M_PORT" --username bench --password bench
              --broker-pid "$MOSQ_PID")
    fi
    conn+=(--broker "$broker" --mqtt "$mqtt")
    local line
    if line=$("$BENCH" "${conn[@]}" "$@" 2>"$WORK/err"); then
        echo "$line" >>"$RESULTS"
        echo "   $broker $*: $line" | cut -c1-220 >&2
    else
        local msg
        msg=$(tr '\n"' ' ' <"$WORK/err" | cut -c1-300)
        echo "{\"scenario\":\"$scenario\",\"broker\":\"$broker\",\"error\":\"$msg\"}" >>"$RESULTS"
        echo "   $broker $*: FAILED: $msg" >&2
    fi
}

# Memory figures (connections, slow) are taken on freshly started brokers:
# an allocator keeps what an earlier scenario used, which would hide growth.
FRESH=(
    "connections --clients $CONN --max-seconds 120"
    "slow --qos 1 --publishers 4 --duration $SLOW_D --max-seconds 120"
    "churn --topics $CHURN_T --subscriptions $CHURN_S --max-seconds 300"
)
SCENARIOS=(
    "fanin --qos 0 --publishers 4 --messages $FANIN_N --size 64"
    "fanin --qos 1 --publishers 4 --messages $FANIN_N --size 64 --window 100"
    "latency --qos 0 --rate 1000 --duration $LAT_D --warmup 1"
    "latency --qos 1 --rate 1000 --duration $LAT_D --warmup 1"
)
START=$(date +%s)
for round in $(seq "$ROUNDS"); do
    # The order alternates per round, 3.1.1 and MQTT 5 runs of a broker too.
    if [ $((round % 2)) = 1 ]; then
        ORDER=(brook mosquitto); V5ORDER=(brook brook-v5 mosquitto mosquitto-v5)
    else
        ORDER=(mosquitto brook); V5ORDER=(mosquitto-v5 mosquitto brook-v5 brook)
    fi
    echo "== round $round of $ROUNDS (${V5ORDER[0]} first)" >&2
    if [ "$MQTT5_ONLY" = 0 ]; then
        for s in "${FRESH[@]}"; do
            stop_brokers
            start_brokers
            # shellcheck disable=SC2086
            for b in "${ORDER[@]}"; do run "$b" $s; done
        done
    fi
    stop_brokers
    start_brokers
    if [ "$MQTT5_ONLY" = 0 ]; then
        # shellcheck disable=SC2086
        run brook-ws ${FRESH[0]}
        EXTRA=(brook-ws)
    else
        EXTRA=()
    fi
    for s in "${SCENARIOS[@]}"; do
        # shellcheck disable=SC2086
        for b in "${V5ORDER[@]}" "${EXTRA[@]}"; do run "$b" $s; done
    done
    if [ "$MQTT5_ONLY" = 0 ]; then
        run brook durable --publishers 4 --messages "$DUR_N"
        run brook durable --publishers 4 --messages "$DUR_N" --tago-topic
    fi
done
stop_brokers

echo >&2
echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $ROUNDS round(s) in $(( $(date +%s) - START )) s; raw lines: $RESULTS"
echo "== mosquitto: $("$MOSQUITTO" -h 2>/dev/null | head -1)"
"$BENCH" report "$RESULTS"
if grep -q '"error"' "$RESULTS"; then
    echo "some runs failed (lines with \"error\" in $RESULTS)" >&2
    exit 1
fi
