"""Remote transfer speed against a local S3 endpoint (moto's server, its own process).

    python tests/bench/bench_remote.py [--entries 2000] [--jobs 8] [--runs 3] [--seconds 1]

Fills a cache with `--entries` entries (`--seconds` of 16 kHz mono s16 each), pushes them
to a fresh bucket, then measures, each figure the median over `--runs` rounds, rounds
alternating so the machine's load falls on both sides alike:

- `pull` of every entry into a fresh cache (a fresh filesystem, as `cache pull` has; list,
  download, sha256 + key check, import). Target (issue 11): ≤ 1.2× a bare fsspec `get` of
  the same objects at the same concurrency (`batch_size=--jobs`), in the same run, which
  is measured two ways:
  - `get` of the remote prefix, `recursive=True`, on a fresh filesystem: what copying the
    objects with fsspec alone takes (it lists them, as a pull must). The target's reference.
  - `get` handed the 2,000 object paths on the warm filesystem: the download alone, no
    listing and no client set-up. Stricter than the issue asks; reported beside it.
- `push` when the remote already holds everything (one listing, no uploads), with a fresh
  `Remote` as `cache push` has; reference: the bare fsspec listing (`fs.find`) alone.
  Target: < 2 s for 2,000 entries.

The endpoint runs in its own process so it does not share this one's interpreter lock.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: remote_fixtures

from remote_fixtures import NO_AWS_FILE, REGION, MotoProcess, fill_cache, free_port  # noqa: E402

from voiceprep.cache import AudioCache  # noqa: E402
from voiceprep.remote import Remote, pull, push  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()

    server = MotoProcess(free_port()).start()
    os.environ.update(
        AWS_ACCESS_KEY_ID="AKIABENCHMARK",
        AWS_SECRET_ACCESS_KEY="bench-secret",
        AWS_DEFAULT_REGION=REGION,
        AWS_ENDPOINT_URL_S3=server.url,
        AWS_CONFIG_FILE=NO_AWS_FILE,
        AWS_SHARED_CREDENTIALS_FILE=NO_AWS_FILE,
    )
    work = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    try:
        import boto3
        import fsspec

        boto3.client("s3").create_bucket(Bucket="voiceprep-bench")
        url = "s3://voiceprep-bench/prompts"
        source = work / "source"
        started = time.perf_counter()
        fill_cache(source, range(args.entries), seconds=args.seconds)
        print(f"filled {args.entries} entries in {time.perf_counter() - started:.1f} s")
        remote = Remote(url)
        with AudioCache(source) as cache:
            started = time.perf_counter()
            report = push(cache, remote, jobs=args.jobs)
            assert len(report.moved) == args.entries and report.ok, report.as_dict()
            print(f"first push: {time.perf_counter() - started:.2f} s, {report.bytes} bytes")
        paths = [remote.object_path(key) for key in remote.listing()]
        fs = remote._fs  # the same filesystem object our transfers use

        ours, bare, paths_only, noop, listing = [], [], [], [], []
        for run in range(args.runs):
            target = work / f"bare-{run}"
            started = time.perf_counter()
            fresh, _ = fsspec.core.url_to_fs(url, skip_instance_cache=True)
            fresh.get(f"{remote.base}/", f"{target}/", recursive=True, batch_size=args.jobs)
            bare.append(time.perf_counter() - started)
            assert sum(len(files) for _, _, files in os.walk(target)) == args.entries
            shutil.rmtree(target)

            target.mkdir()
            started = time.perf_counter()
            fs.get(
                paths, [str(target / f"{i}.wav") for i in range(len(paths))], batch_size=args.jobs
            )
            paths_only.append(time.perf_counter() - started)

            started = time.perf_counter()
            with AudioCache(work / f"pulled-{run}") as cache:
                report = pull(cache, url, jobs=args.jobs)
            ours.append(time.perf_counter() - started)
            assert len(report.moved) == args.entries and report.ok, report.as_dict()

            started = time.perf_counter()
            fs.invalidate_cache()
            assert len(fs.find(remote.base)) == args.entries
            listing.append(time.perf_counter() - started)

            started = time.perf_counter()  # as `cache push` does it: a fresh Remote
            with AudioCache(source) as cache:
                report = push(cache, url, jobs=args.jobs)
            noop.append(time.perf_counter() - started)
            assert not report.moved and report.already == args.entries
            print(
                f"run {run + 1}: fsspec get of the prefix {bare[-1]:.2f} s, of the paths "
                f"{paths_only[-1]:.2f} s, pull {ours[-1]:.2f} s, no-op push {noop[-1]:.2f} s"
            )
            shutil.rmtree(target)
            shutil.rmtree(work / f"pulled-{run}")

        pulled, reference = statistics.median(ours), statistics.median(bare)
        print(
            f"pull {args.entries} entries, -j {args.jobs}: median {pulled:.2f} s vs a bare "
            f"fsspec get of the prefix {reference:.2f} s = {pulled / reference:.2f}x "
            "(target ≤ 1.2x)"
        )
        handed = statistics.median(paths_only)
        print(
            f"  vs a get handed the paths on a warm filesystem (no listing, no set-up) "
            f"{handed:.2f} s = {pulled / handed:.2f}x"
        )
        print(
            f"push with everything there: median {statistics.median(noop):.2f} s (target < 2 s);"
            f" the bare fsspec listing alone: {statistics.median(listing):.2f} s"
        )
        print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
