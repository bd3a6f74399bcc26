"""Benchmark: Uptane full verification of a 100-ECU vehicle from a warm local cache.

Vehicle: 100 ECUs, each assigned its own image by the director (100 director
targets); the image repository holds 500 images under 5 supplier delegations.
``verify_ms`` is the median time of ``verify_full`` over the cached bundle
(what the Primary does after its ngclient refresh, and what each Sub does),
including parsing, every signature, the delegation walks and the cross-checks.
For scale, ``tuf_baseline_ms`` times python-tuf alone loading a 100-target
repository (root, timestamp, snapshot, targets) in the same run.

    python tools/bench/uptane.py [--quick]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType

from redstone_agent.uptane.bundle import MetadataBundle
from redstone_agent.uptane.simulator import UptaneSimulator
from redstone_agent.uptane.verifier import EcuState, verify_full

ECUS = 100
SUPPLIERS = 5
IMAGES_PER_SUPPLIER = 100
TARGET_MS = 25.0


def build_vehicle() -> tuple[UptaneSimulator, dict[str, EcuState]]:
    sim = UptaneSimulator.create()
    for s in range(SUPPLIERS):
        role = f"supplier-{s}"
        sim.delegate(role, [f"{role}/*"])
        for i in range(IMAGES_PER_SUPPLIER):
            data = f"{role} image {i}".encode()
            sim.add_image(
                f"{role}/img-{i}.bin", data, [f"hw-{s}-{i % 20}"], i, role=role, commit=False
            )
    sim.image.commit()
    ecus = {}
    for n in range(ECUS):
        s, i = n % SUPPLIERS, n // SUPPLIERS
        serial = f"ECU-{n:03d}"
        sim.assign(serial, f"hw-{s}-{i % 20}", f"supplier-{s}/img-{i}.bin", commit=False)
        ecus[serial] = EcuState(f"hw-{s}-{i % 20}", 0)
    sim.commit_director()
    return sim, ecus


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up (imports, caches)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def tuf_baseline(sim: UptaneSimulator) -> Callable[[], object]:
    """python-tuf alone: a 100-target repository's top-level metadata."""
    repo = sim.director  # 100 targets
    root, roles = repo.roots[0], repo.role_files()

    def load() -> object:
        trusted = TrustedMetadataSet(root, EnvelopeType.METADATA)
        trusted.update_timestamp(roles["timestamp"])
        trusted.update_snapshot(roles["snapshot"])
        return trusted.update_targets(roles["targets"])

    return load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    runs = 10 if parser.parse_args().quick else 50
    t0 = time.perf_counter()
    sim, ecus = build_vehicle()
    print(f"built repositories in {time.perf_counter() - t0:.1f} s", flush=True)
    wire = sim.bundle().to_bytes()  # the warm cache, as the Primary forwards it
    bundle = MetadataBundle.from_bytes(wire)
    roots = sim.trusted_roots()
    result = verify_full(bundle, roots, ecus=ecus)
    assert len(result.targets) == ECUS
    verify_ms = median_ms(lambda: verify_full(bundle, roots, ecus=ecus), runs)
    parse_and_verify_ms = median_ms(
        lambda: verify_full(MetadataBundle.from_bytes(wire), roots, ecus=ecus), runs
    )
    sub_ms = median_ms(
        lambda: verify_full(bundle, roots, ecus={"ECU-042": ecus["ECU-042"]}, only_known_ecus=True),
        runs,
    )
    baseline_ms = median_ms(tuf_baseline(sim), runs)
    figures = {
        "ecus": ECUS,
        "image_targets": SUPPLIERS * IMAGES_PER_SUPPLIER,
        "delegations": SUPPLIERS,
        "runs": runs,
        "verify_ms": round(verify_ms, 2),
        "verify_with_bundle_parse_ms": round(parse_and_verify_ms, 2),
        "sub_single_ecu_verify_ms": round(sub_ms, 2),
        "metadata_bytes": bundle.size(),
        "bundle_wire_bytes": len(wire),
        "tuf_baseline_ms": round(baseline_ms, 2),
        "verify_vs_tuf_baseline": round(verify_ms / baseline_ms, 1),
        "target_verify_ms": TARGET_MS,
        "verify_vs_target": round(verify_ms / TARGET_MS, 2),
        "meets_target": verify_ms <= TARGET_MS,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
