"""The SFTP intake against asyncssh's real client on 127.0.0.1 (docs/security.md F2-F9, R7)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from roster_api.db import session_scope
from roster_api.intake import credentials
from roster_api.models import SftpCredential, utcnow

SftpEnv = Any  # the `sftp_env` fixture's SftpEnv (tests/intake/conftest.py)
StartIntake = Any
CSV = b"school_id,school_name\n1,North\n"


def _local(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


async def _refused(coro: Any) -> asyncssh.SFTPError:
    with pytest.raises(asyncssh.SFTPError) as info:
        await coro
    return info.value


async def test_upload_is_queued_and_readable_back(
    sftp_env: SftpEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="roster_api.sftp")
    async with await sftp_env.connect() as conn, conn.start_sftp_client() as sftp:
        await sftp.put(_local(tmp_path, "r.csv", CSV), "roster.csv")
        assert await sftp.listdir(".") == [".", "..", "results", "roster.csv"]
        async with sftp.open("roster.csv", "rb") as fh:
            assert await fh.read() == CSV
    final = sftp_env.folder() / "roster.csv"
    assert final.read_bytes() == CSV
    assert stat.S_IMODE(final.stat().st_mode) == 0o600
    assert list((sftp_env.folder() / ".partial").iterdir()) == []
    [call] = sftp_env.recorder.calls
    assert call["content"] == CSV
    assert call["source"] == "sftp"
    assert call["district_id"] == "d1"
    assert call["filename"] == "roster.csv"
    assert call["created_by"] == f"sftp:{sftp_env.login.username}"
    events = {r.fields["event"]: r.fields for r in caplog.records if hasattr(r, "fields")}
    assert events["sftp.auth.success"]["method"] == "password"
    received = events["sftp.upload"]
    assert (received["file"], received["size"]) == ("roster.csv", len(CSV))
    assert received["sha256"] == hashlib.sha256(CSV).hexdigest()
    assert received["import_id"] == "imp_1"
    assert "North" not in caplog.text  # never the file's contents


def test_minimum_asyncssh_version() -> None:
    from roster_api.intake.sftp import MIN_ASYNCSSH, check_asyncssh_version

    check_asyncssh_version()
    assert MIN_ASYNCSSH >= (2, 23, 1)


async def test_file_count_is_capped(sftp_env: SftpEnv, tmp_path: Path) -> None:
    from roster_api.intake import sftp as intake_sftp

    folder = sftp_env.folder()
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(intake_sftp.MAX_UPLOAD_FILES):
        (folder / f"f{n}.csv").write_bytes(b"")
    async with await sftp_env.connect() as conn, conn.start_sftp_client() as sftp:
        error = await _refused(sftp.put(_local(tmp_path, "x.csv", CSV), "one-more.csv"))
        assert "overwrite one of them" in str(error.reason)
        await sftp.put(_local(tmp_path, "x.csv", CSV), "f0.csv")  # overwriting is fine


async def test_put_preserving_mode_saves_the_file_but_not_the_mode(sftp_env: SftpEnv, tmp_path: Path) -> None:
    async with await sftp_env.connect() as conn, conn.start_sftp_client() as sftp:
        # `put -p` sends the mode after the data: the upload is complete and kept, the chmod refused
        await _refused(sftp.put(_local(tmp_path, "r.csv", CSV), "roster.csv", preserve=True))
    assert len(sftp_env.recorder.calls) == 1
    final = sftp_env.folder() / "roster.csv"
    assert final.read_bytes() == CSV
    assert stat.S_IMODE(final.stat().st_mode) == 0o600


async def test_mode_asked_by_client_is_ignored(sftp_env: SftpEnv) -> None:
    async with (
        await sftp_env.connect() as conn,
        conn.start_sftp_client() as sftp,
        sftp.open("open.csv", "wb", attrs=asyncssh.SFTPAttrs(permissions=0o777)) as fh,
    ):
        await fh.write(CSV)
    assert stat.S_IMODE((sftp_env.folder() / "open.csv").stat().st_mode) == 0o600


async def test_no_import_when_the_district_turned_it_off(start_intake: StartIntake, tmp_path: Path) -> None:
    env = await start_intake()
    from roster_api.models import District

    with session_scope(env.engine) as session:
        district = session.get(District, "d1")
        assert district is not None
        district.import_on_upload = False
        session.add(district)
    async with await env.connect() as conn, conn.start_sftp_client() as sftp:
        await sftp.put(_local(tmp_path, "r.csv", CSV), "roster.csv")
    assert (env.folder() / "roster.csv").read_bytes() == CSV
    assert env.recorder.calls == []


async def test_wrong_password_and_unknown_user(sftp_env: SftpEnv) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        await sftp_env.connect(password="not-the-password")
    with pytest.raises(asyncssh.PermissionDenied):
        await sftp_env.connect(username="nobody-here", password=sftp_env.login.password)


async def test_failed_logins_are_logged_without_the_password(
    sftp_env: SftpEnv, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        await sftp_env.connect(password="hunter2-secret-guess")
    records = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "sftp.auth.failure"]
    assert records
    assert records[0].fields["username"] == sftp_env.login.username  # type: ignore[attr-defined]
    assert records[0].fields["address"] == "127.0.0.1"  # type: ignore[attr-defined]
    assert "hunter2" not in caplog.text


class _Guesser(asyncssh.SSHClient):
    def __init__(self) -> None:
        self.tries = 0

    def password_auth_requested(self) -> str:
        self.tries += 1
        return f"guess-{self.tries}"


async def test_a_few_failures_close_the_connection(sftp_env: SftpEnv) -> None:
    guesser = _Guesser()
    with pytest.raises((asyncssh.PermissionDenied, asyncssh.ConnectionLost, asyncssh.DisconnectError)):
        await asyncssh.connect(
            "127.0.0.1",
            sftp_env.port,
            username=sftp_env.login.username,
            client_factory=lambda: guesser,
            known_hosts=sftp_env.known_hosts,
            client_keys=None,
            agent_path=None,
            config=None,
        )
    assert guesser.tries == sftp_env.settings.sftp_max_auth_failures


async def test_repeated_failures_lock_the_username_out_then_back_off(sftp_env: SftpEnv) -> None:
    for _ in range(sftp_env.settings.sftp_lockout_failures):
        with pytest.raises(asyncssh.PermissionDenied):
            await sftp_env.connect(password="wrong")
    # even the right password is refused while locked out
    with pytest.raises(asyncssh.PermissionDenied):
        await sftp_env.connect()
    await asyncio.sleep(sftp_env.settings.sftp_lockout_seconds * 2.5)
    async with await sftp_env.connect() as conn:
        assert conn.get_extra_info("username") == sftp_env.login.username


async def test_repeated_failures_from_one_address_back_off_every_username(sftp_env: SftpEnv) -> None:
    for n in range(sftp_env.intake.throttle.address_budget):
        with pytest.raises(asyncssh.PermissionDenied):
            await sftp_env.connect(username=f"guess-{n}", password="wrong")
    with pytest.raises(asyncssh.PermissionDenied):
        await sftp_env.connect()  # a valid login from the same address waits too
    await asyncio.sleep(sftp_env.settings.sftp_lockout_seconds * 2.5)
    async with await sftp_env.connect() as conn:
        assert conn.get_extra_info("username") == sftp_env.login.username


async def test_public_key_login(start_intake: StartIntake) -> None:
    env = await start_intake()
    key = asyncssh.generate_private_key("ssh-ed25519")
    other = asyncssh.generate_private_key("ssh-ed25519")
    with session_scope(env.engine) as session:
        credentials.add_public_key(
            session=session,
            district_id="d1",
            credential_id=env.login.credential_id,
            public_key=key.export_public_key("openssh").decode(),
            actor="test",
        )
    async with await env.connect(password="", client_keys=[key], preferred_auth="publickey") as conn:
        assert conn.get_extra_info("username") == env.login.username
    with pytest.raises(asyncssh.PermissionDenied):
        await env.connect(password="", client_keys=[other], preferred_auth="publickey")


async def test_revoked_login_is_refused_and_open_connections_close(sftp_env: SftpEnv) -> None:
    async with await sftp_env.connect() as conn:
        with session_scope(sftp_env.engine) as session:
            credential = session.get(SftpCredential, sftp_env.login.credential_id)
            assert credential is not None
            credential.revoked_at = utcnow()
            session.add(credential)
        await sftp_env.intake._close_revoked()
        await asyncio.wait_for(conn.wait_closed(), 5)
    with pytest.raises(asyncssh.PermissionDenied):
        await sftp_env.connect()


@pytest.mark.parametrize(
    "path",
    [
        "../roster.csv",
        "../../etc/passwd",
        "/etc/passwd",
        "/../d2/secret.csv",
        "results/../../x.csv",
        "a/b.csv",
    ],
)
async def test_traversal_and_absolute_paths_are_refused(sftp_env: SftpEnv, tmp_path: Path, path: str) -> None:
    local = _local(tmp_path, "x.csv", CSV)
    async with await sftp_env.connect() as conn, conn.start_sftp_client() as sftp:
        await _refused(sftp.put(local, path))
        await _refused(sftp.get(path, str(tmp_path / "out")))
    base = sftp_env.settings.data_dir
    assert not (base / "sftp" / "roster.csv").exists()
    assert not (base / "x.csv").exists()
    assert sftp_env.recorder.calls == []


async def test_absolute_path_inside_the_folder_works(sftp_env: SftpEnv, tmp_path: Path) -> None:
    async with await sftp_env.connect() as conn, conn.start_sftp_client() as sftp:
        await sftp.put(_local(tmp_path, "x.csv", CSV), "/roster.csv")
        assert await sftp.realpath("results/..") == "/"
        await _refused(sftp.realpath(".."))
    assert (sftp_env.folder() / "roster.csv").read_bytes() == CSV


async def test_symlinks_and_hard_links_are_refused_and_never_followed(
    sftp_env: SftpEnv, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    async with await sftp_env.connect() as conn, conn.start_sftp_client() as sftp:
        await sftp.put(_local(tmp_path, "x.csv", CSV), "roster.csv")
        await _refused(sftp.symlink("roster.csv", "link.csv"))
        await _refused(sftp.symlink(str(secret), "link.csv"))
        await _refused(sftp.link("roster.csv", "hard.csv"))
        await _refused(sftp.readlink("roster.csv"))
        # a link planted inside the folder on the server side is not followed either
        os.symlink(secret, sftp_env.folder() / "planted.csv")
        await _refused(sftp.get("planted.csv", str(tmp_path / "out")))
        assert "planted.csv" not in await sftp.listdir(".")
        # uploading under the link's name replaces the link, never writes through it
        await sftp.put(_local(tmp_path, "y.csv", b"new"), "planted.csv")
        # and a link planted in place of results/ is not followed either
        (sftp_env.folder() / "results").rmdir()
        os.symlink(tmp_path, sftp_env.folder() / "results")
        await _refused(sftp.listdir("results"))
        await _refused(sftp.get("results/secret.txt", str(tmp_path / "out")))
    assert secret.read_text() == "outside"
    assert not (sftp_env.folder() / "planted.csv").is_symlink()
    assert (sftp_env.folder() / "planted.csv").read_bytes() == b"new"
    assert not (sftp_env.folder() / "link.csv").exists()
    assert not (sftp_env.folder() / "hard.csv").exists()


async def test_another_districts_files_are_invisible(sftp_env: SftpEnv, tmp_path: Path) -> None:
    sftp_env.add_district("d2")
    other = sftp_env.add_login("d2")
    async with (
        await sftp_env.connect(username=other.username, password=other.password) as conn,
        conn.start_sftp_client() as sftp,
    ):
        await sftp.put(_local(tmp_path, "x.csv", b"d2 data"), "theirs.csv")
    async with await sftp_env.connect() as conn, conn.start_sftp_client() as sftp:
        assert "theirs.csv" not in await sftp.listdir(".")
        for path in ["theirs.csv", "/../d2/theirs.csv", "../d2/theirs.csv", "/d2/theirs.csv"]:
            await _refused(sftp.get(path, str(tmp_path / "out")))
        await _refused(sftp.listdir("/../d2"))
    assert (sftp_env.folder("d2") / "theirs.csv").read_bytes() == b"d2 data"


async def test_mkdir_rmdir_chmod_remove_rename_are_refused(sftp_env: SftpEnv, tmp_path: Path) -> None:
    async with await sftp_env.connect() as conn, conn.start_sftp_client() as sftp:
        await sftp.put(_local(tmp_path, "x.csv", CSV), "roster.csv")
        await _refused(sftp.mkdir("newdir"))
        await _refused(sftp.rmdir("results"))
        await _refused(sftp.chmod("roster.csv", 0o777))
        await _refused(sftp.chown("roster.csv", 0, 0))
        await _refused(sftp.truncate("roster.csv", 0))
        await _refused(sftp.setstat("roster.csv", asyncssh.SFTPAttrs(permissions=0o644, mtime=1)))
        # setting times is accepted and ignored (WinSCP does it after every upload)
        await sftp.utime("roster.csv", (1, 1))
        await _refused(sftp.utime("missing.csv", (1, 1)))
        await _refused(sftp.remove("roster.csv"))
        await _refused(sftp.rename("roster.csv", "other.csv"))
        await _refused(sftp.posix_rename("roster.csv", "other.csv"))
        await _refused(sftp.put(_local(tmp_path, "r.csv", CSV), "results/mine.csv"))
    info = (sftp_env.folder() / "roster.csv").stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_mtime > 1
    assert (sftp_env.folder() / "roster.csv").read_bytes() == CSV
    assert not (sftp_env.folder() / "newdir").exists()


@pytest.mark.parametrize("name", ["roster.txt", "roster.csv.exe", ".hidden.csv", "roster", "ro ster.csv"])
async def test_only_csv_names_are_accepted(sftp_env: SftpEnv, tmp_path: Path, name: str) -> None:
    async with await sftp_env.connect() as conn, conn.start_sftp_client() as sftp:
        await _refused(sftp.put(_local(tmp_path, "x.csv", CSV), name))
    assert not (sftp_env.folder() / name).exists()
    assert sftp_env.recorder.calls == []


async def test_oversize_upload_is_refused_and_nothing_is_left(sftp_env: SftpEnv, tmp_path: Path) -> None:
    big = b"x" * (sftp_env.settings.sftp_max_file_bytes + 1)
    async with await sftp_env.connect() as conn, conn.start_sftp_client() as sftp:
        error = await _refused(sftp.put(_local(tmp_path, "big.csv", big), "roster.csv"))
        assert "limited to" in str(error.reason)
    assert not (sftp_env.folder() / "roster.csv").exists()
    assert list((sftp_env.folder() / ".partial").iterdir()) == []
    assert sftp_env.recorder.calls == []


async def test_district_quota(sftp_env: SftpEnv, tmp_path: Path) -> None:
    chunk = b"y" * (60 * 1024)  # quota 160 KiB: two fit, the third does not
    async with await sftp_env.connect() as conn, conn.start_sftp_client() as sftp:
        await sftp.put(_local(tmp_path, "a.csv", chunk), "a.csv")
        await sftp.put(_local(tmp_path, "b.csv", chunk), "b.csv")
        # overwriting a file frees its old size
        await sftp.put(_local(tmp_path, "b.csv", chunk), "b.csv")
        error = await _refused(sftp.put(_local(tmp_path, "c.csv", chunk), "c.csv"))
        assert "limited to" in str(error.reason)
    assert not (sftp_env.folder() / "c.csv").exists()
    assert len(sftp_env.recorder.calls) == 3


async def test_exec_shell_scp_and_forwarding_are_refused(sftp_env: SftpEnv, tmp_path: Path) -> None:
    async with await sftp_env.connect() as conn:
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.run("cat /etc/passwd", check=True)
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.create_process()  # a shell
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.create_process(subsystem="netconf")
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.create_connection(asyncssh.SSHTCPSession, "127.0.0.1", sftp_env.port)
        with pytest.raises(asyncssh.ChannelListenError):
            await conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", 9)
        with pytest.raises((asyncssh.SFTPError, asyncssh.ChannelOpenError, OSError)):
            await asyncssh.scp(_local(tmp_path, "x.csv", CSV), (conn, "roster.csv"))
    assert not (sftp_env.folder() / "roster.csv").exists()


@pytest.mark.parametrize(
    "option",
    [
        {"mac_algs": ["hmac-sha1"], "encryption_algs": ["aes128-ctr"]},
        {"mac_algs": ["hmac-sha2-256"], "encryption_algs": ["aes128-ctr"]},
        {"encryption_algs": ["aes128-cbc"]},
        {"kex_algs": ["diffie-hellman-group14-sha1"]},
    ],
)
async def test_sha1_and_cbc_are_not_offered(sftp_env: SftpEnv, option: dict[str, list[str]]) -> None:
    with pytest.raises((asyncssh.KeyExchangeFailed, asyncssh.DisconnectError)):
        await sftp_env.connect(**option)


async def test_two_uploads_at_once(sftp_env: SftpEnv, tmp_path: Path) -> None:
    one = b"a,b\n" + b"1,1\n" * 4000
    two = b"a,b\n" + b"2,2\n" * 4000

    async def upload(data: bytes, name: str, remote: str) -> None:
        async with await sftp_env.connect() as conn, conn.start_sftp_client() as sftp:
            await sftp.put(_local(tmp_path, name, data), remote, block_size=1024)

    await asyncio.gather(upload(one, "one.csv", "roster.csv"), upload(two, "two.csv", "roster.csv"))
    await asyncio.gather(upload(one, "one.csv", "one.csv"), upload(two, "two.csv", "two.csv"))
    final = (sftp_env.folder() / "roster.csv").read_bytes()
    assert final in {one, two}
    calls = sftp_env.recorder.calls
    assert sorted(c["content"] for c in calls[:2]) == sorted([one, two])
    # the file left under the name is the one queued last
    assert calls[1]["content"] == final
    assert (sftp_env.folder() / "one.csv").read_bytes() == one
    assert (sftp_env.folder() / "two.csv").read_bytes() == two
    assert list((sftp_env.folder() / ".partial").iterdir()) == []


async def test_interrupted_upload_is_never_imported(sftp_env: SftpEnv) -> None:
    conn = await sftp_env.connect()
    sftp = await conn.start_sftp_client()
    fh = await sftp.open("roster.csv", "wb")
    await fh.write(b"school_id,school_name\n1,No")
    partial = sftp_env.folder() / ".partial"
    assert len(list(partial.iterdir())) == 1
    conn.abort()
    for _ in range(100):
        if not list(partial.iterdir()):
            break
        await asyncio.sleep(0.05)
    assert list(partial.iterdir()) == []
    assert not (sftp_env.folder() / "roster.csv").exists()
    assert sftp_env.recorder.calls == []


async def test_session_ended_without_close_is_not_imported(sftp_env: SftpEnv) -> None:
    async with await sftp_env.connect() as conn:
        sftp = await conn.start_sftp_client()
        fh = await sftp.open("roster.csv", "wb")
        await fh.write(CSV)
        sftp.exit()
        await sftp.wait_closed()
        await asyncio.sleep(0.2)
    assert not (sftp_env.folder() / "roster.csv").exists()
    assert sftp_env.recorder.calls == []


async def test_sessions_per_user_are_capped(sftp_env: SftpEnv) -> None:
    cap = sftp_env.settings.sftp_max_sessions_per_user
    async with await sftp_env.connect() as conn:
        clients = [await conn.start_sftp_client() for _ in range(cap)]
        extra = await conn.start_sftp_client()
        error = await _refused(extra.listdir("."))
        assert "Too many SFTP sessions" in str(error.reason)
        for client in clients:
            assert "results" in await client.listdir(".")
            client.exit()
        await asyncio.sleep(0.1)
        again = await conn.start_sftp_client()
        assert "results" in await again.listdir(".")


async def test_idle_connections_are_closed(start_intake: StartIntake, sftp_settings: Any) -> None:
    env = await start_intake(settings=sftp_settings.model_copy(update={"sftp_idle_timeout_seconds": 0.6}))
    conn = await env.connect()
    await asyncio.wait_for(conn.wait_closed(), 5)


async def test_results_are_readable_and_read_only(sftp_env: SftpEnv, tmp_path: Path) -> None:
    results = sftp_env.folder() / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "roster.csv.20261129T020000Z.txt").write_text("status: applied\n")
    async with await sftp_env.connect() as conn, conn.start_sftp_client() as sftp:
        assert await sftp.listdir("results") == [".", "..", "roster.csv.20261129T020000Z.txt"]
        async with sftp.open("results/roster.csv.20261129T020000Z.txt") as fh:
            assert await fh.read() == "status: applied\n"
        await _refused(sftp.open("results/roster.csv.20261129T020000Z.txt", "wb"))
        await _refused(sftp.remove("results/roster.csv.20261129T020000Z.txt"))


async def test_host_key_is_persistent_and_private(start_intake: StartIntake) -> None:
    first = await start_intake()
    second = await start_intake()
    assert first.intake.host_key_fingerprint == second.intake.host_key_fingerprint
    assert first.intake.host_key_fingerprint.startswith("SHA256:")
    path = first.settings.data_dir / "ssh_host_ed25519_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    async with await second.connect() as conn:
        assert conn.get_extra_info("username") == second.login.username


ROSTER = (
    "school_id,school_name,teacher_email,teacher_first_name,teacher_last_name,teacher_clever_id,"
    "class_id,class_name,student_first_name,student_last_name,student_clever_id,student_email,"
    "student_grade_level\n"
    "s1,North,t@x.org,Tina,Teach,5787451bd72145af07002281,c1,Math,Ann,Stu,5787451bd72145af07002282,,3\n"
)
BAD_ROSTER = ROSTER + "s1,North,t@x.org,Tina,Teach,5787451bd72145af07002281,c1,Math,Bob,Stu,12345,,3\n"


async def _run_worker(env: SftpEnv) -> list[Any]:
    from roster_api.jobs.worker import ImportWorker

    worker = ImportWorker(engine=env.engine, settings=env.settings)
    return await asyncio.to_thread(worker.run_until_idle)


async def test_upload_is_imported_and_the_result_is_readable(
    start_intake: StartIntake, tmp_path: Path
) -> None:
    env = await start_intake(enqueue=None)  # the real import queue
    async with await env.connect() as conn, conn.start_sftp_client() as sftp:
        await sftp.put(_local(tmp_path, "good.csv", ROSTER.encode()), "roster.csv")
        [run] = await _run_worker(env)
        assert (run.status, run.source, run.created_by) == ("applied", "sftp", f"sftp:{env.login.username}")
        [name] = [n for n in await sftp.listdir("results") if n.endswith(".txt")]
        assert name.startswith("roster.csv.")
        async with sftp.open(f"results/{name}") as fh:
            text = await fh.read()
        assert "Status:   APPLIED" in text
        assert run.id in text

        await sftp.put(_local(tmp_path, "bad.csv", BAD_ROSTER.encode()), "roster.csv")
        [rejected] = await _run_worker(env)
        assert rejected.status == "rejected"
        names = await sftp.listdir("results")
        [errors_csv] = [n for n in names if n.endswith(".errors.csv") and rejected.id[-6:] in n]
        [report] = [n for n in names if n.endswith(".txt") and rejected.id[-6:] in n]
        async with sftp.open(f"results/{report}") as fh:
            text = await fh.read()
        assert "REJECTED" in text
        assert "line 3, column student_clever_id" in text
        async with sftp.open(f"results/{errors_csv}") as fh:
            assert "student_clever_id" in await fh.read()


async def test_start_sweeps_expired_files_and_stale_partials(
    start_intake: StartIntake, sftp_settings: Any
) -> None:
    folder = sftp_settings.data_dir / "sftp" / "d9"
    (folder / ".partial").mkdir(parents=True)
    (folder / "results").mkdir()
    old = time.time() - 40 * 86_400
    files = {
        "old_upload": folder / "old.csv",
        "old_result": folder / "results" / "old.txt",
        "stale_partial": folder / ".partial" / "x.csv.1.partial",
        "fresh_partial": folder / ".partial" / "y.csv.2.partial",
        "fresh_upload": folder / "roster.csv",
    }
    for name, path in files.items():
        path.write_text(name)
        if not name.startswith("fresh"):
            os.utime(path, (old, old))
    await start_intake()
    assert sorted(name for name, path in files.items() if path.exists()) == ["fresh_partial", "fresh_upload"]


@pytest.mark.skipif(shutil.which("sftp") is None, reason="OpenSSH's sftp client is not installed")
async def test_openssh_client_uploads_with_a_key(start_intake: StartIntake, tmp_path: Path) -> None:
    """The algorithms we offer work with OpenSSH's client, the one most districts script with."""
    env = await start_intake()
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(tmp_path / "id_ed25519"))
    (tmp_path / "id_ed25519").chmod(0o600)
    with session_scope(env.engine) as session:
        credentials.add_public_key(
            session=session,
            district_id="d1",
            credential_id=env.login.credential_id,
            public_key=key.export_public_key().decode(),
            actor="test",
        )
    host_key = asyncssh.read_private_key(str(env.settings.data_dir / "ssh_host_ed25519_key"))
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{env.port} {host_key.export_public_key().decode()}")
    local = _local(tmp_path, "upload.csv", CSV)
    batch = tmp_path / "batch"
    batch.write_text(
        f"put {local} roster.csv\nls results\nget roster.csv {tmp_path / 'back.csv'}\n-mkdir nope\n"
    )
    process = await asyncio.create_subprocess_exec(
        "sftp",
        "-b",
        str(batch),
        "-P",
        str(env.port),
        "-i",
        str(tmp_path / "id_ed25519"),
        "-F",
        "/dev/null",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={known}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        f"{env.login.username}@127.0.0.1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert ".txt" not in out.decode()  # results/ is there, empty until the import ran
    assert (env.folder() / "roster.csv").read_bytes() == CSV
    assert (tmp_path / "back.csv").read_bytes() == CSV
    assert len(env.recorder.calls) == 1
    assert not (env.folder() / "nope").exists()
