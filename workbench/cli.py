"""The ``workbench`` command line: local Kafka, simulator, live pipeline, benchmarks."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from workbench import __version__
from workbench.config import BACKENDS, TOPIC_READINGS, ConfigError, Settings
from workbench.security.tokens import ROLES
from workbench.stopping import stop_signals
from workbench.store.db import NotFound
from workbench.streams.clientlog import summarise_client_logs
from workbench.voila import DEFAULT_PORT as DEFAULT_DASHBOARD_PORT
from workbench.voila import DashboardError

if TYPE_CHECKING:  # imported by the commands, once --profiles has been applied
    from workbench.recordings.convert import RecordingFormat


def _positive(kind: type, what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r}: it must be greater than 0")
        return value

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: it must be between 0 and 1")
    return value


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number from 1 to 64, or auto")
    return n


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port: give a number 1–65535")
    return port


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(bootstrap_servers=args.bootstrap_servers, backend=args.client)


def cmd_kafka(args: argparse.Namespace) -> int:
    """workbench kafka start|stop|status|fetch."""
    from workbench.broker import LocalBroker, fetch_jars

    settings = _settings(args)
    if not settings.uses_local_broker and args.action != "status":
        _progress(
            f"a cluster is configured ({settings.bootstrap}); the local broker is not used, "
            "so there is nothing to start or stop"
        )
        return 0
    broker = LocalBroker(settings, progress=_progress)
    if args.action == "fetch":
        fetch_jars(settings, progress=_progress)
    elif args.action == "start":
        broker.start()
    elif args.action == "stop":
        broker.stop()
    else:
        status = broker.status()
        print(json.dumps(status.as_dict(), indent=2) if args.json else status.describe())
        return 0 if status.running else 1
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    """workbench topics: create the workbench topics (idempotent)."""
    from workbench.streams.topics import ensure_topics

    created = ensure_topics(_settings(args))
    _progress(f"created {', '.join(created)}" if created else "all topics exist")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """workbench simulate: publish simulated readings (and ground truth) until done or Ctrl-C."""
    from workbench.simulator.run import run_simulator
    from workbench.streams.topics import ensure_topics_when_reachable

    settings = _settings(args)
    with stop_signals() as stop:
        if ensure_topics_when_reachable(settings, stop, _progress) is None:
            _progress(
                f"stopped: the broker at {settings.bootstrap} never answered, so no readings were "
                "made · 0 not delivered"
            )
            return 1
        stats = run_simulator(
            settings,
            devices=args.devices,
            rate=args.rate,
            duration_s=args.duration,
            count=args.count,
            seed=args.seed,
            progress=_progress,
            stop_event=stop,
            **({} if args.anomaly_rate is None else {"anomaly_rate": args.anomaly_rate}),
        )
    return 0 if not stats.undelivered else 1


def _delimiter(text: str) -> str:
    delimiter = "\t" if text in ("tab", "\\t") else text
    if len(delimiter) != 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give one character (or tab)")
    return delimiter


def _recording_format(args: argparse.Namespace) -> RecordingFormat:
    from workbench.profiles.active import active
    from workbench.recordings.convert import RecordingFormat

    profiles = active().profiles
    time_column = args.time_column or profiles.mapping.time
    device_column = getattr(args, "device_column", None)
    return RecordingFormat(profiles, args.type, time_column, device_column, args.delimiter)


def cmd_replay(args: argparse.Namespace) -> int:
    """workbench replay PATH: publish a recording with its own times until done or Ctrl-C."""
    from workbench.recordings.publish import main as replay_main

    speed = math.inf if args.as_fast_as_possible else args.speed
    form = _recording_format(args)
    return replay_main(
        _settings(args), args.path, form, speed, args.shift_to_now, args.topic, _progress
    )


def cmd_worker(args: argparse.Namespace) -> int:
    """workbench worker: one detection worker; start several to share the partitions."""
    from workbench.live import run_worker_command
    from workbench.streams.worker import WorkerConfig, WorkerTopics, default_worker_id

    config = WorkerConfig(
        group_id=args.group,
        worker_id=args.id or default_worker_id(),
        start=args.start,
        topics=WorkerTopics.prefixed(args.topic_prefix),
    )
    return run_worker_command(_settings(args), config)


def cmd_up(args: argparse.Namespace) -> int:
    """workbench up: local Kafka, topics, simulator and pipeline, with live figures."""
    from workbench.live import run_live
    from workbench.security.tls import tls_pair

    return run_live(
        _settings(args),
        workers=args.workers,
        devices=args.devices,
        rate=args.rate,
        anomaly_rate=args.anomaly_rate,
        seed=args.seed,
        group_id=args.group,
        dashboard_port=None if args.no_dashboard else args.dashboard_port,
        tls=tls_pair(args.certfile, args.keyfile),
    )


def cmd_dashboard(args: argparse.Namespace) -> int:
    """workbench dashboard: serve the Voilà dashboard alone, against the configured cluster."""
    from workbench.broker import local_broker_for
    from workbench.security.tls import tls_pair
    from workbench.streams.topics import ensure_topics
    from workbench.voila import dashboard_url, link_token, start_dashboard, stop_dashboard

    settings = _settings(args)
    with (
        stop_signals() as stop,
        local_broker_for(settings, progress=_progress),
        link_token(settings, "workbench dashboard") as token,
    ):
        ensure_topics(settings)
        log = settings.data_dir / "voila.log"
        tls = tls_pair(args.certfile, args.keyfile)
        proc = start_dashboard(settings, port=args.port, ip=args.ip, log=log, tls=tls)
        link = dashboard_url(args.ip, args.port, token, tls=tls is not None)
        _progress(
            f"dashboard: {link}  (log: {log}; Ctrl-C stops)\n"
            "  others need a token of their own: workbench token create NAME --role viewer"
        )
        try:
            while not stop.wait(0.5):
                if proc.poll() is not None:
                    _progress(f"Voilà exited with code {proc.returncode}; see {log}")
                    return 1
        finally:
            stop_dashboard(proc)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """workbench serve: the live API (WebSocket + REST) over the detection workers' topics."""
    from workbench.server.app import ServeConfig
    from workbench.server.run import run_server
    from workbench.streams.worker import WorkerTopics

    config = ServeConfig.from_env(
        host=args.host,
        port=args.port,
        certfile=args.certfile,
        keyfile=args.keyfile,
        group_id=args.group,
        topics=WorkerTopics.prefixed(args.topic_prefix),
    )
    settings = Settings.from_env(
        bootstrap_servers=args.bootstrap_servers, backend=args.client, database_url=args.database
    )
    return run_server(settings, config)


