"""The ``hats`` command: up, down, status, ports, contract, new-service, serve, import-bars."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import httpx

from shared import ports
from shared.kit.portguard import is_listening, port_holder
from shared.settings import PlatformSettings

#: The checkout this command runs from (where docs and new services are written).
REPOSITORY = Path(__file__).resolve().parents[1]


def cmd_up(args: argparse.Namespace) -> int:
    from infra.supervisor import AlreadyRunning, Supervisor

    settings = PlatformSettings()
    services = None
    if args.only:
        wanted = {n.strip() for n in args.only.split(",") if n.strip()}
        services = tuple(s for s in ports.implemented_services() if s.name in wanted)
        unknown = wanted - {s.name for s in services}
        if unknown:
            print(f"[hats] not implemented services: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
    try:
        return asyncio.run(Supervisor(settings, services).run())
    except AlreadyRunning as exc:
        print(f"[hats] {exc}", file=sys.stderr)
        return 1


def cmd_down(_: argparse.Namespace) -> int:
    from infra.supervisor import STOP_TIMEOUT_S, read_holder

    settings = PlatformSettings()
    pid = read_holder(settings.hats_var_dir)
    if pid is None:
        print("[hats] not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S * 3
    while time.monotonic() < deadline and read_holder(settings.hats_var_dir) is not None:
        time.sleep(0.1)
    if read_holder(settings.hats_var_dir) is not None:
        print(f"[hats] supervisor pid {pid} is still stopping", file=sys.stderr)
        return 1
    print("[hats] stopped")
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    from infra.supervisor import read_holder

    settings = PlatformSettings()
    pid = read_holder(settings.hats_var_dir)
    print(f"supervisor: {'running, pid ' + str(pid) if pid else 'not running'}")
    state_path = settings.hats_var_dir / "supervisor.json"
    state = json.loads(state_path.read_text()) if pid and state_path.exists() else {"services": {}}
    if pid:
        print(f"kafka: {state.get('kafka')}   postgres: {state.get('database')}")
        broker = state.get("broker")
        if broker:
            memory = f", {broker['memory']}" if broker.get("memory") else ""
            print(
                f"embedded broker: pid {broker.get('pid') or '-'}, restarts {broker['restarts']}, "
                f"{broker['status']}{memory}"
            )
    print(f"{'service':<22}{'port':>6}  {'pid':>7}  {'restarts':>8}  readiness")
    with httpx.Client(timeout=2.0) as http:
        for service in ports.implemented_services():
            port = settings.port_of(service.name)
            info = state["services"].get(service.name, {})
            try:
                body = http.get(f"http://127.0.0.1:{port}/readyz").json()
                checks = ", ".join(
                    f"{k}={'ok' if v['ok'] else v.get('detail', 'down')}" for k, v in body.get("checks", {}).items()
                )
                ready = f"{body['status']} ({checks})" if checks else body["status"]
            except httpx.HTTPError:
                ready = "not answering"
            print(
                f"{service.name:<22}{port:>6}  {info.get('pid') or '-'!s:>7}  {info.get('restarts', '-')!s:>8}  {ready}"
            )
    return 0


def cmd_ports(_: argparse.Namespace) -> int:
    settings = PlatformSettings()
    print(f"{'group':<11}{'service':<22}{'port':>6}  {'state':<10}{'holder / job'}")
    rows: list[tuple[str, str, int, ports.Service | None]] = [
        (s.group.value, s.name, p, s) for s in ports.SERVICES + ports.INFRASTRUCTURE for p in ports.all_ports(s)
    ]
    rows += [("reserved", "-", p, None) for p in sorted(ports.RESERVED_PORTS)]
    for group, name, port, service in sorted(rows, key=lambda r: r[2]):
        live = port + settings.hats_port_offset
        listening = is_listening(live)
        holder = port_holder(live) if listening else None
        state = "listening" if listening else "free"
        note = holder or (service.job if service else "must stay free")
        if service is not None and service.group is not ports.Group.INFRA and not service.implemented:
            note = f"(not built yet) {note}"
        print(f"{group:<11}{name:<22}{live:>6}  {state:<10}{note}")
    return 0


def cmd_contract(args: argparse.Namespace) -> int:
    from shared.kit import meshdoc
    from shared.kit.service import implemented_definitions, load_definition

    definitions = implemented_definitions()
    if args.action == "show":
        for definition in definitions:
            contract = definition.effective_contract
            print(f"{definition.name} (:{definition.entry.port})")
            for event in contract.produces:
                print(f"  produces  {event.TOPIC:<24} {event.__name__}")
            for c in contract.consumes:
                print(f"  consumes  {c.topic:<24} {c.event.__name__} as {c.group or '(every instance)'}: {c.purpose}")
            for name in contract.calls:
                print(f"  calls     {name}")
        return 0
    if args.action == "asyncapi":
        if not args.service:
            print("[hats] which service? `hats contract asyncapi data-bridge`", file=sys.stderr)
            return 2
        from shared.kit.asyncapi import asyncapi_document

        print(json.dumps(asyncapi_document(load_definition(ports.service(args.service))), indent=2))
        return 0
    root = REPOSITORY
    if args.action == "docs":
        changed = meshdoc.write(root, definitions)
        print(f"[hats] {'rewrote ' + ', '.join(map(str, changed)) if changed else 'docs are current'}")
        return 0
    stale = meshdoc.stale(root, definitions)  # check
    if stale:
        print(f"[hats] out of date: {', '.join(map(str, stale))}; run `hats contract docs`", file=sys.stderr)
        return 1
    print("[hats] the generated docs match the contracts")
    return 0


def cmd_new_service(args: argparse.Namespace) -> int:
    from infra.scaffold import ScaffoldError, new_service

    try:
        written = new_service(args.name, REPOSITORY)
    except ScaffoldError as exc:
        print(f"[hats] {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"  wrote {path}")
    print(f"[hats] {args.name} is declared; next: its contract and start() in service.py, its settings in README.md,")
    print("        an area in shared.ports.ROUTES if the gateway should route to it, then `hats contract docs`")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from shared.kit.runner import serve

    return serve(args.service)


def cmd_import_bars(args: argparse.Namespace) -> int:
    from infra.import_bars import cmd_import_bars as run

    return run(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hats", description="Hybrid AI Trading System")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start infrastructure and every implemented service (Ctrl+C stops)")
    up.add_argument("--only", help="comma-separated services to start (default: all implemented)")
    up.set_defaults(fn=cmd_up)
    sub.add_parser("down", help="stop a running `hats up`").set_defaults(fn=cmd_down)
    sub.add_parser("status", help="services, pids, restarts and readiness").set_defaults(fn=cmd_status)
    sub.add_parser("ports", help="the port matrix with live state").set_defaults(fn=cmd_ports)
    contract = sub.add_parser("contract", help="what the services produce, consume and call")
    contract.add_argument("action", choices=("show", "docs", "check", "asyncapi"), nargs="?", default="show")
    contract.add_argument("service", nargs="?", help="for asyncapi: the service")
    contract.set_defaults(fn=cmd_contract)
    scaffold = sub.add_parser("new-service", help="the files of a new service of the port matrix")
    scaffold.add_argument("name")
    scaffold.set_defaults(fn=cmd_new_service)
    serve = sub.add_parser("serve", help="run one service in this process")
    serve.add_argument("service")
    serve.set_defaults(fn=cmd_serve)
    bars = sub.add_parser("import-bars", help="import an MT5 bar export (CSV) into the market store")
    bars.add_argument("file", type=Path)
    bars.add_argument("--symbol", required=True, help="the bars' symbol, e.g. EURUSD")
    bars.add_argument("--timeframe", required=True, choices=("M1", "M5", "M15", "H1"))
    bars.add_argument("--server", help="the gateway (default: this host's, HATS_PORT_OFFSET applied)")
    bars.add_argument(
        "--client-id",
        default=os.environ.get("DATA_COLLECTOR_CLIENT_ID"),
        help="default: DATA_COLLECTOR_CLIENT_ID, else the data-collector client in var/credentials.json",
    )
    bars.add_argument("--client-secret", default=os.environ.get("DATA_COLLECTOR_CLIENT_SECRET"))
    bars.add_argument("--batch", type=int, default=5000, help="bars per request (default 5000)")
    bars.set_defaults(fn=cmd_import_bars)
    args = parser.parse_args(argv)
    try:
        code = args.fn(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`hats ports | head`): stop quietly, as Unix tools do. Point
        # stdout at /dev/null so the interpreter's own flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
