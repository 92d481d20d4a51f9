"""``inspectd cameras``: the GenICam devices the GenTL producers find, and their current format."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from inspectd.errors import InspectdError

NAME = "cameras"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="list the GenICam cameras the GenTL producers find",
        description=(
            "List the GenICam devices that the GenTL producers (.cti files) find, with vendor, "
            "model, serial, id and current PixelFormat, Width and Height (each device is opened "
            "briefly; one that cannot be opened, e.g. because the daemon has it, says so). "
            "Producers: --cti, else source.genicam.cti of --config, else the .cti files in the "
            "folders of GENICAM_GENTL64_PATH. Exit 1 if no device is found."
        ),
    )
    p.add_argument("--cti", metavar="PATH", nargs="+", action="extend", default=[],
                   help="GenTL producer files (.cti), one or more (default: from --config or GENICAM_GENTL64_PATH)")
    p.add_argument("--config", metavar="FILE", help="a daemon config; its source.genicam.cti is used when --cti is not given")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=run)


def _cti_from_args(args: argparse.Namespace) -> tuple[list[str], str]:
    if args.cti:
        return list(args.cti), "--cti"
    if args.config:
        try:
            from inspectd.config import load_config
        except ImportError:
            raise InspectdError("--config is not supported by this build yet; pass the producer with --cti") from None
        cfg = load_config(args.config)
        if cfg.source.genicam.cti:
            return [str(c) for c in cfg.source.genicam.cti], f"{args.config}: source.genicam.cti"
    from inspectd.runtime.sources.genicam import ENV_CTI_PATH, discover_cti

    found = discover_cti()
    if not found:
        raise InspectdError(
            "no GenTL producer to ask: pass the camera vendor's .cti file with --cti PATH "
            f"(or set source.genicam.cti in a --config file, or {ENV_CTI_PATH})"
        )
    return [str(f) for f in found], ENV_CTI_PATH


def describe(cti: list[str], where: str) -> list[dict[str, Any]]:
    """One dict per device: vendor, model, serial, id, tl_type, pixel_format, width, height, note."""
    from inspectd.runtime.sources.genicam import _short, list_devices, open_harvester, read_node, resolve_cti

    files = resolve_cti(cti, where)
    h = open_harvester(files)
    rows: list[dict[str, Any]] = []
    try:
        for dev in list_devices(h):
            row: dict[str, Any] = {
                "index": dev.index, "vendor": dev.vendor, "model": dev.model, "serial": dev.serial,
                "id": dev.id, "tl_type": dev.tl_type, "pixel_format": None, "width": None,
                "height": None, "note": "",
            }
            try:
                ia = h.create(h.device_info_list[dev.index])
            except Exception as exc:   # noqa: BLE001 - GenTL exceptions: report in the row
                in_use = "ResourceInUse" in type(exc).__name__ or "AccessDenied" in type(exc).__name__
                row["note"] = "cannot open: " + ("in use by another program" if in_use else _short(exc))
            else:
                try:
                    nm = ia.remote_device.node_map
                    row["pixel_format"] = read_node(nm, "PixelFormat")
                    row["width"] = read_node(nm, "Width")
                    row["height"] = read_node(nm, "Height")
                    row["pixel_format"] = None if row["pixel_format"] is None else str(row["pixel_format"])
                finally:
                    ia.destroy()
            rows.append(row)
    finally:
        h.reset()
    return rows


def run(args: argparse.Namespace) -> int:
    cti, where = _cti_from_args(args)
    rows = describe(cti, where)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        _print_table(rows)
    if not rows:
        names = ", ".join(Path(c).name for c in cti)
        print(f"inspectd: no GenICam device found by {names}", file=sys.stderr)
        return 1
    return 0


def _print_table(rows: list[dict[str, Any]]) -> None:
    def fmt(r: dict[str, Any]) -> str:
        if r["width"] is None:
            return "-"
        return f"{r['pixel_format']} {r['width']}x{r['height']}"

    header = ["#", "vendor", "model", "serial", "id", "format", "note"]
    table = [[str(r["index"]), r["vendor"], r["model"], r["serial"], r["id"], fmt(r), r["note"]] for r in rows]
    widths = [max(len(header[i]), *(len(t[i]) for t in table)) for i in range(len(header))]
    for line in [header, *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
