"""The offline cloud's registry: things, groups, certificates, policies, cores, templates and tasks.

SQLite in WAL mode, every change inside one ``BEGIN IMMEDIATE`` transaction, so a crash or a SIGKILL in
the middle of a write leaves the previous committed state and never a corrupt file; several processes (a
provisioning CLI and a running discovery server) can share one registry.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.cloud.ca import iso
from harness.errors import InfraError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0

ThingKind = Literal["core", "device", "thing"]
CertStatus = Literal["ACTIVE", "INACTIVE", "REVOKED"]
CERT_STATUSES: tuple[CertStatus, ...] = ("ACTIVE", "INACTIVE", "REVOKED")
PolicyFormat = Literal["iot", "deviceGroups", "placeholder"]
TaskKind = Literal["core", "device", "deployment"]
TaskStatus = Literal["Waiting", "InProgress", "Success", "Failure"]
TASK_STATUSES: tuple[TaskStatus, ...] = ("Waiting", "InProgress", "Success", "Failure")

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS things(
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('core', 'device', 'thing')),
    thing_type TEXT,
    attributes TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS things_kind ON things(kind);
CREATE TABLE IF NOT EXISTS thing_groups(name TEXT PRIMARY KEY, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS thing_group_members(
    group_name TEXT NOT NULL REFERENCES thing_groups(name) ON DELETE CASCADE,
    thing_name TEXT NOT NULL REFERENCES things(name) ON DELETE CASCADE,
    PRIMARY KEY (group_name, thing_name));
CREATE INDEX IF NOT EXISTS thing_group_members_thing ON thing_group_members(thing_name);
CREATE TABLE IF NOT EXISTS certificates(
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('ACTIVE', 'INACTIVE', 'REVOKED')),
    pem TEXT NOT NULL,
    ca_id TEXT,
    serial TEXT NOT NULL,
    key_type TEXT,
    cert_path TEXT,
    key_path TEXT,
    not_after TEXT,
    revoked_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS thing_principals(
    thing_name TEXT NOT NULL REFERENCES things(name) ON DELETE CASCADE,
    certificate_id TEXT NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,
    PRIMARY KEY (thing_name, certificate_id));
CREATE INDEX IF NOT EXISTS thing_principals_cert ON thing_principals(certificate_id);
CREATE TABLE IF NOT EXISTS policies(
    name TEXT PRIMARY KEY,
    format TEXT NOT NULL CHECK (format IN ('iot', 'deviceGroups', 'placeholder')),
    document TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS policy_principals(
    policy_name TEXT NOT NULL REFERENCES policies(name) ON DELETE CASCADE,
    certificate_id TEXT NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,
    PRIMARY KEY (policy_name, certificate_id));
CREATE INDEX IF NOT EXISTS policy_principals_cert ON policy_principals(certificate_id);
CREATE TABLE IF NOT EXISTS cores(
    name TEXT PRIMARY KEY REFERENCES things(name) ON DELETE CASCADE,
    core_version TEXT NOT NULL,
    ca_pem TEXT NOT NULL,
    ca_cert_path TEXT NOT NULL,
    ca_key_path TEXT NOT NULL,
    config_path TEXT,
    client_policy TEXT REFERENCES policies(name) ON DELETE SET NULL,
    device_status TEXT NOT NULL DEFAULT 'UNKNOWN',
    installed_components TEXT NOT NULL DEFAULT '[]',
    desired_template TEXT,
    desired_version INTEGER,
    deployment_status TEXT,
    reported_template TEXT,
    reported_version INTEGER,
    reported_deployment_status TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS connectivity(
    core_name TEXT NOT NULL REFERENCES cores(name) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    id TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    metadata TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (core_name, position));
CREATE TABLE IF NOT EXISTS core_devices(
    core_name TEXT NOT NULL REFERENCES cores(name) ON DELETE CASCADE,
    device_name TEXT NOT NULL REFERENCES things(name) ON DELETE CASCADE,
    associated_at TEXT NOT NULL,
    PRIMARY KEY (core_name, device_name));
CREATE INDEX IF NOT EXISTS core_devices_device ON core_devices(device_name);
CREATE TABLE IF NOT EXISTS provisioning_templates(
    name TEXT PRIMARY KEY, body TEXT NOT NULL, source TEXT, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS component_templates(
    name TEXT NOT NULL, version INTEGER NOT NULL, components TEXT NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS tasks(
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('core', 'device', 'deployment')),
    type TEXT NOT NULL,
    request TEXT NOT NULL,
    core_name TEXT,
    status TEXT NOT NULL CHECK (status IN ('Waiting', 'InProgress', 'Success', 'Failure')),
    status_message TEXT,
    batch_size INTEGER NOT NULL,
    batches_total INTEGER NOT NULL,
    batches_complete INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS task_items(
    task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('Waiting', 'InProgress', 'Success', 'Failure')),
    message TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (task_id, position));
CREATE INDEX IF NOT EXISTS task_items_status ON task_items(task_id, status, position);
"""


