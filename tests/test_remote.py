"""cache push / cache pull against a real S3 endpoint on 127.0.0.1 (moto's server mode) and
file:// remotes: round trips, phrase lists, concurrent pushers, refused objects, a killed
endpoint, read-only and wrong credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from helpers import CLI
from remote_fixtures import (
    IDENTITY,
    RATE,
    WRITER_SECRET,
    MotoProcess,
    S3Endpoint,
    cached_pcm,
    fill_cache,
    free_port,
    key_of,
    moto_server,
    phrase,
    provider_env,
    remote_url,
    s3,
)

from voiceprep.cache import AudioCache
from voiceprep.errors import CacheCorruptError
from voiceprep.remote import LAYOUT, Remote

__all__ = ["moto_server", "remote_url", "s3"]  # fixtures, found by pytest through this module


def push(remote: str, cache: Path, cli: CLI, *extra: str) -> tuple[int, dict, str]:
    code, out, err = cli(*["cache", "push", remote, "--cache-dir", str(cache), "--json", *extra])
    return code, json.loads(out), err


def pull(remote: str, cache: Path, cli: CLI, *extra: str) -> tuple[int, dict, str]:
    code, out, err = cli(*["cache", "pull", remote, *extra, "--cache-dir", str(cache), "--json"])
    return code, json.loads(out), err


def verify_clean(directory: Path) -> None:
    with AudioCache(directory) as cache:
        report = cache.verify()
    assert not report.damaged, report.as_dict()


# --- round trips --------------------------------------------------------------------------


def test_push_then_pull_gives_byte_identical_hits(
    remote_url: str, tmp_path: Path, cli: CLI
) -> None:
    source = fill_cache(tmp_path / "a", range(12))
    code, summary, _ = push(remote_url, tmp_path / "a", cli)
    assert code == 0
    assert (summary["pushed"], summary["already_there"], summary["failed"]) == (12, 0, 0)
    assert summary["bytes"] > 12 * len(next(iter(source.values())))

    code, summary, _ = pull(remote_url, tmp_path / "b", cli)
    assert code == 0
    assert (summary["pulled"], summary["failed"]) == (12, 0)
    assert cached_pcm(tmp_path / "b") == source
    with AudioCache(tmp_path / "a") as a, AudioCache(tmp_path / "b") as b:
        for key in source:
            assert b.entry_bytes(key) == a.entry_bytes(key)
            entry = b.entry(key)
            assert entry is not None and entry.text == phrase(list(source).index(key))
    verify_clean(tmp_path / "b")


def test_read_many_gives_each_object_once_in_batches(remote_url: str, tmp_path: Path) -> None:
    """The transfer layer under pull: every object arrives exactly once, byte-identical to
    a single read; a key the remote lacks gives None. On S3 the downloads are coroutines on
    fsspec's loop, on a directory threads: both give the same."""
    fill_cache(tmp_path / "a", range(40))
    with AudioCache(tmp_path / "a") as cache:
        files = {key: cache.entry_bytes(key) for key in sorted(cache.keys())}
    remote = Remote(remote_url)
    for key, data in files.items():
        assert remote.write(key, data)
    absent = "f" * 64
    wanted = [*sorted(files), absent]
    batches = list(remote.read_many(wanted, jobs=3))
    arrived = [item for batch in batches for item in batch]
    assert sorted(key for key, _ in arrived) == sorted(wanted)
    got = dict(arrived)
    assert got.pop(absent) is None
    assert got == files
    assert all(batches)  # never an empty batch
    if remote_url.startswith("s3://"):  # a batch waits briefly to fill: one import each
        assert len(batches) < len(wanted) / 2
    stopped = remote.read_many(wanted, jobs=2)  # a caller that stops early (a failed pull)
    assert next(stopped)
    stopped.close()
    assert dict(item for batch in remote.read_many(wanted[:3], jobs=2) for item in batch) == {
        key: files[key] for key in wanted[:3]
    }


