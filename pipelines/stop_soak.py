"""Stop the daemon on the live simulated camera again and again, as systemd would: does every
SIGTERM end it, and how soon?

Each round starts ``inspectd run`` on viky.cti (the genicam package's simulated GenICam camera,
200 x 200 Mono8 at its full rate) under a NOTIFY_SOCKET with a watchdog, waits for READY and two
watchdog pings, waits a random 0-0.5 s more, sends one SIGTERM and times the exit. ``--load N``
keeps N busy processes running meanwhile (a loaded inspection PC). A round that has not ended
``--hang-s`` after its SIGTERM is a hang: its stacks are dumped with py-spy where installed,
then it is killed. Prints a markdown summary; exits 1 if any round hung or exited non-zero.

    python pipelines/stop_soak.py --rounds 100 --load 2 [--model M] [--out report.md]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from notify_listener import NotifyListener  # noqa: E402  (the tests' stand-in for systemd's end)


def _busy(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def _viky() -> Path:
    try:
        import genicam
    except ImportError:
        sys.exit("stop_soak: the genicam package (viky.cti) is not installed")
    cti = Path(genicam.__file__).parent / "viky.cti"
    if not cti.is_file():
        sys.exit(f"stop_soak: {cti} not found")
    return cti


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=50, help="daemon starts and stops (default 50)")
    ap.add_argument("--load", type=int, default=0, help="busy processes meanwhile (default 0)")
    ap.add_argument("--model", help="checkpoint (default: the bundled model)")
    ap.add_argument("--hang-s", type=float, default=30.0, help="a stop slower than this is a hang (default 30)")
    ap.add_argument("--out", help="also write the markdown summary here")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="stop-soak-"))
    cfg = work / "cam.yaml"
    model = f"model: '{args.model}', " if args.model else ""
    cfg.write_text(
        "camera: soak\n"
        f"source: {{kind: genicam, genicam: {{cti: ['{_viky()}'], serial: '0', width: 200, height: 200}}}}\n"
        f"inference: {{{model}}}\n"
        "log: {format: json, level: info, verdicts: none}\n"
        "service: {status_interval_s: 0.2}\n")
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=_busy, args=(stop,), daemon=True) for _ in range(args.load)]
    for b in burners:
        b.start()
    stops, bad = [], []
    try:
        for i in range(args.rounds):
            lst = NotifyListener(path=str(work / f"notify{i}.sock"))
            env = lst.env(watchdog_usec=1_000_000)
            err_path = work / f"err{i}.jsonl"
            with open(err_path, "w") as err:
                p = subprocess.Popen([sys.executable, "-m", "inspectd.cli", "run", "--config", str(cfg)],
                                     stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT)
            try:
                if not lst.wait_for(lambda m: sum("WATCHDOG" in x for x in m) >= 2, timeout=180):
                    bad.append((i, "never ready", err_path.read_text()[-2000:]))
                    continue
                time.sleep(random.random() * 0.5)
                t0 = time.monotonic()
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=args.hang_s)
                except subprocess.TimeoutExpired:
                    dump = ""
                    if shutil.which("py-spy") or (Path(sys.executable).parent / "py-spy").exists():
                        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
                        dump = subprocess.run([spy, "dump", "--pid", str(p.pid)], capture_output=True,
                                              text=True).stdout
                    bad.append((i, f"no exit {args.hang_s:g} s after SIGTERM", dump))
                    continue
                stops.append(time.monotonic() - t0)
                events = [json.loads(x) for x in err_path.read_text().splitlines() if x.startswith("{")]
                ended = [e for e in events if e.get("event") == "pipeline_stopped"]
                if p.returncode != 0 or len(ended) != 1 or not ended[0].get("frames_accounted"):
                    bad.append((i, f"exit {p.returncode}, pipeline_stopped {ended[-1:] or 'missing'}", ""))
                print(f"round {i + 1}/{args.rounds}: stopped in {stops[-1]:.2f} s, exit {p.returncode}",
                      file=sys.stderr, flush=True)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                lst.close()
    finally:
        stop.set()
        for b in burners:
            b.join(5)
    lines = [f"# Stop soak: {args.rounds} rounds, {args.load} busy processes",
             "", f"- stopped cleanly: {len(stops) - sum(1 for b in bad if b[1].startswith('exit'))} of {args.rounds}",
             f"- problems: {len(bad)}"]
    if stops:
        q = sorted(stops)
        lines.append(f"- SIGTERM to exit: median {statistics.median(q):.2f} s, "
                     f"max {q[-1]:.2f} s, min {q[0]:.2f} s")
    for i, what, detail in bad:
        lines += ["", f"## round {i + 1}: {what}", "", "```", detail.strip(), "```"]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    shutil.rmtree(work, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
