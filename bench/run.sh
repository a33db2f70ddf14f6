#!/usr/bin/env bash
# brook vs rumqttd and Mosquitto, side by side on this machine.
#
#   bench/run.sh            # 3 rounds, full sizes (about 15 minutes)
#   bench/run.sh --quick    # 1 round, small sizes (about 3 minutes)
#
# Builds brook and brook-bench in release, starts brook (temp data dir, free
# loopback ports, an admin token, an insert_bucket action on bench/durable/#,
# a device made through the admin API), Debian's mosquitto (free loopback
# port, max_queued_messages 0, set_tcp_nodelay true) and, when it is
# installed, rumqttd 0.20 (a v4 and a v5 listener on free loopback ports,
# the router settings of its sample config, no persistence, anonymous;
# without it the script says how to install it and goes on with the two
# others), runs every scenario against each alternately (the order of the
# brokers alternates per round) and prints a table of medians with brook's
# ratio to each peer per figure (brook/rumqttd, brook/mosquitto).
# Scenarios: fan-in QoS 0/1; fan-out 1 -> 50 and 1 -> 1,000 subscribers,
# QoS 0/1; latency QoS 0/1; idle connections (RSS per connection), slow
# consumer, churn (100,000 retained topics, a client with 10,000
# subscriptions leaving, another client's CONNECT time) and retained-topic
# memory (100,000 topics, RSS per topic), each of these four on freshly
# started brokers; durable ingest (brook only, rows counted), also against
# each peer's QoS 1 fan-in of the same round.
# brook also runs the connections, fan-in and latency scenarios over
# MQTT over WebSocket (brook-bench --ws, label brook-ws; the connections
# one on a fresh broker of its own): a second table gives ws next to tcp.
# Every broker also runs fan-in and latency in MQTT 5 (brook-bench --mqtt 5,
# labels brook-v5, rumqttd-v5, mosquitto-v5, in the same round right next
# to the 3.1.1 runs): a third table gives v5 next to 3.1.1 with v5/v4.
# Raw result lines (one JSON object per scenario run, with its round) are
# kept in target/bench/. A scenario that fails records an "error" line and
# the run goes on; the script exits 1 when a brook or Mosquitto run failed
# (rumqttd's failures are listed, not fatal).
# Options: --quick, --rounds N, --keep (keep the temp dir with the brokers'
# logs), --mqtt5-only (only fan-in and latency, 3.1.1 and MQTT 5, on every
# broker), --no-rumqttd (leave rumqttd out even when it is installed).
set -euo pipefail

QUICK=0
ROUNDS=""
KEEP=0
MQTT5_ONLY=0
NO_RUMQTTD=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS="$2"; shift ;;
        --keep) KEEP=1 ;;
        --mqtt5-only) MQTT5_ONLY=1 ;;
        --no-rumqttd) NO_RUMQTTD=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
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

RUMQTTD=""
if [ "$NO_RUMQTTD" = 0 ]; then
    RUMQTTD="$(command -v rumqttd || true)"
    if [ -z "$RUMQTTD" ] && [ -x "$HOME/.cargo/bin/rumqttd" ]; then RUMQTTD="$HOME/.cargo/bin/rumqttd"; fi
    if [ -z "$RUMQTTD" ]; then
        echo "bench/run.sh: rumqttd is not installed; going on with brook and mosquitto only. To add it:" >&2
        echo "    cargo install rumqttd    # 0.20; with --locked its lock file's metrics 0.22.1 fails on rustc >= 1.89" >&2
    fi
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
    FANOUT_N=4000; FANOUT1K_N=400; RETAINED_T=10000
else
    : "${ROUNDS:=3}"
    FANIN_N=50000; LAT_D=10; CONN=10000; SLOW_D=15; DUR_N=10000; CHURN_T=100000; CHURN_S=10000
    FANOUT_N=20000; FANOUT1K_N=2000; RETAINED_T=100000
fi

# The brokers and the generator need a file descriptor per idle client.
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
RUMQ_PID=""
R_PORT=""
R5_PORT=""
BROOK_RUNS=0
ROUND=0

