#!/usr/bin/env bash
# Are rejects in time at the gate? The sample replayed at the config's rate (--realtime: source.fps,
# else the file's 50 frames/s; configs/inspectd.yaml: 10, its 1.92 m/s line), published,
# with examples/reject_actuator.py downstream; after SECONDS s both are stopped with SIGTERM and
# print their summaries (the replay's "late:" line, the actuator's counts). Training, if
# /work/notes/train.pid names a running one, is paused meanwhile (resumed on exit).
#   pipelines/gate_timing.sh CONFIG SECONDS [replay options...]
set -u
config=$1; secs=$2; shift 2
port=$((20000 + RANDOM % 20000))
py=${PYTHON:-.venv/bin/python}
logs=$(mktemp -d)
tp=$(cat /work/notes/train.pid 2>/dev/null || true)
[ -n "$tp" ] && kill -STOP "$tp" 2>/dev/null
trap '[ -n "$tp" ] && kill -CONT "$tp" 2>/dev/null; rm -rf "$logs"' EXIT
$py examples/reject_actuator.py tcp://127.0.0.1:$port --camera cam0 >/dev/null 2>"$logs/actuator.err" &
act=$!
$py -m inspectd.cli replay samples/neu_strip.mkv --config "$config" --realtime --loop --show none \
    --publish tcp://127.0.0.1:$port "$@" 2>"$logs/replay.err" &
rep=$!
sleep "$secs"
kill -TERM $rep; wait $rep; echo "replay exit $?"
sleep 1; kill -TERM $act; wait $act
grep -h "^replay \|^  late\|^  uninspected\|^actuator summary:" "$logs/replay.err" "$logs/actuator.err"