def now() -> str:
    return iso(dt.datetime.now(dt.UTC))


@dataclass(frozen=True)
class ThingRow:
    name: str
    kind: ThingKind
    thing_type: str | None
    attributes: dict[str, str]
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class NewCertificate:
    """A certificate to register; ``key_path`` is None when the device holds its own key."""

    id: str
    pem: str
    serial: str
    status: CertStatus = "ACTIVE"
    ca_id: str | None = None
    key_type: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    not_after: str | None = None


@dataclass(frozen=True)
class CertificateRow:
    id: str
    status: CertStatus
    pem: str
    ca_id: str | None
    serial: str
    key_type: str | None
    cert_path: str | None
    key_path: str | None
    not_after: str | None
    revoked_at: str | None
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class PolicyRow:
    name: str
    format: PolicyFormat
    document: Any
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class ConnectivityInfo:
    """One way to reach a core's broker, in the discovery response's PascalCase shape."""

    host: str
    port: int
    id: str = ""
    metadata: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "Id": self.id or f"{self.host}_{self.port}",
            "HostAddress": self.host,
            "PortNumber": self.port,
            "Metadata": self.metadata,
        }


@dataclass(frozen=True)
class CoreRow:
    name: str
    core_version: str
    ca_pem: str
    ca_cert_path: str
    ca_key_path: str
    config_path: str | None
    client_policy: str | None
    device_status: str
    installed_components: list[Any]
    desired_template: str | None
    desired_version: int | None
    deployment_status: str | None
    reported_template: str | None
    reported_version: int | None
    reported_deployment_status: str | None
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class TaskRow:
    id: str
    kind: TaskKind
    type: str
    request: dict[str, Any]
    core_name: str | None
    status: TaskStatus
    status_message: str | None
    batch_size: int
    batches_total: int
    batches_complete: int
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class TaskItemRow:
    task_id: str
    position: int
    name: str
    spec: dict[str, Any]
    status: TaskStatus
    message: str | None
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class ItemResult:
    """The outcome of one task item, committed together with the changes it made."""

    position: int
    status: TaskStatus
    message: str | None = None