def cmd_token(args: argparse.Namespace) -> int:
    """workbench token create|list|revoke: API tokens in the workbench's store."""
    import getpass

    from workbench.security.manage import create_token, revoke_token
    from workbench.security.tokens import TokenStore
    from workbench.store.db import open_database

    settings = Settings.from_env(database_url=args.database)
    actor = f"{getpass.getuser()} (command line)"
    if args.action == "create":
        if not args.name:
            raise ValueError("token create needs a NAME (who or what will use the token)")
        token, record = create_token(settings, args.name, args.role, actor)
        _progress(
            f"token {record['token_id']} for {record['name']} ({record['role']}); "
            "shown this once, keep it safe:"
        )
        print(token)
    elif args.action == "revoke":
        if not args.name:
            raise ValueError("token revoke needs the token's id (see `workbench token list`)")
        after = revoke_token(settings, args.name, actor)
        _progress(f"token {args.name} ({after['name']}) revoked")
    else:
        items = TokenStore(open_database(settings.database)).list()
        if args.json:
            print(json.dumps(items, indent=2))
        for t in [] if args.json else items:
            state = f"revoked {t['revoked_at']}" if t["revoked_at"] else "active"
            print(
                f"{t['token_id']}  {t['role']:<8}  {t['name']:<24}  created {t['created_at']}"
                f"  {state}"
            )
    return 0