def test_only_what_is_missing_moves(remote_url: str, tmp_path: Path, cli: CLI) -> None:
    fill_cache(tmp_path / "a", range(6))
    assert push(remote_url, tmp_path / "a", cli)[1]["pushed"] == 6
    fill_cache(tmp_path / "a", range(6, 9))
    code, summary, _ = push(remote_url, tmp_path / "a", cli)
    assert (code, summary["pushed"], summary["already_there"]) == (0, 3, 6)
    assert set(summary["keys"]) == {key_of(i) for i in range(6, 9)}

    fill_cache(tmp_path / "b", range(4))  # this runner has some already
    code, summary, _ = pull(remote_url, tmp_path / "b", cli)
    assert (code, summary["pulled"], summary["already_there"]) == (0, 5, 4)
    assert set(cached_pcm(tmp_path / "b")) == {key_of(i) for i in range(9)}
    code, summary, _ = pull(remote_url, tmp_path / "b", cli)
    assert (code, summary["pulled"], summary["already_there"]) == (0, 0, 9)


def test_dry_run_lists_and_moves_nothing(remote_url: str, tmp_path: Path, cli: CLI) -> None:
    fill_cache(tmp_path / "a", range(3))
    code, out, _ = cli(
        *["cache", "push", remote_url, "--cache-dir", str(tmp_path / "a"), "--dry-run"]
    )
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("would push: ")]
    assert len(lines) == 3 and any(phrase(1) in line for line in lines)
    assert Remote(remote_url).listing() == {}
    push(remote_url, tmp_path / "a", cli)
    code, summary, _ = pull(remote_url, tmp_path / "b", cli, "--dry-run")
    assert (code, summary["would_pull"], summary["dry_run"]) == (0, 3, True)
    assert not (tmp_path / "b").exists() or not cached_pcm(tmp_path / "b")


def test_pull_by_phrase_list_takes_only_what_the_phrases_need(
    remote_url: str, tmp_path: Path, cli: CLI
) -> None:
    fill_cache(tmp_path / "a", range(10))
    push(remote_url, tmp_path / "a", cli)
    wanted = tmp_path / "wanted.txt"
    wanted.write_text(f"{phrase(2)}\n{phrase(7)}\nA phrase nobody warmed.\n")
    selection = ["-b", "espeak", "--voice", "en", "-r", str(RATE)]
    code, summary, err = pull(remote_url, tmp_path / "b", cli, str(wanted), *selection)
    assert code == 0
    assert summary["pulled"] == 2 and summary["missing_on_remote"] == 1
    assert "not on the remote" in err and "A phrase nobody warmed." in err
    assert set(cached_pcm(tmp_path / "b")) == {key_of(2), key_of(7)}
    # Another rate is another key: nothing of these phrases at 8 kHz is on the remote.
    code, summary, _ = pull(remote_url, tmp_path / "c", cli, str(wanted), "-r", "8000")
    assert (code, summary["pulled"]) == (0, 0)