@dataclass
class _Local(threading.local):
    conn: sqlite3.Connection | None = None
    depth: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Typed access to the registry database; one connection per thread, transactions nest."""

    def __init__(self, path: Path, *, durable: bool = False) -> None:
        self.path = path
        self._synchronous = "FULL" if durable else "NORMAL"
        self._local = _Local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise InfraError(
                f"{path}: registry schema {version} is newer than this harness ({SCHEMA_VERSION})"
            )
        with self.transaction() as tx:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    tx.execute(statement)
            tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- connections and transactions -------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = self._local.conn
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={self._synchronous}")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            except sqlite3.Error as exc:
                raise InfraError(f"{self.path}: cannot open registry: {exc}") from exc
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def release_thread_connection(self) -> None:
        """Close this thread's connection (threads that end should call this)."""
        conn = self._local.conn
        if conn is not None:
            self._local.conn = None
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)
            conn.close()

    def close(self) -> None:
        with self._lock:
            conns, self._connections = self._connections, []
        for conn in conns:
            with suppress(sqlite3.Error):
                conn.close()
        self._local.conn = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of change; nested uses join the outer transaction."""
        conn = self._conn()
        if self._local.depth:
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise InfraError(f"{self.path}: registry is busy: {exc}") from exc
        self._local.depth = 1
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError) and not isinstance(
                exc, sqlite3.IntegrityError
            ):
                raise InfraError(f"{self.path}: registry write failed: {exc}") from exc
            raise
        finally:
            self._local.depth = 0

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn().execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._conn().execute(sql, params).fetchone()
        return row

    # -- settings ---------------------------------------------------------------------------------

    def setting(self, key: str) -> str | None:
        row = self._one("SELECT value FROM settings WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO settings(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- things and groups ------------------------------------------------------------------------

    def add_things(self, rows: Iterable[tuple[str, ThingKind, str | None, dict[str, str]]]) -> None:
        """Insert (name, kind, thing_type, attributes); an existing name raises ``sqlite3.IntegrityError``."""
        stamp = now()
        with self.transaction() as tx:
            tx.executemany(
                "INSERT INTO things(name, kind, thing_type, attributes, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(n, k, t, json.dumps(a, sort_keys=True), stamp, stamp) for n, k, t, a in rows],
            )

    def thing(self, name: str) -> ThingRow | None:
        row = self._one(
            "SELECT name, kind, thing_type, attributes, created_at, updated_at FROM things WHERE name = ?",
            (name,),
        )
        return None if row is None else ThingRow(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5])

    def things(self, kind: ThingKind | None = None, prefix: str | None = None) -> list[ThingRow]:
        sql = "SELECT name, kind, thing_type, attributes, created_at, updated_at FROM things WHERE 1 = 1"
        params: list[Any] = []
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        if prefix:
            sql += " AND substr(name, 1, ?) = ?"
            params += [len(prefix), prefix]
        return [
            ThingRow(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5])
            for r in self._all(sql + " ORDER BY name", params)
        ]

    def count_things(self, kind: ThingKind | None = None) -> int:
        if kind is None:
            row = self._one("SELECT count(*) FROM things")
        else:
            row = self._one("SELECT count(*) FROM things WHERE kind = ?", (kind,))
        return int(row[0]) if row else 0

    def existing_things(self, names: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(names), 500):
            chunk = list(names[i : i + 500])
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in self._all(f"SELECT name FROM things WHERE name IN ({marks})", chunk))
        return found

    def set_thing_kind(self, name: str, kind: ThingKind) -> None:
        with self.transaction() as tx:
            tx.execute("UPDATE things SET kind = ?, updated_at = ? WHERE name = ?", (kind, now(), name))

    def delete_things(self, names: Sequence[str]) -> None:
        with self.transaction() as tx:
            tx.executemany("DELETE FROM things WHERE name = ?", [(n,) for n in names])

    def add_group_members(self, pairs: Iterable[tuple[str, str]]) -> None:
        """(group, thing) pairs; groups are created on first use, as CDF does."""
        stamp = now()
        pairs = list(pairs)
        with self.transaction() as tx:
            tx.executemany(
                "INSERT OR IGNORE INTO thing_groups(name, created_at) VALUES (?, ?)",
                [(g, stamp) for g in {g for g, _ in pairs}],
            )
            tx.executemany(
                "INSERT OR IGNORE INTO thing_group_members(group_name, thing_name) VALUES (?, ?)", pairs
            )

    def group_members(self, group: str) -> list[str]:
        return [
            r[0]
            for r in self._all(
                "SELECT thing_name FROM thing_group_members WHERE group_name = ? ORDER BY thing_name",
                (group,),
            )
        ]

    def groups_of(self, thing: str) -> list[str]:
        return [
            r[0]
            for r in self._all(
                "SELECT group_name FROM thing_group_members WHERE thing_name = ? ORDER BY group_name",
                (thing,),
            )
        ]

    # -- certificates -----------------------------------------------------------------------------

    def add_certificates(self, certs: Iterable[NewCertificate]) -> None:
        stamp = now()
        with self.transaction() as tx:
            tx.executemany(
                "INSERT INTO certificates(id, status, pem, ca_id, serial, key_type, cert_path, key_path, "
                "not_after, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        c.id,
                        c.status,
                        c.pem,
                        c.ca_id,
                        c.serial,
                        c.key_type,
                        c.cert_path,
                        c.key_path,
                        c.not_after,
                        stamp,
                        stamp,
                    )
                    for c in certs
                ],
            )

    _CERT_COLUMNS = (
        "id, status, pem, ca_id, serial, key_type, cert_path, key_path, not_after, revoked_at, "
        "created_at, updated_at"
    )

    def certificate(self, cert_id: str) -> CertificateRow | None:
        row = self._one(f"SELECT {self._CERT_COLUMNS} FROM certificates WHERE id = ?", (cert_id,))
        return None if row is None else CertificateRow(*row)

    def certificates(self, status: CertStatus | None = None) -> list[CertificateRow]:
        if status is None:
            rows = self._all(f"SELECT {self._CERT_COLUMNS} FROM certificates ORDER BY created_at, id")
        else:
            rows = self._all(
                f"SELECT {self._CERT_COLUMNS} FROM certificates WHERE status = ? ORDER BY created_at, id",
                (status,),
            )
        return [CertificateRow(*r) for r in rows]

    def set_certificate_status(self, cert_id: str, status: CertStatus) -> None:
        stamp = now()
        with self.transaction() as tx:
            tx.execute(
                "UPDATE certificates SET status = ?, updated_at = ?, "
                "revoked_at = CASE WHEN ? = 'REVOKED' THEN coalesce(revoked_at, ?) ELSE NULL END "
                "WHERE id = ?",
                (status, stamp, status, stamp, cert_id),
            )

    def delete_certificates(self, cert_ids: Sequence[str]) -> None:
        with self.transaction() as tx:
            tx.executemany("DELETE FROM certificates WHERE id = ?", [(c,) for c in cert_ids])

    def attach_principals(self, pairs: Iterable[tuple[str, str]]) -> None:
        """(thing, certificate id) pairs."""
        with self.transaction() as tx:
            tx.executemany(
                "INSERT OR IGNORE INTO thing_principals(thing_name, certificate_id) VALUES (?, ?)",
                list(pairs),
            )

    def principals_of(self, thing: str) -> list[str]:
        return [
            r[0]
            for r in self._all(
                "SELECT certificate_id FROM thing_principals WHERE thing_name = ? ORDER BY certificate_id",
                (thing,),
            )
        ]

    def things_of_certificate(self, cert_id: str) -> list[str]:
        return [
            r[0]
            for r in self._all(
                "SELECT thing_name FROM thing_principals WHERE certificate_id = ? ORDER BY thing_name",
                (cert_id,),
            )
        ]

    def things_without_certificates(self) -> list[str]:
        return [
            r[0]
            for r in self._all(
                "SELECT name FROM things WHERE kind IN ('core', 'device') AND NOT EXISTS "
                "(SELECT 1 FROM thing_principals p WHERE p.thing_name = things.name) ORDER BY name"
            )
        ]

    def certificate_files(self) -> list[tuple[str, str | None, str | None]]:
        """(certificate id, cert path, key path) of every certificate."""
        return [
            (r[0], r[1], r[2])
            for r in self._all("SELECT id, cert_path, key_path FROM certificates ORDER BY id")
        ]

    # -- policies ---------------------------------------------------------------------------------

    def put_policy(self, name: str, fmt: PolicyFormat, document: Any) -> None:
        stamp = now()
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO policies(name, format, document, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET format = excluded.format, document = excluded.document, "
                "updated_at = excluded.updated_at",
                (name, fmt, None if document is None else json.dumps(document, sort_keys=True), stamp, stamp),
            )

    def ensure_policies(self, names: Iterable[str]) -> None:
        """Make named policies exist (as placeholders) so templates may name policies not yet defined."""
        stamp = now()
        with self.transaction() as tx:
            tx.executemany(
                "INSERT OR IGNORE INTO policies(name, format, document, created_at, updated_at) "
                "VALUES (?, 'placeholder', NULL, ?, ?)",
                [(n, stamp, stamp) for n in set(names)],
            )

    def policy(self, name: str) -> PolicyRow | None:
        row = self._one(
            "SELECT name, format, document, created_at, updated_at FROM policies WHERE name = ?", (name,)
        )
        if row is None:
            return None
        return PolicyRow(row[0], row[1], None if row[2] is None else json.loads(row[2]), row[3], row[4])

    def policies(self) -> list[PolicyRow]:
        return [
            PolicyRow(r[0], r[1], None if r[2] is None else json.loads(r[2]), r[3], r[4])
            for r in self._all(
                "SELECT name, format, document, created_at, updated_at FROM policies ORDER BY name"
            )
        ]

    def attach_policies(self, pairs: Iterable[tuple[str, str]]) -> None:
        """(policy, certificate id) pairs."""
        with self.transaction() as tx:
            tx.executemany(
                "INSERT OR IGNORE INTO policy_principals(policy_name, certificate_id) VALUES (?, ?)",
                list(pairs),
            )

    def policies_of_certificate(self, cert_id: str) -> list[str]:
        return [
            r[0]
            for r in self._all(
                "SELECT policy_name FROM policy_principals WHERE certificate_id = ? ORDER BY policy_name",
                (cert_id,),
            )
        ]

    # -- cores, connectivity, associations --------------------------------------------------------

    def add_core(
        self,
        name: str,
        *,
        core_version: str,
        ca_pem: str,
        ca_cert_path: str,
        ca_key_path: str,
        config_path: str | None,
    ) -> None:
        stamp = now()
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO cores(name, core_version, ca_pem, ca_cert_path, ca_key_path, config_path, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, core_version, ca_pem, ca_cert_path, ca_key_path, config_path, stamp, stamp),
            )

    _CORE_COLUMNS = (
        "name, core_version, ca_pem, ca_cert_path, ca_key_path, config_path, client_policy, "
        "device_status, installed_components, desired_template, desired_version, deployment_status, "
        "reported_template, reported_version, reported_deployment_status, created_at, updated_at"
    )

    @staticmethod
    def _core_row(r: tuple[Any, ...]) -> CoreRow:
        values = list(r)
        values[8] = json.loads(values[8])
        return CoreRow(*values)

    def core(self, name: str) -> CoreRow | None:
        row = self._one(f"SELECT {self._CORE_COLUMNS} FROM cores WHERE name = ?", (name,))
        return None if row is None else self._core_row(row)

    def cores(self) -> list[CoreRow]:
        return [self._core_row(r) for r in self._all(f"SELECT {self._CORE_COLUMNS} FROM cores ORDER BY name")]

    _CORE_UPDATABLE = frozenset(
        {
            "client_policy",
            "device_status",
            "installed_components",
            "desired_template",
            "desired_version",
            "deployment_status",
            "reported_template",
            "reported_version",
            "reported_deployment_status",
            "core_version",
            "config_path",
        }
    )

    def update_core(self, name: str, **fields: Any) -> None:
        unknown = set(fields) - self._CORE_UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        if "installed_components" in fields:
            fields["installed_components"] = json.dumps(fields["installed_components"])
        assignments = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction() as tx:
            tx.execute(
                f"UPDATE cores SET {assignments}, updated_at = ? WHERE name = ?",
                [*fields.values(), now(), name],
            )

    def delete_core(self, name: str) -> None:
        with self.transaction() as tx:
            tx.execute("DELETE FROM cores WHERE name = ?", (name,))

    def set_connectivity(self, core: str, entries: Sequence[ConnectivityInfo]) -> None:
        with self.transaction() as tx:
            tx.execute("DELETE FROM connectivity WHERE core_name = ?", (core,))
            tx.executemany(
                "INSERT INTO connectivity(core_name, position, id, host, port, metadata) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(core, i, e.to_json()["Id"], e.host, e.port, e.metadata) for i, e in enumerate(entries)],
            )

    def connectivity(self, core: str) -> list[ConnectivityInfo]:
        return [
            ConnectivityInfo(host=r[1], port=r[2], id=r[0], metadata=r[3])
            for r in self._all(
                "SELECT id, host, port, metadata FROM connectivity WHERE core_name = ? ORDER BY position",
                (core,),
            )
        ]

    def associate(self, pairs: Iterable[tuple[str, str]]) -> None:
        """(core, client device) pairs."""
        stamp = now()
        with self.transaction() as tx:
            tx.executemany(
                "INSERT OR IGNORE INTO core_devices(core_name, device_name, associated_at) VALUES (?, ?, ?)",
                [(c, d, stamp) for c, d in pairs],
            )

    def disassociate(self, pairs: Iterable[tuple[str, str]]) -> None:
        with self.transaction() as tx:
            tx.executemany("DELETE FROM core_devices WHERE core_name = ? AND device_name = ?", list(pairs))

    def cores_of_device(self, device: str) -> list[str]:
        return [
            r[0]
            for r in self._all(
                "SELECT core_name FROM core_devices WHERE device_name = ? ORDER BY core_name", (device,)
            )
        ]

    def devices_of_core(self, core: str) -> list[str]:
        return [
            r[0]
            for r in self._all(
                "SELECT device_name FROM core_devices WHERE core_name = ? ORDER BY device_name", (core,)
            )
        ]

    # -- templates --------------------------------------------------------------------------------

    def put_provisioning_template(self, name: str, body: dict[str, Any], source: str | None) -> None:
        stamp = now()
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO provisioning_templates(name, body, source, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET body = excluded.body, "
                "source = excluded.source, updated_at = excluded.updated_at",
                (name, json.dumps(body, sort_keys=True), source, stamp, stamp),
            )

    def provisioning_template(self, name: str) -> tuple[dict[str, Any], str | None] | None:
        row = self._one("SELECT body, source FROM provisioning_templates WHERE name = ?", (name,))
        return None if row is None else (json.loads(row[0]), row[1])

    def provisioning_template_names(self) -> list[str]:
        return [r[0] for r in self._all("SELECT name FROM provisioning_templates ORDER BY name")]

    def add_component_template_version(self, name: str, components: list[dict[str, Any]]) -> tuple[int, str]:
        stamp = now()
        with self.transaction() as tx:
            row = tx.execute(
                "SELECT max(version) FROM component_templates WHERE name = ?", (name,)
            ).fetchone()
            version = int(row[0] or 0) + 1
            tx.execute(
                "INSERT INTO component_templates(name, version, components, created_at) VALUES (?, ?, ?, ?)",
                (name, version, json.dumps(components), stamp),
            )
        return version, stamp

    def component_template(self, name: str, version: int | None = None) -> tuple[int, list[Any], str] | None:
        if version is None:
            row = self._one(
                "SELECT version, components, created_at FROM component_templates WHERE name = ? "
                "ORDER BY version DESC LIMIT 1",
                (name,),
            )
        else:
            row = self._one(
                "SELECT version, components, created_at FROM component_templates "
                "WHERE name = ? AND version = ?",
                (name, version),
            )
        return None if row is None else (int(row[0]), json.loads(row[1]), str(row[2]))

    def component_template_versions(self) -> list[tuple[str, int]]:
        return [
            (r[0], int(r[1]))
            for r in self._all("SELECT name, version FROM component_templates ORDER BY name, version")
        ]

    def desired_template_usage(self) -> list[tuple[str, int, int, int, int, int]]:
        """(template, version, in use, SUCCEEDED, FAILED, IN_PROGRESS) over cores' desired templates."""
        return [
            (r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]))
            for r in self._all(
                "SELECT desired_template, desired_version, count(*), "
                "sum(coalesce(deployment_status, '') = 'SUCCEEDED'), "
                "sum(coalesce(deployment_status, '') = 'FAILED'), "
                "sum(coalesce(deployment_status, '') = 'IN_PROGRESS') "
                "FROM cores WHERE desired_template IS NOT NULL "
                "GROUP BY desired_template, desired_version"
            )
        ]

    def reported_template_usage(self) -> list[tuple[str, int, int]]:
        return [
            (r[0], int(r[1]), int(r[2]))
            for r in self._all(
                "SELECT reported_template, reported_version, count(*) FROM cores "
                "WHERE reported_template IS NOT NULL "
                "GROUP BY reported_template, reported_version"
            )
        ]

    # -- tasks ------------------------------------------------------------------------------------

    def add_task(
        self,
        task_id: str,
        *,
        kind: TaskKind,
        type_: str,
        request: dict[str, Any],
        core_name: str | None,
        batch_size: int,
        items: Sequence[tuple[str, dict[str, Any]]],
    ) -> None:
        stamp = now()
        total = -(-len(items) // batch_size) if items else 0
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO tasks(id, kind, type, request, core_name, status, batch_size, batches_total, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'Waiting', ?, ?, ?, ?)",
                (task_id, kind, type_, json.dumps(request), core_name, batch_size, total, stamp, stamp),
            )
            tx.executemany(
                "INSERT INTO task_items(task_id, position, name, spec, status, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, 'Waiting', ?, ?)",
                [(task_id, i, name, json.dumps(spec), stamp, stamp) for i, (name, spec) in enumerate(items)],
            )

    _TASK_COLUMNS = (
        "id, kind, type, request, core_name, status, status_message, batch_size, batches_total, "
        "batches_complete, created_at, updated_at"
    )

    @staticmethod
    def _task_row(r: tuple[Any, ...]) -> TaskRow:
        values = list(r)
        values[3] = json.loads(values[3])
        return TaskRow(*values)

    def task(self, task_id: str) -> TaskRow | None:
        row = self._one(f"SELECT {self._TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,))
        return None if row is None else self._task_row(row)

    def tasks(
        self, kind: TaskKind | None = None, statuses: Sequence[TaskStatus] | None = None
    ) -> list[TaskRow]:
        sql = f"SELECT {self._TASK_COLUMNS} FROM tasks WHERE 1 = 1"
        params: list[Any] = []
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        if statuses:
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            params += list(statuses)
        return [self._task_row(r) for r in self._all(sql + " ORDER BY created_at, id", params)]

    def task_items(
        self,
        task_id: str,
        *,
        statuses: Sequence[TaskStatus] | None = None,
        after: int = -1,
        limit: int | None = None,
    ) -> list[TaskItemRow]:
        sql = (
            "SELECT task_id, position, name, spec, status, message, created_at, updated_at FROM task_items "
            "WHERE task_id = ? AND position > ?"
        )
        params: list[Any] = [task_id, after]
        if statuses:
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            params += list(statuses)
        sql += " ORDER BY position"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [
            TaskItemRow(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6], r[7])
            for r in self._all(sql, params)
        ]

    def task_item_counts(self, task_id: str) -> dict[str, int]:
        counts: dict[str, int] = {s: 0 for s in TASK_STATUSES}
        for status, n in self._all(
            "SELECT status, count(*) FROM task_items WHERE task_id = ? GROUP BY status", (task_id,)
        ):
            counts[status] = int(n)
        return counts

    def finish_items(self, task_id: str, results: Sequence[ItemResult], *, batches_done: int = 1) -> None:
        """Record item outcomes and batch progress (call inside the transaction that made the changes)."""
        stamp = now()
        with self.transaction() as tx:
            tx.executemany(
                "UPDATE task_items SET status = ?, message = ?, updated_at = ? "
                "WHERE task_id = ? AND position = ?",
                [(r.status, r.message, stamp, task_id, r.position) for r in results],
            )
            tx.execute(
                "UPDATE tasks SET batches_complete = min(batches_total, batches_complete + ?), "
                "updated_at = ? WHERE id = ?",
                (batches_done, stamp, task_id),
            )

    def set_task_status(self, task_id: str, status: TaskStatus, message: str | None = None) -> None:
        with self.transaction() as tx:
            tx.execute(
                "UPDATE tasks SET status = ?, status_message = ?, updated_at = ? WHERE id = ?",
                (status, message, now(), task_id),
            )
