"""Benchmark: bulk provisioning of client devices through a device task, EC P-256 vs RSA 2048.

Runs a full device task (keys, certificates, files, registry rows, taskStatus) for ``--count`` EC devices
and ``--rsa-count`` RSA devices against one core, checks the task's summary counts and the registry's
consistency, and compares with a peer measured in the same run: the ``openssl req -x509 -CA`` command line
making ``--openssl-count`` key+certificate pairs with the same number of parallel processes.

    python bench/bench_provision.py                      # 10,000 EC, 500 RSA, 200 openssl each
    python bench/bench_provision.py --rsa-count 10000    # the full RSA run (several minutes on 2 cores)

Exits 1 if a task did not succeed with the expected counts or the registry is inconsistent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.cloud.api import Cloud
from harness.cloud.ca import KeyType


def provision(state: Path, key_type: KeyType, count: int, workers: int, batch_size: int) -> dict[str, object]:
    """One device task of ``count`` devices in a fresh state directory; returns timings and counts."""
    shutil.rmtree(state, ignore_errors=True)
    with Cloud(state, workers=workers, batch_size=batch_size) as cloud:
        cloud.provision_core("BenchCore", ["127.0.0.1:8883"])
        started = time.perf_counter()
        task = cloud.provision_devices("BenchCore", count, f"{key_type}-", key_type=key_type, timeout=7200)
        elapsed = time.perf_counter() - started
        check_started = time.perf_counter()
        report = cloud.check()
        check_s = time.perf_counter() - check_started
        summary = task["summary"]
        assert isinstance(summary, dict)
        ok = (
            task["taskStatus"] == "Success"
            and summary["total"] == count
            and summary["success"] == count
            and summary["failure"] == 0
            and report.ok
            and len(cloud.devices("BenchCore")) == count
        )
        return {
            "key_type": key_type,
            "devices": count,
            "seconds": elapsed,
            "ms_per_device": 1000 * elapsed / count,
            "devices_per_s": count / elapsed,
            "task_status": task["taskStatus"],
            "summary": summary,
            "batches": task["batchesTotal"],
            "consistent": report.ok,
            "check_seconds": check_s,
            "ok": ok,
        }


def openssl_peer(
    workdir: Path, key_type: KeyType, count: int, parallel: int, ca: tuple[Path, Path]
) -> dict[str, object]:
    """The same work with the openssl CLI: one ``openssl req -x509 -CA`` process per key+certificate."""
    workdir.mkdir(parents=True, exist_ok=True)
    newkey = (
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        if key_type == "ec"
        else ["-newkey", "rsa:2048"]
    )

    def one(i: int) -> None:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                *newkey,
                "-nodes",
                "-keyout",
                str(workdir / f"{i}.key"),
                "-out",
                str(workdir / f"{i}.pem"),
                "-subj",
                f"/CN=dev-{i}",
                "-days",
                "365",
                "-CA",
                str(ca[0]),
                "-CAkey",
                str(ca[1]),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - started
    return {"key_type": key_type, "certs": count, "seconds": elapsed, "ms_per_cert": 1000 * elapsed / count}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10_000, help="EC devices (default 10000)")
    parser.add_argument("--rsa-count", type=int, default=500, help="RSA devices (default 500)")
    parser.add_argument(
        "--openssl-count", type=int, default=200, help="certificates per key type for openssl"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="key generation processes")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--workdir", type=Path, default=None, help="where state goes (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the state directories")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-provision-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"bench_provision: {os.cpu_count()} CPUs, workers={args.workers}, batch={args.batch_size}, "
        f"state under {workdir}",
        flush=True,
    )
    results: dict[str, object] = {}
    try:
        ec = provision(workdir / "ec", "ec", args.count, args.workers, args.batch_size)
        print(
            f"EC P-256 : {ec['devices']:>6} devices in {ec['seconds']:7.2f} s = {ec['ms_per_device']:6.2f} "
            f"ms/device ({ec['devices_per_s']:.0f}/s), task {ec['task_status']}, summary {ec['summary']}",
            flush=True,
        )
        rsa = provision(workdir / "rsa", "rsa", args.rsa_count, args.workers, args.batch_size)
        print(
            f"RSA 2048 : {rsa['devices']:>6} devices in {rsa['seconds']:7.2f} s = "
            f"{rsa['ms_per_device']:6.2f} ms/device ({rsa['devices_per_s']:.0f}/s), "
            f"task {rsa['task_status']}, summary {rsa['summary']}",
            flush=True,
        )
        ca = (workdir / "ec" / "ca" / "root-ca.pem", workdir / "ec" / "ca" / "root-ca.key")
        peers = {
            kt: openssl_peer(workdir / f"openssl-{kt}", kt, args.openssl_count, args.workers, ca)
            for kt in ("ec", "rsa")
        }
        for kt, peer in peers.items():
            print(
                f"openssl  : {peer['certs']:>6} {kt.upper()} key+cert pairs in {peer['seconds']:7.2f} s = "
                f"{peer['ms_per_cert']:6.2f} ms/cert ({args.workers} parallel `openssl req -x509 -CA`)",
                flush=True,
            )
        ratios = {
            "rsa_vs_ec_per_device": float(rsa["ms_per_device"]) / float(ec["ms_per_device"]),  # type: ignore[arg-type]
            "openssl_vs_harness_ec": float(peers["ec"]["ms_per_cert"]) / float(ec["ms_per_device"]),  # type: ignore[arg-type]
            "openssl_vs_harness_rsa": float(peers["rsa"]["ms_per_cert"]) / float(rsa["ms_per_device"]),  # type: ignore[arg-type]
        }
        print(
            f"ratios   : RSA/EC per device {ratios['rsa_vs_ec_per_device']:.1f}x; harness is "
            f"{ratios['openssl_vs_harness_ec']:.1f}x faster than the openssl CLI for EC, "
            f"{ratios['openssl_vs_harness_rsa']:.1f}x for RSA (a full device, files and registry included, "
            f"vs a bare key+cert)"
        )
        results = {"ec": ec, "rsa": rsa, "openssl": peers, "ratios": ratios}
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        ok = bool(ec["ok"]) and bool(rsa["ok"])
        print("result   : " + ("OK, summary counts and registry consistent" if ok else "FAILED"))
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    from harness.errors import interrupt_on_sigterm

    interrupt_on_sigterm()
    sys.exit(main())