start_rumqttd() { # rumqttd, when installed; a failure to start is reported, not fatal
    [ -n "$RUMQTTD" ] || return 0
    R_PORT=$("$BENCH" free-port)
    R5_PORT=$("$BENCH" free-port)
    # The router section is rumqttd's sample config (rumqttd.toml of 0.20,
    # `rumqttd generate-config`), max_connections raised only if the
    # connections scenario needs more. The listeners: loopback, no accept
    # throttle (the sample sleeps 1 ms after each accept, which would cap
    # connects at 1,000/s), no auth, packets up to 1 MiB, dynamic filters
    # (a publish to a topic nobody subscribes to, like the retained ones,
    # is otherwise refused). No [console], [prometheus] or persistence.
    local conns=$(( CONN + 100 > 10010 ? CONN + 100 : 10010 ))
    local listener
    {
        echo "id = 0"
        echo
        echo "[router]"
        echo "id = 0"
        echo "max_connections = $conns"
        echo "max_outgoing_packet_count = 200"
        echo "max_segment_size = 104857600"
        echo "max_segment_count = 10"
        for listener in "v4:$R_PORT" "v5:$R5_PORT"; do
            local ver=${listener%%:*} port=${listener#*:}
            echo
            echo "[$ver.1]"
            echo "name = \"$ver-1\""
            echo "listen = \"127.0.0.1:$port\""
            echo "next_connection_delay_ms = 0"
            echo "    [$ver.1.connections]"
            echo "    connection_timeout_ms = 60000"
            echo "    max_payload_size = 1048576"
            echo "    max_inflight_count = 100"
            echo "    dynamic_filters = true"
        done
    } >"$WORK/rumqttd.toml"
    "$RUMQTTD" --quiet --config "$WORK/rumqttd.toml" >>"$WORK/rumqttd.log" 2>&1 &
    RUMQ_PID=$!
    local port
    for port in "$R_PORT" "$R5_PORT"; do
        for _ in $(seq 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
            kill -0 "$RUMQ_PID" 2>/dev/null || break
            sleep 0.1
        done
    done
    if ! kill -0 "$RUMQ_PID" 2>/dev/null; then
        echo "bench/run.sh: rumqttd did not start (its runs will be recorded as failed); its log:" >&2
        tail -20 "$WORK/rumqttd.log" >&2
        RUMQ_PID=""
    fi
}

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
    start_rumqttd
}

stop_brokers() {
    if [ -n "$BROOK_PID" ]; then kill "$BROOK_PID" 2>/dev/null; wait "$BROOK_PID" 2>/dev/null || true; fi
    if [ -n "$MOSQ_PID" ]; then kill "$MOSQ_PID" 2>/dev/null; wait "$MOSQ_PID" 2>/dev/null || true; fi
    if [ -n "$RUMQ_PID" ]; then kill "$RUMQ_PID" 2>/dev/null; wait "$RUMQ_PID" 2>/dev/null || true; fi
    BROOK_PID=""
    MOSQ_PID=""
    RUMQ_PID=""
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
    elif [ "$base" = rumqttd ]; then
        if [ -z "$RUMQ_PID" ] || ! kill -0 "$RUMQ_PID" 2>/dev/null; then
            local why
            why=$(tail -3 "$WORK/rumqttd.log" 2>/dev/null | tr '\n"' ' ' | cut -c1-200)
            echo "{\"scenario\":\"$scenario\",\"broker\":\"$broker\",\"round\":$ROUND,\"error\":\"rumqttd is not running; its log ends: $why\"}" >>"$RESULTS"
            echo "   $broker $*: FAILED: rumqttd is not running" >&2
            return 0
        fi
        local port="$R_PORT"
        if [ "$mqtt" = 5 ]; then port="$R5_PORT"; fi
        conn=(--port "$port" --username bench --password bench
              --broker-pid "$RUMQ_PID")
    else
        conn=(--port "$M_PORT" --username bench --password bench
              --broker-pid "$MOSQ_PID")
    fi
    conn+=(--broker "$broker" --mqtt "$mqtt" --round "$ROUND")
    local line
    if line=$("$BENCH" "${conn[@]}" "$@" 2>"$WORK/err"); then
        echo "$line" >>"$RESULTS"
        echo "   $broker $*: $line" | cut -c1-220 >&2
    else
        local msg
        msg=$(tr '\n"' ' ' <"$WORK/err" | cut -c1-300)
        echo "{\"scenario\":\"$scenario\",\"broker\":\"$broker\",\"round\":$ROUND,\"error\":\"$msg\"}" >>"$RESULTS"
        echo "   $broker $*: FAILED: $msg" >&2
    fi
}

# Memory figures (connections, slow, retained) are taken on freshly started
# brokers: an allocator keeps what an earlier scenario used, which would
# hide growth.
FRESH=(
    "connections --clients $CONN --max-seconds 120"
    "slow --qos 1 --publishers 4 --duration $SLOW_D --max-seconds 120"
    "churn --topics $CHURN_T --subscriptions $CHURN_S --max-seconds 300"
    "retained --topics $RETAINED_T --max-seconds 300"
)
# In MQTT 3.1.1 and MQTT 5 (and brook over ws).
SCENARIOS=(
    "fanin --qos 0 --publishers 4 --messages $FANIN_N --size 64"
    "fanin --qos 1 --publishers 4 --messages $FANIN_N --size 64 --window 100"
    "latency --qos 0 --rate 1000 --duration $LAT_D --warmup 1"
    "latency --qos 1 --rate 1000 --duration $LAT_D --warmup 1"
)
# In MQTT 3.1.1.
FANOUT=(
    "fanout --qos 0 --subscribers 50 --messages $FANOUT_N --size 64 --max-seconds 120"
    "fanout --qos 1 --subscribers 50 --messages $FANOUT_N --size 64 --window 100 --max-seconds 120"
    "fanout --qos 0 --subscribers 1000 --messages $FANOUT1K_N --size 64 --max-seconds 120"
    "fanout --qos 1 --subscribers 1000 --messages $FANOUT1K_N --size 64 --window 100 --max-seconds 120"
)
BROKERS=(brook)
if [ -n "$RUMQTTD" ]; then BROKERS+=(rumqttd); fi
BROKERS+=(mosquitto)
START=$(date +%s)
for round in $(seq "$ROUNDS"); do
    ROUND=$round
    # The order alternates per round, 3.1.1 and MQTT 5 runs of a broker too.
    ORDER=()
    V5ORDER=()
    if [ $((round % 2)) = 1 ]; then
        for b in "${BROKERS[@]}"; do ORDER+=("$b"); V5ORDER+=("$b" "$b-v5"); done
    else
        for ((i = ${#BROKERS[@]} - 1; i >= 0; i--)); do
            b=${BROKERS[$i]}; ORDER+=("$b"); V5ORDER+=("$b-v5" "$b")
        done
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
        for s in "${FANOUT[@]}"; do
            # shellcheck disable=SC2086
            for b in "${ORDER[@]}"; do run "$b" $s; done
        done
        run brook durable --publishers 4 --messages "$DUR_N"
        run brook durable --publishers 4 --messages "$DUR_N" --tago-topic
    fi
done
stop_brokers

echo >&2
echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $ROUNDS round(s) in $(( $(date +%s) - START )) s; raw lines: $RESULTS"
echo "== mosquitto: $("$MOSQUITTO" -h 2>/dev/null | head -1)"
if [ -n "$RUMQTTD" ]; then
    echo "== rumqttd: $("$RUMQTTD" --version 2>/dev/null | head -1) ($RUMQTTD)"
else
    echo "== rumqttd: not installed (cargo install rumqttd)"
fi
"$BENCH" report "$RESULTS"
if grep -q '"error"' "$RESULTS"; then
    echo >&2
    echo "failed runs (lines with \"error\" in $RESULTS):" >&2
    grep '"error"' "$RESULTS" | cut -c1-300 >&2
fi
if grep '"error"' "$RESULTS" | grep -qv '"broker":"rumqttd'; then
    exit 1
fi
