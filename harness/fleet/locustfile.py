"""Locust entry point for the fleet. Only ever imported by a locust process: locust monkey-patches the
interpreter (gevent), so the harness runs it as a subprocess (``harness.fleet.locust_run``).

Two user classes, chosen on the locust command line:

- ``FleetShardUser``: one locust user stands for a shard of devices run by the harness's asyncio engine in
  a native thread (with the original epoll, beside gevent); every record the engine makes (discover,
  connect, subscribe, publish, receive, disconnect) is fired as a locust request event with its real
  response time, so locust's CSV/JSON, web UI and distributed master/workers all see the fleet.
- ``PahoPeerUser``: locust's own MQTT user (``locust.contrib.mqtt``, paho-mqtt), one device per user, with
  the same identities, topics, payloads and rate: the peer the benchmark compares the engine with.

Both also write the raw records (JSONL) to ``$HARNESS_FLEET_OUT`` so the harness counts loss and duplicates
across every worker with one ledger. The plan comes from ``$HARNESS_FLEET_PLAN``.
"""

from __future__ import annotations

import itertools
import os
import resource
import ssl
import time
from collections import deque
from pathlib import Path
from typing import Any

import gevent
from gevent import monkey
from locust import User, constant, constant_pacing, events, task
from locust.contrib.mqtt import MqttClient, MqttUser
from locust.env import Environment

from harness.fleet import payload as telemetry
from harness.fleet.engine import FleetEngine
from harness.fleet.plan import FleetPlan
from harness.fleet.sinks import JsonlSink
from harness.records import Measurement

PLAN_ENV = "HARNESS_FLEET_PLAN"
OUT_ENV = "HARNESS_FLEET_OUT"
SHARDS_ENV = "HARNESS_FLEET_SHARDS"
PER_WORKER_ENV = "HARNESS_FLEET_PER_WORKER"

_plan_cache: list[FleetPlan] = []
_local_users = itertools.count()
_sinks: list[JsonlSink] = []


def _plan() -> FleetPlan:
    if not _plan_cache:
        _plan_cache.append(FleetPlan.read(Path(os.environ[PLAN_ENV])))
    return _plan_cache[0]


def _out_dir() -> Path:
    out = Path(os.environ.get(OUT_ENV, "."))
    out.mkdir(parents=True, exist_ok=True)
    return out


def _claim(environment: Environment) -> int:
    """This user's global index: worker index x users per worker + its number inside this process."""
    worker = max(0, int(getattr(environment.runner, "worker_index", 0) or 0))
    per_worker = int(os.environ.get(PER_WORKER_ENV, "0") or 0)
    return worker * per_worker + next(_local_users)


def _fire(environment: Environment, m: Measurement) -> None:
    request: Any = environment.events.request  # locust's EventHook is untyped
    request.fire(
        request_type=m.request_type,
        name=m.name,
        response_time=m.response_time,
        response_length=m.response_length,
        exception=m.exception,
        context=m.context,
    )


class FleetShardUser(User):
    """A shard of the fleet on the harness's engine; the task only forwards records to locust."""

    wait_time = constant(0.2)

    def on_start(self) -> None:
        plan = _plan()
        shards = int(os.environ.get(SHARDS_ENV, "1"))
        self.shard = _claim(self.environment)
        self._queue: deque[Measurement] = deque()
        self._thread_done = True
        if self.shard >= shards:  # locust re-dispatched users after a worker left: nothing to run
            return
        self._jsonl = JsonlSink(_out_dir() / f"shard-{self.shard:03d}.jsonl")
        _sinks.append(self._jsonl)
        self.engine = FleetEngine(plan.shard(self.shard, shards), [self._queue.append, self._jsonl])
        self._thread_done = False
        self._error: list[str] = []
        start_new_thread = monkey.get_original("_thread", "start_new_thread")
        start_new_thread(self._run_engine, ())

    def _run_engine(self) -> None:
        """A native thread with the original epoll: the engine's sockets never touch gevent's hub."""
        epoll_selector = monkey.get_original("selectors", "EpollSelector")
        try:
            report = self.engine.run_sync(selector=epoll_selector())
            self._queue.append(
                Measurement(
                    "FLEET",
                    "engine",
                    0.0,
                    0,
                    None,
                    {"shard": self.shard, "cpu_s": report.cpu_s, "rss_mb": report.rss_mb},
                )
            )
        except Exception as exc:  # reported to locust as a failed request, the run goes on
            self._queue.append(
                Measurement("FLEET", "engine", 0.0, 0, f"{type(exc).__name__}: {exc}", {"shard": self.shard})
            )
        finally:
            self._thread_done = True

    @task
    def forward(self) -> None:
        q = self._queue
        while q:
            _fire(self.environment, q.popleft())

    def on_stop(self) -> None:
        if not self._thread_done:
            self.engine.stop()
            deadline = time.monotonic() + 30
            while not self._thread_done and time.monotonic() < deadline:
                gevent.sleep(0.1)
        self.forward()


class _TimedMqttClient(MqttClient):
    """locust's paho client, with the connect time measured (locust.contrib reports connect as 0 ms)."""

    connect_started = 0.0

    def _on_connect_cb(self, client: Any, userdata: Any, flags: Any, rc: Any) -> None:
        elapsed = (time.perf_counter() - self.connect_started) * 1000
        ok = rc == 0
        request: Any = self.environment.events.request
        request.fire(
            request_type="MQTT",
            name="connect",
            response_time=elapsed,
            response_length=0,
            exception=None if ok else Exception(str(rc)),
            context={"client_id": self.client_id},
        )
        user = userdata
        if isinstance(user, PahoPeerUser):
            user.connected(elapsed, None if ok else str(rc))

    def _on_publish_cb(self, client: Any, userdata: Any, mid: int) -> None:
        """paho calls this when a QoS 0 message is written or a QoS 1 message is acknowledged."""
        super()._on_publish_cb(client, userdata, mid)
        if isinstance(userdata, PahoPeerUser):
            userdata.published(mid)