def test_remote_from_config_file_and_environment(
    tmp_path: Path, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    fill_cache(tmp_path / "a", range(3))
    (cli.cwd / "voiceprep.toml").write_text(f'remote = "{shared}"\n')  # a plain path
    code, out, _ = cli(*["cache", "push", "--cache-dir", str(tmp_path / "a")])
    assert code == 0 and "pushed:" in out and " 3" in out
    assert len(list((shared / LAYOUT).glob("*/*.wav"))) == 3

    (cli.cwd / "voiceprep.toml").unlink()
    monkeypatch.setenv("VOICEPREP_REMOTE", shared.as_uri())
    wanted = tmp_path / "wanted.txt"
    wanted.write_text(phrase(1) + "\n")
    # The first argument is a phrase list, so the configured remote applies.
    args = ["cache", "pull", str(wanted), "-b", "espeak", "--voice", "en", "-r", str(RATE)]
    code, out, _ = cli(*[*args, "--cache-dir", str(tmp_path / "b")])
    assert code == 0
    assert set(cached_pcm(tmp_path / "b")) == {key_of(1)}


def test_no_remote_is_a_usage_error(tmp_path: Path, cli: CLI) -> None:
    code, _, err = cli(*["cache", "push", "--cache-dir", str(tmp_path / "a")])
    assert code == 2 and "no remote" in err and "VOICEPREP_REMOTE" in err


def test_missing_fsspec_backend_names_the_extra(tmp_path: Path, cli: CLI) -> None:
    # gcsfs is a test dependency: a package of that name that fails to import, first on
    # the path of a real `voiceprep` process, makes the install that lacks the extra.
    shadow = tmp_path / "without-gcsfs" / "gcsfs"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'gcsfs'\")\n")
    env = {**os.environ, "PYTHONPATH": str(shadow.parent)}
    proc = subprocess.run(
        [sys.executable, "-m", "voiceprep", "cache", "pull", "gs://bucket/x", "--cache-dir", "c"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'voiceprep[gcs]'" in proc.stderr and proc.stderr.count("\n") == 1
    # A backend fsspec knows but no extra of ours carries (ocifs is not installed).
    code, _, err = cli(*["cache", "pull", "oci://bucket/x", "--cache-dir", "c"])
    assert code == 2 and "oci:// remotes need an extra package" in err and "Traceback" not in err
    code, _, err = cli(*["cache", "pull", "nosuch://x/y", "--cache-dir", "c"])
    assert code == 2 and "nosuch" in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()


# --- concurrency, immutability, refused objects -------------------------------------------


def test_concurrent_pushers_of_overlapping_caches(
    remote_url: str, tmp_path: Path, cli: CLI
) -> None:
    # Two runners warmed overlapping lists; their audio for shared phrases differs (as two
    # syntheses may). Both push at once: each key ends up stored once, whole and valid.
    a = fill_cache(tmp_path / "a", range(0, 40))
    b = fill_cache(tmp_path / "b", range(20, 60), variant=1)
    runs = [
        cli.popen(
            "cache",
            "push",
            remote_url,
            "--cache-dir",
            d,
            "-j",
            "4",
            "--json",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for d in (tmp_path / "a", tmp_path / "b")
    ]
    results = [(p.wait(120), p.communicate()) for p in runs]
    assert [code for code, _ in results] == [0, 0], results
    summaries = [json.loads(out) for _, (out, _) in results]
    assert sum(s["pushed"] for s in summaries) == 60  # no key written twice
    assert all(s["failed"] == 0 for s in summaries)
    assert len(Remote(remote_url).listing()) == 60

    code, summary, _ = pull(remote_url, tmp_path / "c", cli)
    assert (code, summary["pulled"], summary["failed"]) == (0, 60, 0)
    pulled = cached_pcm(tmp_path / "c")
    for key, pcm in pulled.items():
        assert pcm in (a.get(key), b.get(key))
    # Pushing again changes nothing: objects are immutable.
    before = {k: Remote(remote_url).read(k) for k in list(pulled)[:5]}
    code, summary, _ = push(remote_url, tmp_path / "b", cli)
    assert (code, summary["pushed"], summary["already_there"]) == (0, 0, 40)
    assert {k: Remote(remote_url).read(k) for k in before} == before


def _put_object(remote_url: str, key: str, data: bytes, s3: S3Endpoint | None) -> None:
    if s3 is not None:
        s3.client().put_object(
            Bucket=s3.bucket, Key=f"team/prompts/{LAYOUT}/{key[:2]}/{key}.wav", Body=data
        )
    else:
        path = Path(Remote(remote_url).object_path(key))
        path.unlink()
        path.write_bytes(data)


def test_corrupt_and_wrong_key_objects_are_refused(
    remote_url: str,
    tmp_path: Path,
    cli: CLI,
    request: pytest.FixtureRequest,
) -> None:
    fill_cache(tmp_path / "a", range(4))
    push(remote_url, tmp_path / "a", cli)
    endpoint = request.getfixturevalue("s3") if remote_url.startswith("s3://") else None
    remote = Remote(remote_url)
    good = remote.read(key_of(0))
    assert good is not None
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0xFF  # one bit of audio changed: sha256 mismatch
    _put_object(remote_url, key_of(0), bytes(flipped), endpoint)
    _put_object(remote_url, key_of(1), good[: len(good) // 3], endpoint)  # truncated
    other = remote.read(key_of(3))
    assert other is not None
    _put_object(remote_url, key_of(2), other, endpoint)  # a valid entry, of another key

    code, summary, err = pull(remote_url, tmp_path / "b", cli)
    assert code == 1
    assert (summary["pulled"], summary["failed"]) == (1, 3)
    failed = {f["key"]: f["reason"] for f in summary["failures"]}
    assert set(failed) == {key_of(0), key_of(1), key_of(2)}
    assert "another key" in failed[key_of(2)]
    assert "sha256" in failed[key_of(0)] or "match" in failed[key_of(0)]
    assert err.count("voiceprep: error:") == 3 and "Traceback" not in err
    assert set(cached_pcm(tmp_path / "b")) == {key_of(3)}  # nothing bad was imported
    verify_clean(tmp_path / "b")


def test_padded_objects_are_refused_and_never_read_past_their_riff(
    remote_url: str, tmp_path: Path, cli: CLI, request: pytest.FixtureRequest
) -> None:
    """An object with zeros after its entry (the audio is right, the file is not) is
    refused by pull, as a large entry (past the first read) and a small one; the good ones
    beside them are pulled; nothing padded lands in the cache."""
    fill_cache(tmp_path / "a", [0, 1], seconds=40)  # 1.3 MB each: read in two ranges
    fill_cache(tmp_path / "a", [2, 3])
    push(remote_url, tmp_path / "a", cli)
    endpoint = request.getfixturevalue("s3") if remote_url.startswith("s3://") else None
    remote = Remote(remote_url)
    for index in (0, 2):
        data = remote.read(key_of(index))
        assert data is not None
        _put_object(remote_url, key_of(index), data + bytes(3 << 20), endpoint)
    for index in (0, 2):
        with pytest.raises(CacheCorruptError, match="RIFF"):
            remote.read(key_of(index))

    code, summary, err = pull(remote_url, tmp_path / "b", cli)
    assert code == 1
    assert (summary["pulled"], summary["failed"]) == (2, 2)
    assert {f["key"] for f in summary["failures"]} == {key_of(0), key_of(2)}
    assert "Traceback" not in err
    assert cached_pcm(tmp_path / "b") == {
        key: pcm for key, pcm in cached_pcm(tmp_path / "a").items() if key in (key_of(1), key_of(3))
    }
    verify_clean(tmp_path / "b")


def test_a_huge_padded_object_is_refused_without_reading_it(tmp_path: Path, cli: CLI) -> None:
    """512 MiB past the RIFF (a sparse file: no disk used): refused, reading a few bytes."""
    fill_cache(tmp_path / "a", [0])
    shared = tmp_path / "shared"
    push(str(shared), tmp_path / "a", cli)
    path = Path(Remote(str(shared)).object_path(key_of(0)))
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size + (512 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(CacheCorruptError, match="RIFF"):
            Remote(str(shared)).read(key_of(0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_odd_names_and_symlinks_on_a_shared_directory_are_ignored(tmp_path: Path, cli: CLI) -> None:
    shared = tmp_path / "shared"
    fill_cache(tmp_path / "a", range(2))
    push(str(shared), tmp_path / "a", cli)
    secret = tmp_path / "outside.txt"
    secret.write_text("not for the cache")
    key = key_of(9)
    (shared / LAYOUT / key[:2]).mkdir(exist_ok=True)
    (shared / LAYOUT / key[:2] / f"{key}.wav").symlink_to(secret)
    (shared / LAYOUT / "zz").mkdir()
    (shared / LAYOUT / "zz" / f"{key}.wav").write_bytes(b"in the wrong shard")
    (shared / LAYOUT / "readme.txt").write_text("hello")
    assert set(Remote(str(shared)).listing()) == {key_of(0), key_of(1)}
    code, summary, _ = pull(str(shared), tmp_path / "b", cli)
    assert (code, summary["pulled"]) == (0, 2)


def test_a_url_with_credentials_is_refused_without_echoing_them(tmp_path: Path, cli: CLI) -> None:
    secret = "Zq8r7UrlSecretValue0123"
    code, out, err = cli(
        *["cache", "push", f"s3://AKIAX:{secret}@bucket/p", "--cache-dir", str(tmp_path)]
    )
    assert code == 2 and "credentials" in err
    assert secret not in out + err and "AKIAX" not in out + err


# --- failures of the endpoint and of credentials --------------------------------------------


def test_endpoint_killed_mid_transfer_then_rerun_completes(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    server = MotoProcess(port).start()
    try:
        provider_env(monkeypatch, server.url, "AKIAKILLTEST", WRITER_SECRET)
        endpoint = S3Endpoint(server.url, "voiceprep-killed")
        endpoint.client().create_bucket(Bucket=endpoint.bucket)
        url = endpoint.remote()
        source = fill_cache(tmp_path / "a", range(120), seconds=1.0)
        push_args = ["cache", "push", url, "--cache-dir", str(tmp_path / "a"), "-j", "8"]
        assert cli.process(*push_args).code == 0

        run = cli.popen(
            "cache",
            "pull",
            url,
            "--cache-dir",
            tmp_path / "b",
            "-j",
            "1",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        audio = tmp_path / "b"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _entry_files(audio) < 5:
            time.sleep(0.05)
        server.kill()
        out, err = run.communicate(timeout=180)
        assert run.returncode == 1, err
        assert "pull stopped" in err and "run it again" in err
        assert "Traceback" not in err and WRITER_SECRET not in out + err
        partial = cached_pcm(tmp_path / "b")
        assert 5 <= len(partial) < 120
        assert all(source[k] == pcm for k, pcm in partial.items())
        verify_clean(tmp_path / "b")

        # The endpoint comes back (moto keeps nothing: the writer pushes again), and the
        # same command completes, pulling only the rest.
        server = MotoProcess(port).start()
        endpoint.client().create_bucket(Bucket=endpoint.bucket)
        assert cli.process(*push_args).code == 0
        rerun = cli.process("cache", "pull", url, "--json", "--cache-dir", tmp_path / "b")
        assert rerun.code == 0, rerun.err
        summary = json.loads(rerun.out)
        assert summary["pulled"] == 120 - len(partial)
        assert cached_pcm(tmp_path / "b") == source
    finally:
        server.kill()


def _entry_files(directory: Path) -> int:
    return sum(1 for _ in directory.glob("**/*.wav")) if directory.exists() else 0


def test_read_only_credentials_pull_but_cannot_push(
    s3: S3Endpoint,
    tmp_path: Path,
    cli: CLI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader_id, reader_secret, writer_id, writer_secret = _iam_users(s3)
    from moto import settings

    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # enforce IAM from now
    url = s3.remote()
    fill_cache(tmp_path / "a", range(5))
    provider_env(monkeypatch, s3.url, writer_id, writer_secret)
    assert push(url, tmp_path / "a", cli)[0] == 0

    provider_env(monkeypatch, s3.url, reader_id, reader_secret)
    code, summary, _ = pull(url, tmp_path / "b", cli)
    assert (code, summary["pulled"]) == (0, 5)

    fill_cache(tmp_path / "b", range(5, 7))
    code, out, err = cli(*["cache", "push", url, "--cache-dir", str(tmp_path / "b")])
    assert code == 1 and "access denied" in err
    assert reader_secret not in out + err and writer_secret not in out + err
    assert "Traceback" not in err
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
    assert len(Remote(url).listing()) == 5  # nothing was written


def test_wrong_credentials_fail_clearly_and_never_appear(
    s3: S3Endpoint,
    tmp_path: Path,
    cli: CLI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader_id, _, _, _ = _iam_users(s3)
    from moto import settings

    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    wrong_secret = "WrongSecret/abcdefghijklmnop0123456789"
    provider_env(monkeypatch, s3.url, reader_id, wrong_secret)
    fill_cache(tmp_path / "a", range(2))
    for args in (
        ["cache", "push", s3.remote(), "--cache-dir", str(tmp_path / "a")],
        ["cache", "pull", s3.remote(), "--cache-dir", str(tmp_path / "b"), "--json"],
        ["--debug", "cache", "pull", s3.remote(), "--cache-dir", str(tmp_path / "b")],
    ):
        try:
            code, out, err = cli(*args)
        except Exception as exc:  # --debug re-raises: the exception text is output too
            code, out, err = 1, "", f"{exc!r} {exc}"
        assert code == 1
        assert wrong_secret not in out + err
        assert wrong_secret[:12] not in out + err


READ_ACTIONS = ["s3:GetObject", "s3:ListBucket", "s3:HeadObject", "s3:ListObjectsV2"]


def _iam_users(s3: S3Endpoint) -> tuple[str, str, str, str]:
    """A reader (Get + List on the bucket) and a writer (also Put), in moto's IAM.

    Each is granted the IAM actions AWS checks (s3:GetObject covers HeadObject there,
    s3:ListBucket covers ListObjectsV2) and the names moto 5.2.6 and later check instead:
    the API operation's own (s3:HeadObject, s3:ListObjectsV2)."""
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=s3.url,
        region_name="us-east-1",
        aws_access_key_id="AKIAADMIN",
        aws_secret_access_key="admin",
    )
    credentials: list[str] = []
    for name, actions in (
        ("reader", READ_ACTIONS),
        ("writer", [*READ_ACTIONS, "s3:PutObject"]),
    ):
        user = f"{name}-{s3.bucket}"
        iam.create_user(UserName=user)
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": actions,
                    "Resource": [f"arn:aws:s3:::{s3.bucket}", f"arn:aws:s3:::{s3.bucket}/*"],
                }
            ],
        }
        iam.put_user_policy(UserName=user, PolicyName="cache", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        credentials += [key["AccessKeyId"], key["SecretAccessKey"]]
    return credentials[0], credentials[1], credentials[2], credentials[3]


def test_identity_fixture_matches_espeak_keys() -> None:
    # The entries the helpers make are keyed as `warm -b espeak --voice en -r 16000` keys.
    from voiceprep.backends import get_backend

    assert get_backend("espeak", voice="en", options={}).identity("en") == IDENTITY
    assert os.environ.get("VOICEPREP_REMOTE") is None


def test_progress_bar_and_table_on_a_terminal(cli: CLI, tmp_path: Path) -> None:
    import pty

    from helpers import read_terminal

    shared = tmp_path / "shared"
    fill_cache(tmp_path / "a", range(150))
    assert cli("cache", "push", shared, "--cache-dir", tmp_path / "a").code == 0
    leader, follower = pty.openpty()
    process = cli.popen(
        "cache", "pull", shared, "--cache-dir", tmp_path / "b", "-j", "2",
        stdin=follower, stdout=follower, stderr=follower,
        env={"COLUMNS": "100", "NO_COLOR": "1"},
    )  # fmt: skip
    os.close(follower)
    screen = read_terminal(leader)
    assert process.wait(60) == 0
    assert "pulling" in screen and "/150" in screen  # the bar, on stderr
    assert "pulled" in screen and "150" in screen  # the summary table


def test_jobs_must_be_at_least_one(cli: CLI, tmp_path: Path) -> None:
    result = cli("cache", "push", tmp_path / "r", "-j", "0", "--cache-dir", tmp_path / "a")
    assert result.code == 2 and "--jobs" in result.err