def _assignment(text: str) -> tuple[str, str, object]:
    """'section.name=value' → (section, name, value); the value as JSON when it parses."""
    key, sep, raw = text.partition("=")
    section, dot, name = key.partition(".")
    if not sep or not dot or not name:
        raise argparse.ArgumentTypeError(
            f"{text!r}: write SECTION.NAME=VALUE (detector.window_size=200, severity.high=0.9)"
        )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return section, name, value


def cmd_settings(args: argparse.Namespace) -> int:
    """workbench settings show|set: the detector settings every worker applies."""
    import getpass

    import msgspec

    from workbench.broker import local_broker_for
    from workbench.streams.settings_topic import change_settings, defaults, latest_version
    from workbench.streams.worker import WorkerTopics

    settings = Settings.from_env(
        bootstrap_servers=args.bootstrap_servers, backend=args.client, database_url=args.database
    )
    topic = WorkerTopics.prefixed(args.topic_prefix).settings
    with local_broker_for(settings, progress=_progress):
        WorkerTopics.prefixed(args.topic_prefix).ensure(settings)
        if args.action == "show":
            version = latest_version(settings, topic)
            shown = (
                {"version": 0, "settings": defaults()}
                if version is None
                else msgspec.to_builtins(version)
            )
            print(json.dumps(shown, indent=2))
            return 0
        body: dict[str, dict[str, object]] = {}
        for section, name, value in args.assignments:
            body.setdefault(section, {})[name] = value
        actor = f"{getpass.getuser()} (command line)"
        version = change_settings(settings, body, actor, "admin", topic)
        if version is None:
            _progress("nothing changed: those are the settings in force")
        else:
            _progress(f"settings v{version.version} published: {json.dumps(version.new)}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """workbench bench ingest: throughput and latency against the real local Kafka."""
    from workbench.bench.ingest import format_table, run_ingest_bench, sample_payloads
    from workbench.broker import local_broker_for

    settings = _settings(args)
    say = (lambda _m: None) if args.json else _progress
    with local_broker_for(settings, progress=say):
        figures = run_ingest_bench(
            settings,
            sample_payloads(devices=1000, count=20_000, seed=1),
            backends=args.backends,
            count=args.count,
            rates=args.rates,
            seconds=args.seconds,
            progress=say,
        )
    print(json.dumps(figures, indent=2) if args.json else format_table(figures))
    return 0


def cmd_bench_dashboard(args: argparse.Namespace) -> int:
    """workbench bench dashboard: produce → on screen latency and slider round trips."""
    from workbench.bench.dashboard import format_table, run_dashboard_bench
    from workbench.broker import local_broker_for
    from workbench.streams.topics import ensure_topics

    settings = _settings(args)
    say = (lambda _m: None) if args.json else _progress
    with local_broker_for(settings, progress=say):
        ensure_topics(settings)
        figures = run_dashboard_bench(settings, args.rates, args.seconds, progress=say)
    print(json.dumps(figures, indent=2) if args.json else format_table(figures))
    return 0


def cmd_bench_serve(args: argparse.Namespace) -> int:
    """workbench bench serve: WebSocket delivery while the pipeline ingests at a given rate."""
    from workbench.bench.serve import format_table, run_serve_bench
    from workbench.broker import local_broker_for

    settings = _settings(args)
    say = (lambda _m: None) if args.json else _progress
    with local_broker_for(settings, progress=say):
        figures = run_serve_bench(
            settings,
            clients=args.clients,
            rate=args.rate,
            devices=args.devices,
            seconds=args.seconds,
            warmup_s=args.warmup,
            progress=say,
        )
    print(json.dumps(figures, indent=2) if args.json else format_table(figures))
    return 0


def cmd_bench_fuzz(args: argparse.Namespace) -> int:
    """workbench bench fuzz: hostile records through the real pipeline; 1 if any was lost,
    got through, or the pipeline stopped."""
    from workbench.bench.fuzz import format_report, run_fuzz
    from workbench.broker import local_broker_for

    settings = _settings(args)
    say = (lambda _m: None) if args.json else _progress
    with local_broker_for(settings, progress=say):
        figures = run_fuzz(settings, args.count, args.valid_share, seed=args.seed, progress=say)
    print(json.dumps(figures, indent=2) if args.json else format_report(figures))
    return 0 if figures["ok"] else 1


def cmd_bench_scale(args: argparse.Namespace) -> int:
    """workbench bench scale: readings/s with full detection per worker count, latency; 1 when
    a target is missed."""
    from workbench.bench.scale import format_table, run_scale_bench
    from workbench.broker import local_broker_for

    settings = _settings(args)
    say = (lambda _m: None) if args.json else _progress
    with local_broker_for(settings, progress=say):
        figures = run_scale_bench(
            settings,
            workers=args.workers,
            rates=args.rates,
            readings=args.readings,
            devices=args.devices,
            seconds=args.seconds,
            progress=say,
        )
    print(json.dumps(figures, indent=2) if args.json else format_table(figures))
    return 0 if figures["ok"] else 1


def cmd_bench_viewers(args: argparse.Namespace) -> int:
    """workbench bench viewers: what open dashboard pages cost; 1 when a target is missed."""
    from workbench.bench.viewers import format_report, run_viewers_bench
    from workbench.broker import local_broker_for

    settings = _settings(args)
    say = (lambda _m: None) if args.json else _progress
    with local_broker_for(settings, progress=say):
        figures = run_viewers_bench(settings, args.viewers, args.rate, args.seconds, say)
    print(json.dumps(figures, indent=2) if args.json else format_report(figures))
    return 0 if figures["ok"] else 1


def cmd_eval_nab(args: argparse.Namespace) -> int:
    """workbench eval nab: the live detection stage over a NAB-format corpus, NAB-scored."""
    from workbench.evaluation.nab import main as nab_main

    if not args.data.is_dir():
        raise ValueError(f"--data {args.data}: no such directory (want DIR/<category>/<file>.csv)")
    return nab_main(args.data, args.out, args.labels, as_json=args.json)


def cmd_eval_simulator(args: argparse.Namespace) -> int:
    """workbench eval simulator: simulator → Kafka → pipeline, alerts scored against the truth."""
    from workbench.broker import local_broker_for
    from workbench.evaluation.simulator_eval import evaluate_simulator, format_scores
    from workbench.models.ensemble import EnsembleDetector

    settings = _settings(args)
    say = (lambda _m: None) if args.json else _progress
    with local_broker_for(settings, progress=say):
        scores = evaluate_simulator(
            settings,
            EnsembleDetector(),
            devices=args.devices,
            rate=args.rate,
            duration_s=args.duration,
            seed=args.seed,
            anomaly_rate=args.anomaly_rate,
            progress=say,
        )
    print(json.dumps(scores.as_dict(), indent=2) if args.json else format_scores(scores))
    return 0


def cmd_eval_labelled(args: argparse.Namespace) -> int:
    """workbench eval labelled: the live detection stage on labelled recordings, scored."""
    from workbench.broker import local_broker_for
    from workbench.evaluation.labelled import main as labelled_main

    form = _recording_format(args)
    if not args.through_kafka:
        return labelled_main(args.data, form, args.label_column, args.out, None, args.json)
    settings = _settings(args)
    with local_broker_for(settings, progress=(lambda _m: None) if args.json else _progress):
        return labelled_main(args.data, form, args.label_column, args.out, settings, args.json)


def cmd_lab(args: argparse.Namespace) -> int:
    """workbench lab: JupyterLab on the notebooks, kernels on the workbench's cluster."""
    from workbench.lab import run_lab

    return run_lab(_settings(args), port=args.port, open_browser=not args.no_browser)


def cmd_bench_detect(args: argparse.Namespace) -> int:
    """workbench bench detect: readings/s per detector and batch size; memory at 10,000 devices."""
    from workbench.bench.detect import format_table, run_detect_bench

    say = (lambda _m: None) if args.json else _progress
    figures = run_detect_bench(devices=args.devices, progress=say)
    print(json.dumps(figures, indent=2) if args.json else format_table(figures))
    return 0


def cmd_profiles_check(args: argparse.Namespace) -> int:
    """workbench profiles check FILE: every problem of a profile file, with its line."""
    from workbench.profiles.load import ProfileError, load_profiles

    try:
        profiles = load_profiles(args.file)
    except ProfileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        _progress(f"{args.file}: {len(exc.problems)} problem(s)")
        return 2
    summary = {
        t.name: {
            "interval_s": t.interval_s,
            "extra": t.extra,
            "metrics": {m.name: f"{m.kind}, {m.min:g}–{m.max:g} {m.unit}" for m in t.metrics},
        }
        for t in profiles.types
    }
    if args.json:
        print(json.dumps({"file": str(args.file), "types": summary}, indent=2))
    else:
        for name, spec in summary.items():
            metrics = "; ".join(f"{m} ({d})" for m, d in spec["metrics"].items())
            every = f"every {spec['interval_s']:g} s"
            print(f"{name}: {every}, undeclared fields {spec['extra']}d: {metrics}")
        _progress(f"{args.file}: ok, {len(summary)} device type(s)")
    return 0


def cmd_profiles_infer(args: argparse.Namespace) -> int:
    """workbench profiles infer --topic T: sample a topic, propose a profile file to review."""
    import time

    from workbench.broker import local_broker_for
    from workbench.profiles.infer import infer_profiles, sample_topic

    if args.out is not None and args.out.exists():
        raise ValueError(
            f"--out {args.out} exists (it may hold your edits): remove it or pick another"
        )
    settings = _settings(args)
    with local_broker_for(settings, progress=_progress):
        started = time.monotonic()
        samples, keys = sample_topic(settings, args.topic, args.samples)
        took = time.monotonic() - started
    _progress(f"sampled {len(samples):,} readings from {args.topic} in {took:.1f} s")
    proposal = infer_profiles(samples, args.topic, keys)
    if args.out is None:
        sys.stdout.write(proposal.toml())
        return 0
    args.out.write_text(proposal.toml(), encoding="utf-8")
    types = ", ".join(f"{t.name} ({len(t.metrics)} metric(s))" for t in proposal.profiles.types)
    _progress(
        f"wrote {args.out}: {types}; review its guesses, then: workbench profiles check {args.out}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and documentation)."""
    cluster = argparse.ArgumentParser(add_help=False)
    cluster.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT[,…]",
        help="use this Kafka cluster instead of the local broker (env KAFKA_BOOTSTRAP_SERVERS)",
    )
    cluster.add_argument(
        "--client",
        choices=BACKENDS,
        help="Kafka client backend (env WORKBENCH_KAFKA_CLIENT; default kafka-python)",
    )
    common = argparse.ArgumentParser(add_help=False, parents=[cluster])
    common.add_argument(
        "--profiles",
        type=Path,
        metavar="FILE",
        help="device profiles, TOML (env WORKBENCH_PROFILES; default: the simulator's fleet)",
    )
    prefix = argparse.ArgumentParser(add_help=False)
    prefix.add_argument(
        "--topic-prefix",
        default=os.environ.get("WORKBENCH_TOPIC_PREFIX", ""),
        metavar="P",
        help="read and write P + the usual topic names (several workbenches on one cluster; "
        "env WORKBENCH_TOPIC_PREFIX)",
    )
    database_help = (
        "alert/token store: postgresql://… (env WORKBENCH_DATABASE_URL); "
        "default SQLite in the data directory"
    )
    parser = argparse.ArgumentParser(
        prog="workbench", description="IoT Live Workbench: live IoT analytics on Kafka + Streamz."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("kafka", parents=[common], help="the local Apache Kafka broker")
    p.add_argument("action", choices=("start", "stop", "status", "fetch"))
    p.add_argument("--json", action="store_true", help="status as JSON")
    p.set_defaults(func=cmd_kafka)

    p = sub.add_parser("topics", parents=[common], help="create the workbench topics")
    p.set_defaults(func=cmd_topics)

    def fleet_options(p: argparse.ArgumentParser, rate: float, devices: int) -> None:
        p.add_argument("--devices", type=_positive(int, "whole number"), default=devices)
        p.add_argument(
            "--rate",
            type=_positive(float, "number"),
            default=rate,
            help=f"readings/s for the whole fleet (default {rate:,.0f})",
        )
        p.add_argument(
            "--anomaly-rate",
            type=_fraction,
            default=None,
            help="chance per device per minute that an anomaly starts (0–1)",
        )
        p.add_argument("--seed", type=int, default=None, help="make the run reproducible")

    p = sub.add_parser("simulate", parents=[common], help="publish simulated device readings")
    fleet_options(p, rate=1000, devices=100)
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--duration", type=_positive(float, "number"), help="seconds to run")
    stop.add_argument("--count", type=_positive(int, "whole number"), help="readings to send")
    p.set_defaults(func=cmd_simulate)

    recording = argparse.ArgumentParser(add_help=False)
    recording.add_argument(
        "--type", required=True, help="the device type (of the profiles) every row is a reading of"
    )
    recording.add_argument(
        "--delimiter", type=_delimiter, default=",", help="CSV column separator (default ,)"
    )

    p = sub.add_parser(
        "replay", parents=[common, recording], help="publish a recording with its own times"
    )
    p.add_argument("path", type=Path, help="a CSV or JSON-lines file, or a directory of them")
    p.add_argument(
        "--time-column", help="the column of each row's time (default: the profile's time field)"
    )
    p.add_argument("--device-column", help="the column of the device id (default: file name)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed",
        type=_positive(float, "number"),
        default=1.0,
        help="recording seconds per second (default 1: the recording's own pace)",
    )
    pace.add_argument("--as-fast-as-possible", action="store_true", help="no pacing")
    p.add_argument("--shift-to-now", action="store_true", help="move the times: first row is now")
    p.add_argument("--topic", default=TOPIC_READINGS, help="(default %(default)s)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("worker", parents=[common, prefix], help="one detection worker of a group")
    p.add_argument(
        "--group", default="workbench-workers", help="consumer group (default %(default)s)"
    )
    p.add_argument("--id", help="this worker's name in figures and checkpoints (default host-pid)")
    p.add_argument(
        "--start",
        choices=("earliest", "latest"),
        default="latest",
        help="where a group with no committed offsets starts (default %(default)s)",
    )
    p.set_defaults(func=cmd_worker)

    tls = argparse.ArgumentParser(add_help=False)
    tls.add_argument("--certfile", type=Path, help="TLS certificate, PEM (env WORKBENCH_TLS_CERT)")
    tls.add_argument("--keyfile", type=Path, help="TLS private key, PEM (env WORKBENCH_TLS_KEY)")

    p = sub.add_parser("up", parents=[common, tls], help="start the whole live workbench")
    fleet_options(p, rate=1000, devices=200)
    p.add_argument("--group", default="workbench-up", help="consumer group (default %(default)s)")
    p.add_argument(
        "--dashboard-port",
        type=_port,
        default=DEFAULT_DASHBOARD_PORT,
        help="serve the Voilà dashboard on this port (default %(default)s)",
    )
    p.add_argument("--no-dashboard", action="store_true", help="terminal figures only")
    p.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N|auto",
        help="detection worker processes, or auto: 1 up to the CPU count, by lag and CPU "
        "(default %(default)s)",
    )
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("dashboard", parents=[common, tls], help="serve the live Voilà dashboard")
    p.add_argument(
        "--port", type=_port, default=DEFAULT_DASHBOARD_PORT, help="(default %(default)s)"
    )
    p.add_argument(
        "--ip", default="127.0.0.1", help="address to listen on (default %(default)s; 0.0.0.0: all)"
    )
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("lab", parents=[common], help="JupyterLab on the exploration notebooks")
    p.add_argument(
        "--port",
        type=_port,
        default=8888,
        help="port on 127.0.0.1 (default %(default)s, or the next free one)",
    )
    p.add_argument("--no-browser", action="store_true", help="print the link, open no browser")
    p.set_defaults(func=cmd_lab)
    p = sub.add_parser(
        "serve", parents=[common, tls, prefix], help="the live API: WebSocket and REST"
    )
    p.add_argument("--host", help="address to listen on (env WORKBENCH_SERVE_HOST; 127.0.0.1)")
    p.add_argument(
        "--port", type=int, help="port (env WORKBENCH_SERVE_PORT; default 8765; 0 picks one)"
    )
    p.add_argument("--database", metavar="URL", help=database_help)
    p.add_argument("--group", default="workbench-serve", help="consumer group (%(default)s)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("profiles", help="check device profile files, or draft one from a topic")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("check", help="every problem of a profile file, with its line")
    a.add_argument("file", type=Path, help="the profile file (TOML)")
    a.add_argument("--json", action="store_true", help="the checked profiles as JSON")
    a.set_defaults(func=cmd_profiles_check)
    a = actions.add_parser("infer", parents=[cluster], help="propose profiles from a topic")
    a.add_argument("--topic", required=True, help="the topic the fleet's readings are on")
    a.add_argument(
        "--samples",
        type=_positive(int, "whole number"),
        default=10_000,
        metavar="N",
        help="latest records to read (default 10,000)",
    )
    a.add_argument(
        "--out", type=Path, metavar="FILE", help="write the proposal here (default: stdout)"
    )
    a.set_defaults(func=cmd_profiles_infer)

    p = sub.add_parser(
        "settings", parents=[cluster, prefix], help="show or change the settings workers apply"
    )
    p.add_argument("action", choices=("show", "set"))
    p.add_argument(
        "assignments",
        nargs="*",
        type=_assignment,
        metavar="SECTION.NAME=VALUE",
        help="with set: e.g. detector.window_size=200 severity.high=0.9",
    )
    p.add_argument("--database", metavar="URL", help=database_help)
    p.set_defaults(func=cmd_settings)

    p = sub.add_parser("token", help="create, list or revoke API tokens")
    p.add_argument("action", choices=("create", "list", "revoke"))
    p.add_argument("name", nargs="?", help="create: who the token is for; revoke: its id")
    p.add_argument("--role", choices=ROLES, default="viewer", help="create: (default viewer)")
    p.add_argument("--database", metavar="URL", help=database_help)
    p.add_argument("--json", action="store_true", help="list as JSON")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("bench", help="benchmarks against the real local Kafka")
    bench = p.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    b = bench.add_parser("ingest", parents=[common], help="source + decode + validate")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument(
        "--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS), metavar="BACKEND"
    )
    b.add_argument("--count", type=_positive(int, "whole number"), default=500_000)
    b.add_argument(
        "--rates",
        nargs="+",
        type=_positive(float, "number"),
        default=[1_000, 10_000],
        help="offered rates for the latency phase, readings/s",
    )
    b.add_argument("--seconds", type=_positive(float, "number"), default=10.0)
    b.set_defaults(func=cmd_bench)
    b = bench.add_parser("detect", help="detectors and ensemble throughput, memory")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument(
        "--devices",
        type=_positive(int, "whole number"),
        default=10_000,
        help="simulated devices, each with its own detector state (default 10,000)",
    )
    b.set_defaults(func=cmd_bench_detect)
    b = bench.add_parser(
        "dashboard", parents=[common], help="dashboard freshness and slider round trips"
    )
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument(
        "--rates",
        nargs="+",
        type=_positive(float, "number"),
        default=[1_000, 10_000, 20_000],
        help="offered rates, readings/s (default 1000 10000 20000)",
    )
    b.add_argument(
        "--seconds", type=_positive(float, "number"), default=20.0, help="per rate (default 20)"
    )
    b.set_defaults(func=cmd_bench_dashboard)
    b = bench.add_parser("serve", parents=[common], help="WebSocket clients while ingesting")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--clients", type=_positive(int, "whole number"), default=100)
    b.add_argument(
        "--rate", type=_positive(float, "number"), default=10_000, help="readings/s ingested"
    )
    b.add_argument("--devices", type=_positive(int, "whole number"), default=2_000)
    b.add_argument(
        "--seconds", type=_positive(float, "number"), default=20.0, help="measured seconds"
    )
    b.add_argument(
        "--warmup", type=_positive(float, "number"), default=10.0, help="seconds before measuring"
    )
    b.set_defaults(func=cmd_bench_serve)
    b = bench.add_parser(
        "scale", parents=[common], help="readings/s with full detection per worker count"
    )
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument(
        "--workers", type=_positive(int, "whole number"), nargs="+", default=[1, 2], metavar="N"
    )
    b.add_argument(
        "--rates",
        type=_positive(float, "number"),
        nargs="*",
        default=[1_000, 10_000],
        metavar="R",
        help="offered readings/s for the latency runs (default 1000 10000; none: skip them)",
    )
    b.add_argument(
        "--readings",
        type=_positive(int, "whole number"),
        default=1_000_000,
        help="readings in the throughput topic",
    )
    b.add_argument("--devices", type=_positive(int, "whole number"), default=10_000)
    b.add_argument(
        "--seconds", type=_positive(float, "number"), default=20.0, help="per latency run"
    )
    b.set_defaults(func=cmd_bench_scale)

    b = bench.add_parser(
        "viewers", parents=[common], help="open dashboard pages: kernel CPU, pipeline p99"
    )
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--viewers", type=_positive(int, "whole number"), default=10)
    b.add_argument(
        "--rate", type=_positive(float, "number"), default=10_000, help="readings/s offered"
    )
    b.add_argument(
        "--seconds", type=_positive(float, "number"), default=30.0, help="measured, each way"
    )
    b.set_defaults(func=cmd_bench_viewers)

    b = bench.add_parser("fuzz", parents=[common], help="hostile records through the pipeline")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--count", type=_positive(int, "whole number"), default=100_000)
    b.add_argument(
        "--valid-share",
        type=_fraction,
        default=0.1,
        help="share of valid readings mixed in (0–1, default %(default)s)",
    )
    b.add_argument("--seed", type=int, default=1, help="the records' seed (default %(default)s)")
    b.set_defaults(func=cmd_bench_fuzz)

    p = sub.add_parser("eval", help="measure detection quality")
    evals = p.add_subparsers(dest="evaluation", required=True, metavar="EVALUATION")
    e = evals.add_parser("simulator", parents=[common], help="event-level P/R/F1 through Kafka")
    fleet_options(e, rate=100, devices=500)
    e.set_defaults(seed=1)
    e.add_argument(
        "--duration",
        type=_positive(float, "number"),
        default=1800.0,
        help="seconds of fleet life, replayed as fast as the pipeline takes them (default 1800)",
    )
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=cmd_eval_simulator)
    e = evals.add_parser("nab", help="NAB score of the live detection (one device per file)")
    e.add_argument("--data", type=Path, required=True, help="DIR/<category>/<file>.csv")
    e.add_argument(
        "--out", type=Path, required=True, help="where the scores and the drafted profiles go"
    )
    e.add_argument("--labels", type=Path, help="default: DIR/../labels/combined_windows.json")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=cmd_eval_nab)
    e = evals.add_parser(
        "labelled",
        parents=[common, recording],
        help="the live detection on labelled recordings: point-wise and event-level figures",
    )
    e.add_argument("--data", type=Path, required=True, help="a directory of recordings (or one)")
    e.add_argument("--time-column", required=True, help="the column of each row's time")
    e.add_argument("--label-column", required=True, help="the column of each row's label (0/1)")
    e.add_argument("--out", type=Path, required=True, help="where the per-row predictions go")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument(
        "--through-kafka",
        action="store_true",
        help="rows through a real topic and the live source (the local broker unless configured)",
    )
    e.set_defaults(func=cmd_eval_labelled)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``workbench`` console script."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    summarise_client_logs()
    args = build_parser().parse_args(argv)
    from workbench.broker import BrokerError

    try:
        if getattr(args, "profiles", None) is not None:
            from workbench.profiles.active import activate

            activate(args.profiles)
        # Commands that watch for a stop request take the signals over; for the others both
        # signals interrupt, as Ctrl-C does, and they clean up as they unwind.
        with stop_signals(interrupt=True):
            return args.func(args)
    except (ConfigError, BrokerError, DashboardError, ValueError, NotFound) as exc:
        print(f"workbench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