def _peer_rate() -> float:
    try:
        return max(_plan().config.rate, 1e-3)
    except KeyError:  # imported without a plan (e.g. locust --list)
        return 1.0


class PahoPeerUser(MqttUser):
    """The peer: one device per locust user on locust's paho MQTT user, same plan as the engine."""

    client_cls = _TimedMqttClient
    use_loop_selectors = True  # locust's advice for more than ~340 connections per process
    wait_time = constant_pacing(1.0 / _peer_rate())

    def __init__(self, environment: Environment) -> None:
        plan = _plan()
        self.plan = plan
        index = _claim(environment)
        self.spec = plan.devices[index % len(plan.devices)]
        broker = plan.broker
        if broker is None:
            raise RuntimeError(
                "the paho peer connects straight to the broker: the plan needs a broker endpoint"
            )
        self.host, self.port = broker.host, broker.port
        self.client_id = self.spec.thing  # type: ignore[assignment]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata=broker.ca_pem)
        ctx.load_cert_chain(self.spec.cert_path, self.spec.key_path)
        self.tls_context = ctx  # type: ignore[assignment]
        self.seq = 0
        self.is_up = False
        self._pending: dict[int, tuple[float, dict[str, Any], int]] = {}
        self._early: set[int] = set()
        if not _sinks:
            _sinks.append(JsonlSink(_out_dir() / f"peer-{os.getpid()}.jsonl"))
        self.sink = _sinks[0]
        started = time.perf_counter()
        super().__init__(environment)
        assert isinstance(self.client, _TimedMqttClient)
        self.client.connect_started = started
        self.client.user_data_set(self)
        self.client.on_message = self._on_message

    def connected(self, elapsed_ms: float, error: str | None) -> None:
        self.sink(
            Measurement(
                "MQTT",
                "connect",
                elapsed_ms,
                0,
                error,
                {"device": self.spec.thing, "engine": "paho", "attempt": 1, "t_ns": time.time_ns()},
            )
        )
        if error is None:
            self.is_up = True
            if self.spec.subscribe:
                self.client.subscribe(self.spec.subscribe, self.plan.config.qos)
                self.sink(
                    Measurement(
                        "MQTT",
                        "subscribe",
                        0.0,
                        0,
                        None,
                        {
                            "device": self.spec.thing,
                            "filter": self.spec.subscribe,
                            "qos": self.plan.config.qos,
                            "granted": self.plan.config.qos,
                            "t_ns": time.time_ns(),
                        },
                    )
                )

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        now_ns = time.time_ns()
        t = telemetry.decode(msg.payload)
        if t is None:
            return
        m = Measurement(
            "MQTT",
            "receive",
            (now_ns - t.sent_ns) / 1e6,
            len(msg.payload),
            None,
            {
                "device": self.spec.thing,
                "from": t.device,
                "seq": t.seq,
                "sent_ns": t.sent_ns,
                "qos": msg.qos,
                "topic": msg.topic,
            },
        )
        self.sink(m)
        _fire(self.environment, m)

    @task
    def publish(self) -> None:
        cfg = self.plan.config
        now = time.time()
        start = self.plan.publish_start_unix or 0.0
        if not self.is_up or now < start or now >= start + cfg.duration_s or cfg.rate <= 0:
            return
        sent_ns = time.time_ns()
        data = telemetry.encode(self.spec.thing, self.seq, sent_ns, cfg.payload_bytes)
        ctx = {
            "device": self.spec.thing,
            "seq": self.seq,
            "sent_ns": sent_ns,
            "qos": cfg.qos,
            "topic": self.spec.topic,
        }
        start = time.perf_counter()
        info = self.client.publish(self.spec.topic, data, cfg.qos)
        self._pending[info.mid] = (start, ctx, len(data))
        self.seq += 1
        if info.mid in self._early:  # paho reported it before publish() returned
            self._early.discard(info.mid)
            self.published(info.mid)

    def published(self, mid: int) -> None:
        """Same record as the engine's: at PUBACK for QoS 1, once written for QoS 0."""
        pending = self._pending.pop(mid, None)
        if pending is None:
            self._early.add(mid)
        else:
            start, ctx, size = pending
            self.sink(Measurement("MQTT", "publish", (time.perf_counter() - start) * 1000, size, None, ctx))

    def on_stop(self) -> None:
        for start, ctx, size in self._pending.values():  # never written or never acknowledged
            self.sink(
                Measurement(
                    "MQTT",
                    "publish",
                    (time.perf_counter() - start) * 1000,
                    size,
                    "no PUBACK before the end of the run",
                    ctx,
                )
            )
        self._pending.clear()
        self.client.disconnect()
        self.client.loop_stop()


def _close_sinks(environment: Environment, **kwargs: Any) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    for sink in _sinks:
        sink(
            Measurement(
                "FLEET",
                "generator",
                0.0,
                0,
                None,
                {
                    "pid": os.getpid(),
                    "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                    "rss_mb": round(usage.ru_maxrss / 1024.0, 1),
                },
            )
        )
        sink.close()


_quitting: Any = events.quitting
_quitting.add_listener(_close_sinks)
