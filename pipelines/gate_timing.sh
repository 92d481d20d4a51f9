#!/usr/bin/env bash
# Are rejects in time at the gate? The sample replayed at its line speed (--realtime), published,
# with examples/reject_actuator.py downstream; after SECONDS s both are stopped with SIGINT and
# print their summaries (the replay's "late:" line, the actuator's counts).
#   pipelines/gate_timing.sh CONFIG SECONDS [replay options...]
set -u
config=$1; secs=$2; shift 2
port=$((20000 + RANDOM % 20000))
py=${PYTHON:-.venv/bin/python}
$py examples/reject_actuator.py tcp://127.0.0.1:$port --camera cam0 >/dev/null 2>actuator.err &
act=$!
$py -m inspectd.cli replay samples/neu_strip.mkv --config "$config" --realtime --loop --show none \
    --publish tcp://127.0.0.1:$port "$@" 2>replay.err &
rep=$!
sleep "$secs"
kill -INT $rep; wait $rep; echo "replay exit $?"
sleep 1; kill -INT $act; wait $act
grep -h "^replay \|^  late\|^  uninspected\|^actuator:" replay.err actuator.err
