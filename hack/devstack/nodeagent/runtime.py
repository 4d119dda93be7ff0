"""Run one pod's containers as local processes and report its status the way a kubelet does."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

from kubernetes import client

from .cgroups import ContainerCgroup, NodeCgroups, milli_cpu
from .podspec import ConfigError, PodPreparer, PreparedContainer

log = logging.getLogger("devstack.runtime")
TERMINATION_MESSAGE_MAX = 4096
SCRATCH_CHECK_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60

# The pod condition a kubelet adds to a pod it terminates for reasons of the node's, not the
# pod's (eviction, node shutdown); Jobs' podFailurePolicy matches it (`onPodConditions`).
# The API server adds the same condition, reason EvictionByEvictionAPI, on an Eviction.
DISRUPTION_TARGET = "DisruptionTarget"
TERMINATION_BY_KUBELET = "TerminationByKubelet"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tail(path: Path, limit: int = TERMINATION_MESSAGE_MAX) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


class PodRunner(threading.Thread):
    """One pod: prepare, run init containers then containers, report, honour deletion."""

    def __init__(self, core: client.CoreV1Api, preparer: PodPreparer, pod: dict[str, Any], root: Path,
                 base_env: dict[str, str], cgroups: NodeCgroups | None = None) -> None:
        meta = pod["metadata"]
        self.cgroups = cgroups
        self._cgroups: dict[str, ContainerCgroup | None] = {}
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.core, self.preparer, self.pod, self.base_env = core, preparer, pod, base_env
        self.ns, self.pod_name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.root = root / f"{self.ns}_{self.pod_name}_{self.uid[:8]}"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._deleting = threading.Event()
        self.finished = threading.Event()
        self.statuses: dict[str, dict[str, Any]] = {}
        self._evicted: str | None = None
        self._terminal_reported = False
        self.restart_counts: dict[str, int] = {}
        self.last_states: dict[str, dict[str, Any]] = {}
        self.started_at = _now()

    # ------------------------------------------------------------------------ deletion
    def request_delete(self, grace_seconds: int) -> None:
        """Pod deleted: SIGTERM every process group, SIGKILL after the grace period."""
        if self._deleting.is_set():
            return
        self._deleting.set()
        with self._lock:
            procs = list(self._procs.values())
        for p in procs:
            _signal(p, signal.SIGTERM)
        if procs:
            timer = threading.Timer(max(grace_seconds, 0), self._kill_all)
            timer.daemon = True
            timer.start()
        if self.finished.is_set() or not procs:
            threading.Thread(target=self._finalise_delete, daemon=True).start()

    def _kill_all(self) -> None:
        with self._lock:
            procs = list(self._procs.values())
        for p in procs:
            _signal(p, signal.SIGKILL)
        for cg in list(self._cgroups.values()):
            if cg is not None:
                cg.kill_all()

    def _finalise_delete(self) -> None:
        self.finished.wait(timeout=600)
        if not self._terminal_reported:
            # As a kubelet: a deleted pod reaches a terminal phase before its final delete, so
            # that controllers (a Job's podFailurePolicy) see how it ended.
            self._report_deleted_before_start()
        try:
            self.core.delete_namespaced_pod(
                self.pod_name, self.ns, grace_period_seconds=0,
                body=client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=self.uid)),
            )
        except client.ApiException as e:
            if e.status not in (404, 409):
                log.warning("final delete of %s/%s failed: %s", self.ns, self.pod_name, e)
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------------ lifecycle
    def run(self) -> None:
        try:
            self._run()
        except Exception as e:
            log.exception("pod %s/%s crashed the runtime", self.ns, self.pod_name)
            self._report_failed("RuntimeError", str(e), exit_code=128)
        finally:
            if self.cgroups is not None:
                self.cgroups.remove_pod(self.uid)
            self.finished.set()
            if self._deleting.is_set():
                self._finalise_delete()

    def _run(self) -> None:
        spec = self.pod["spec"]
        self.root.mkdir(parents=True, exist_ok=True)
        containers = spec.get("containers", [])
        inits = spec.get("initContainers", []) or []
        try:
            volumes = self.preparer.volumes(self.pod, self.root)
            prepared_inits = [self.preparer.container(self.pod, c, self.root, volumes, self.base_env) for c in inits]
            prepared = [self.preparer.container(self.pod, c, self.root, volumes, self.base_env) for c in containers]
        except (ConfigError, client.ApiException) as e:
            msg = e.reason if isinstance(e, client.ApiException) else str(e)
            self._report_waiting("CreateContainerConfigError", str(msg))
            return
        for c in prepared_inits:
            if self._deleting.is_set():
                return
            code = self._wait(self._start(c))
            self._kill_leftovers(c)
            if code != 0:
                self._report_terminal(init_failed=(c, code))
                return
        if self._deleting.is_set():
            return
        for c in prepared:
            self._start(c)
        self._report_running()
        threading.Thread(target=self._watch_scratch_limits, args=(volumes,), daemon=True).start()
        policy = spec.get("restartPolicy", "Always")
        supervisors = [threading.Thread(target=self._supervise, args=(c, policy), daemon=True)
                       for c in prepared]
        for t in supervisors:
            t.start()
        for t in supervisors:
            t.join()
        self._report_terminal()

    def _supervise(self, c: PreparedContainer, policy: str) -> None:
        """Wait for a container; restart it in place as a kubelet does for `Always`/`OnFailure`,
        with a doubling back-off (CrashLoopBackOff) instead of failing the pod."""
        while True:
            with self._lock:
                proc = self._procs[c.name]
            code = self._wait(proc)
            self._kill_leftovers(c)
            term = self._terminated(c, code)
            self.statuses[c.name] = term
            again = policy == "Always" or (policy == "OnFailure" and code != 0)
            if not again or self._deleting.is_set() or self._evicted:
                return
            restarts = self.restart_counts.get(c.name, 0) + 1
            self.restart_counts[c.name] = restarts
            self.last_states[c.name] = {"terminated": term}
            self._report_backoff(c, restarts)
            if self._deleting.wait(min(2.0 ** (restarts - 1), MAX_BACKOFF_SECONDS)):
                return
            self._start(c)
            self._report_running()

    def _spec_of(self, name: str) -> dict[str, Any]:
        spec = self.pod["spec"]
        return next(x for x in spec["containers"] + (spec.get("initContainers") or []) if x["name"] == name)

    def _cgroup(self, c: PreparedContainer) -> ContainerCgroup | None:
        """The container's cgroup, with its CPU limit as a CFS quota (made once, kept over restarts)."""
        if self.cgroups is None:
            return None
        if not self._cgroups:  # the first container: the pod's cgroup first
            self.cgroups.pod(self.uid, *_pod_cpu(self.pod["spec"]))
        if c.name not in self._cgroups:
            limit, request = _cpu_of(self._spec_of(c.name))
            if limit and not self.cgroups.available:
                log.warning("pod %s/%s: container %s has a CPU limit of %s that is NOT enforced: %s",
                            self.ns, self.pod_name, c.name, limit, self.cgroups.reason)
            self._cgroups[c.name] = self.cgroups.container(
                self.uid, c.name, milli_cpu(limit) if limit else None, milli_cpu(request) if request else None)
        return self._cgroups[c.name]

    def _kill_leftovers(self, c: PreparedContainer) -> None:
        """A container ends with its first process: what it left running goes too."""
        cg = self._cgroups.get(c.name)
        if cg is not None:
            cg.kill_all()

    def _start(self, c: PreparedContainer) -> subprocess.Popen[bytes]:
        log.info("pod %s/%s: starting %s: %s", self.ns, self.pod_name, c.name, c.argv)
        with open(c.log, "ab") as out:
            try:
                if not _runnable(c.argv[0], c.env.get("PATH", ""), c.workdir):
                    raise FileNotFoundError(2, "executable file not found", c.argv[0])
                cg = self._cgroup(c)
                proc = subprocess.Popen(cg.wrap(c.argv) if cg else c.argv, env=c.env, cwd=c.workdir,
                                        stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as e:
                out.write(f"failed to start {c.argv[0]}: {e}\n".encode())
                proc = subprocess.Popen(["false"], start_new_session=True)
        self.statuses[c.name] = {"startedAt": _now()}
        with self._lock:
            self._procs[c.name] = proc
        return proc

    @staticmethod
    def _wait(proc: subprocess.Popen[bytes]) -> int:
        code = proc.wait()
        return 128 - code if code < 0 else code  # a signal N reads as exit 128+N, like a container

    def _terminated(self, c: PreparedContainer, code: int) -> dict[str, Any]:
        message = _tail(c.termination_log).strip()
        spec_c = next(x for x in self.pod["spec"]["containers"] + (self.pod["spec"].get("initContainers") or [])
                      if x["name"] == c.name)
        if not message and code != 0 and spec_c.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = _tail(c.log, 2048).strip()
        reason = "Completed" if code == 0 else "Error"
        term: dict[str, Any] = {
            "exitCode": code,
            "reason": reason,
            "startedAt": self.statuses.get(c.name, {}).get("startedAt", self.started_at),
            "finishedAt": _now(),
            "containerID": f"process://{self.uid}/{c.name}",
        }
        if message:
            term["message"] = message
        return term

    def _watch_scratch_limits(self, volumes: dict[str, Path]) -> None:
        """A kubelet evicts a pod whose emptyDir outgrows its sizeLimit; so does a process node."""
        limits = {  # volume name -> the limit as written
            v["name"]: str(v["emptyDir"]["sizeLimit"])
            for v in self.pod["spec"].get("volumes", []) or []
            if "emptyDir" in v and (v["emptyDir"] or {}).get("sizeLimit")
        }
        max_bytes = {name: parse_quantity(text) for name, text in limits.items()}
        while limits and not self.finished.wait(SCRATCH_CHECK_SECONDS):
            for name, text in limits.items():
                if folder_size(volumes[name]) > max_bytes[name]:
                    self._evicted = f"Usage of EmptyDir volume \"{name}\" exceeds the limit \"{text}\"."
                    log.warning("evicting %s/%s: %s", self.ns, self.pod_name, self._evicted)
                    self._kill_all()
                    return

    # ------------------------------------------------------------------------ status reports
    def _container_status(self, c: dict[str, Any], state: dict[str, Any], ready: bool) -> dict[str, Any]:
        return {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": c.get("image", ""),
            "containerID": f"process://{self.uid}/{c['name']}",
            "ready": ready,
            "started": "running" in state,
            "restartCount": self.restart_counts.get(c["name"], 0),
            "state": state,
            **({"lastState": self.last_states[c["name"]]} if c["name"] in self.last_states else {}),
        }

    def _conditions(self, ready: bool, initialized: bool = True,
                    disruption: str | None = None) -> list[dict[str, Any]]:
        """The pod's conditions; `disruption` (a message) adds DisruptionTarget, as a kubelet
        does for a pod it evicts. A condition the API server added (an Eviction's) is kept:
        status patches are strategic merges keyed by the condition's type."""
        now = _now()
        def cond(t: str, ok: bool, reason: str | None = None) -> dict[str, Any]:
            d: dict[str, Any] = {"type": t, "status": "True" if ok else "False", "lastTransitionTime": now}
            if reason:
                d["reason"] = reason
            return d
        conds = [
            cond("PodReadyToStartContainers", True),
            cond("Initialized", initialized),
            cond("ContainersReady", ready, None if ready else "PodCompleted"),
            cond("Ready", ready, None if ready else "PodCompleted"),
            cond("PodScheduled", True),
        ]
        if disruption is not None:
            conds.append({"type": DISRUPTION_TARGET, "status": "True", "lastTransitionTime": now,
                          "reason": TERMINATION_BY_KUBELET, "message": disruption})
        return conds

    def _patch(self, status: dict[str, Any]) -> None:
        if status.get("phase") in ("Succeeded", "Failed"):
            self._terminal_reported = True
        base = {"hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}], "podIP": "127.0.0.1",
                "podIPs": [{"ip": "127.0.0.1"}], "startTime": self.started_at}
        try:
            self.core.patch_namespaced_pod_status(self.pod_name, self.ns, {"status": {**base, **status}})
        except client.ApiException as e:
            if e.status != 404:
                log.warning("status of %s/%s not written: %s", self.ns, self.pod_name, e.reason)

    def _report_waiting(self, reason: str, message: str) -> None:
        cs = [self._container_status(c, {"waiting": {"reason": reason, "message": message}}, False)
              for c in self.pod["spec"]["containers"]]
        self._patch({"phase": "Pending", "conditions": self._conditions(False), "containerStatuses": cs,
                     "message": message, "reason": reason})

    def _report_failed(self, reason: str, message: str, disruption: bool = False, exit_code: int = 1) -> None:
        """The pod failed for a reason of the node's; `disruption` adds DisruptionTarget (the
        pod's own command did not fail: the node lost or stopped it)."""
        state = {"terminated": {"exitCode": exit_code, "reason": reason,
                                "message": message[:TERMINATION_MESSAGE_MAX],
                                "startedAt": self.started_at, "finishedAt": _now()}}
        cs = [self._container_status(c, state, False) for c in self.pod["spec"]["containers"]]
        conds = self._conditions(False, disruption=message if disruption else None)
        self._patch({"phase": "Failed", "conditions": conds, "containerStatuses": cs,
                     "reason": reason, "message": message[:TERMINATION_MESSAGE_MAX]})

    def _report_deleted_before_start(self) -> None:
        """A pod deleted before (or without) its containers running here: a kubelet reports
        the containers it never ran or can no longer find as terminated, exit 137."""
        phase = (self.pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return
        now = _now()
        term = {"exitCode": 137, "reason": "ContainerStatusUnknown",
                "message": "The container could not be located when the pod was terminated",
                "startedAt": self.started_at, "finishedAt": now}
        def last(name: str) -> dict[str, Any]:
            if "exitCode" in self.statuses.get(name, {}):
                return self.statuses[name]
            return dict(self.last_states.get(name, {}).get("terminated") or term)

        cs = [self._container_status(c, {"terminated": last(c["name"])}, False) for c in self.pod["spec"]["containers"]]
        self._patch({"phase": "Failed", "conditions": self._conditions(False), "containerStatuses": cs})

    def _state(self, name: str) -> dict[str, Any]:
        st = self.statuses.get(name, {})
        if "exitCode" in st:
            return {"terminated": st}
        if st.get("waiting"):
            return {"waiting": st["waiting"]}
        return {"running": {"startedAt": st.get("startedAt", self.started_at)}}

    def _report_running(self) -> None:
        cs = [self._container_status(c, self._state(c["name"]), "running" in self._state(c["name"]))
              for c in self.pod["spec"]["containers"]]
        ready = all(x["ready"] for x in cs)
        self._patch({"phase": "Running", "conditions": self._conditions(ready), "containerStatuses": cs})

    def _report_backoff(self, c: PreparedContainer, restarts: int) -> None:
        delay = min(2 ** (restarts - 1), MAX_BACKOFF_SECONDS)
        self.statuses[c.name] = {"waiting": {"reason": "CrashLoopBackOff",
                                             "message": f"back-off {delay}s restarting failed container={c.name}"}}
        self._report_running()

    def _report_terminal(self, init_failed: tuple[PreparedContainer, int] | None = None) -> None:
        spec = self.pod["spec"]
        if init_failed is not None:
            c, code = init_failed
            term = self._terminated(c, code)
            ics = [self._container_status(x, {"terminated": term} if x["name"] == c.name else
                                          {"waiting": {"reason": "PodInitializing"}}, False)
                   for x in spec.get("initContainers", [])]
            cs = [self._container_status(x, {"waiting": {"reason": "PodInitializing"}}, False)
                  for x in spec["containers"]]
            self._patch({"phase": "Failed", "conditions": self._conditions(False, False),
                         "initContainerStatuses": ics, "containerStatuses": cs})
            return
        if any(c["name"] not in self.statuses or "exitCode" not in self.statuses[c["name"]]
               for c in spec["containers"]):
            return  # deleted before every container ran: _finalise_delete reports it
        cs = [self._container_status(c, {"terminated": self.statuses[c["name"]]}, False) for c in spec["containers"]]
        ok = all(self.statuses[c["name"]]["exitCode"] == 0 for c in spec["containers"])
        extra = {"reason": "Evicted", "message": self._evicted} if self._evicted else {}
        self._patch({"phase": "Succeeded" if ok and not self._evicted else "Failed",
                     "conditions": self._conditions(False, disruption=self._evicted), "containerStatuses": cs,
                     **extra})


_UNITS = {"": 1, "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
          "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def parse_quantity(q: str | int) -> int:
    """A Kubernetes storage quantity (`512Mi`, `5G`, `1000`) in bytes."""
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q).strip())
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"not a storage quantity: {q!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def folder_size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def _cpu_of(container: dict[str, Any]) -> tuple[str | None, str | None]:
    """(limit, request) of CPU as written; the request defaults to the limit, as in the API."""
    res = container.get("resources") or {}
    limit = (res.get("limits") or {}).get("cpu")
    return limit, (res.get("requests") or {}).get("cpu") or limit


def _pod_cpu(spec: dict[str, Any]) -> tuple[int | None, int | None]:
    """The pod's CPU request and limit in millicores, as the kubelet sums them for the pod's
    cgroup: containers added up, or the largest init container if more; no limit unless every
    container has one."""
    def total(containers: list[dict[str, Any]], which: int) -> tuple[int, bool]:
        values = [_cpu_of(c)[which] for c in containers]
        return sum(milli_cpu(v) for v in values if v), all(values)

    inits = spec.get("initContainers") or []
    req, _ = total(spec.get("containers", []), 1)
    lim, all_limited = total(spec.get("containers", []), 0)
    init_req = max((milli_cpu(r) for c in inits if (r := _cpu_of(c)[1])), default=0)
    init_lim = max((milli_cpu(v) for c in inits if (v := _cpu_of(c)[0])), default=0)
    all_limited = all_limited and all(_cpu_of(c)[0] for c in inits)
    return (max(req, init_req) or None), (max(lim, init_lim) if all_limited else None)


def _runnable(exe: str, path: str, cwd: Path) -> bool:
    """Whether exec would find `exe` (checked here, since a cgroup wrapper execs it)."""
    if "/" in exe:
        return os.access(cwd / exe, os.X_OK)
    return shutil.which(exe, path=path) is not None


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
