# SPDX-License-Identifier: GPL-3.0-or-later
"""Shaman uploads against the fake Shaman: protocol answers, cache, abort, streaming memory."""
from __future__ import annotations

import email.header
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest

from flamenco_panel.core import errors, shaman
from flamenco_panel.core.client import Connection, ManagerClient
from tests.fake_shaman import FakeShamanServer

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC = ROOT.parent / "shared" / "flamenco" / "openapi" / "flamenco-openapi-3.9-beta1.yaml"
OLD = time.time() - 3600   # mtimes old enough for the hash cache to trust them


@pytest.fixture(autouse=True)
def fast_deferrals(monkeypatch):
    monkeypatch.setattr(shaman, "DEFER_WAIT_SECONDS", 0.01)


@pytest.fixture
def server(tmp_path):
    with FakeShamanServer(str(tmp_path / "manager")) as srv:
        yield srv


@pytest.fixture
def client(server):
    c = ManagerClient(Connection(server.url, timeout=5, connect_timeout=2))
    yield c
    c.close()


def write(path: pathlib.Path, data: bytes, old: bool = True) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if old:
        os.utime(path, (OLD, OLD))
    return path


@pytest.fixture
def project(tmp_path):
    """A few files as a pack would list them: (local path, path in the checkout)."""
    src = tmp_path / "project"
    files = {
        "scenes/shot.blend": os.urandom(300_000),
        "textures/wood.png": os.urandom(120_000),
        "textures/café ☕.png": os.urandom(5_000),   # non-ASCII name: RFC 2047 header
        "libs/lib.blend": os.urandom(64_000),
        "empty.txt": b"",
    }
    return [(str(write(src / rel, data)), rel) for rel, data in files.items()]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checkout_contents(server, checkout_path: str) -> dict[str, bytes]:
    root = server.shaman.checkout_root(checkout_path)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def sources(files) -> dict[str, bytes]:
    return {rel: pathlib.Path(local).read_bytes() for local, rel in files}


# --------------------------------------------------------------------------- the protocol


def test_upload_creates_a_checkout_with_every_file(server, client, project, tmp_path):
    seen = []
    result = shaman.upload(client, project, "proj/2024-01-01-shot", shaman.HashCache(tmp_path / "user"),
                           progress=seen.append)
    assert result.checkout_path == "proj/2024-01-01-shot"
    assert result.files_total == result.files_uploaded == 5
    assert result.bytes_uploaded == result.bytes_total == sum(len(d) for d in sources(project).values())
    assert checkout_contents(server, result.checkout_path) == sources(project)
    assert server.shaman.bytes_uploaded() == result.bytes_uploaded
    phases = [p["phase"] for p in seen]
    assert phases[0] == "hashing" and phases[-1] == "done"
    assert {"checking", "uploading", "checkout"} <= set(phases)
    assert all(set(p) == {"phase", "files_done", "files_total", "bytes_done", "bytes_total", "current"}
               for p in seen)
    # Files first marked `unknown` never offer to defer; the original name is ASCII or RFC 2047.
    names = set()
    for record in server.shaman.uploads():
        assert "x-shaman-can-defer-upload" not in record.headers
        raw = record.headers["x-shaman-original-filename"]
        assert raw.isascii()
        names.add("".join(part.decode() if isinstance(part, bytes) else part
                          for part, _enc in email.header.decode_header(raw)))
    assert names == {rel for _, rel in project}


def test_requests_match_the_openapi_spec(server, client, project, tmp_path, monkeypatch):
    yaml = pytest.importorskip("yaml")
    validator = pytest.importorskip("openapi_schema_validator")
    spec = yaml.safe_load(SPEC.read_text())
    sent = []
    real_request = client.request

    def recording(method, path, **kw):
        sent.append((method, path, kw.get("body")))
        return real_request(method, path, **kw)

    monkeypatch.setattr(client, "request", recording)
    real_stream = shaman.stream_upload
    monkeypatch.setattr(shaman, "stream_upload",
                        lambda c, path, *a, **kw: sent.append(("POST", path, None)) or real_stream(c, path, *a, **kw))
    shaman.upload(client, project, "proj/shot", shaman.HashCache(None))
    bodies = {path: body for method, path, body in sent if body is not None}
    for path, schema_name in (("/api/v3/shaman/checkout/requirements", "ShamanRequirementsRequest"),
                              ("/api/v3/shaman/checkout/create", "ShamanCheckout")):
        schema = dict(spec["components"]["schemas"][schema_name], components=spec["components"])
        validator.validate(bodies[path], schema, cls=validator.OAS30Validator)
    assert any("/shaman/files/" in path for _, path, _ in sent)
    for method, path, body in sent:
        assert (method, path.split("/shaman/")[1].split("/")[0]) in {("POST", "checkout"), ("POST", "files"),
                                                                      ("GET", "files")}


def test_unchanged_resubmit_hashes_and_uploads_nothing(server, client, project, tmp_path):
    first = shaman.upload(client, project, "proj/shot", shaman.HashCache(tmp_path / "user"))
    uploads_before = len(server.shaman.uploads())
    cache = shaman.HashCache(tmp_path / "user")          # reloaded from disk
    second = shaman.upload(client, project, "proj/shot", cache)
    assert cache.hits == len(project) and cache.misses == 0
    assert second.bytes_uploaded == 0 and second.files_uploaded == 0
    assert len(server.shaman.uploads()) == uploads_before
    # The Manager made the second checkout path unique.
    assert second.checkout_path != first.checkout_path and second.checkout_path.startswith("proj/shot-")
    assert checkout_contents(server, second.checkout_path) == sources(project)


def test_file_changed_after_hashing_is_rehashed_once(server, client, tmp_path):
    local = write(tmp_path / "p" / "a.bin", b"A" * 50_000)
    cache = shaman.HashCache(tmp_path / "user")

    def change_it(p):
        if p["phase"] == "uploading" and local.read_bytes()[:1] == b"A":
            write(local, b"B" * 50_000, old=False)   # same size, new content

    result = shaman.upload(client, [(str(local), "a.bin")], "job", cache, progress=change_it)
    statuses = [r.status for r in server.shaman.uploads()]
    assert statuses == [417, 200]
    assert checkout_contents(server, result.checkout_path) == {"a.bin": b"B" * 50_000}
    assert server.shaman.checkouts["job"][0]["sha"] == sha(b"B" * 50_000)


def test_file_shrunk_while_uploading_is_rehashed(server, client, tmp_path):
    local = write(tmp_path / "p" / "a.bin", os.urandom(200_000))

    def shrink(p):
        if p["phase"] == "uploading" and local.stat().st_size == 200_000:
            write(local, b"short", old=False)

    result = shaman.upload(client, [(str(local), "a.bin")], "job", shaman.HashCache(None), progress=shrink)
    assert checkout_contents(server, result.checkout_path) == {"a.bin": b"short"}


def test_persistent_mismatch_fails_clearly_without_checkout(server, client, tmp_path):
    local = write(tmp_path / "p" / "a.bin", b"x" * 1000)
    server.shaman.force_417 = 2
    with pytest.raises(shaman.ShamanError, match="a.bin changed while it was being uploaded"):
        shaman.upload(client, [(str(local), "a.bin")], "job", shaman.HashCache(None))
    assert server.shaman.checkouts == {}


def test_deferred_upload_waits_for_the_other_uploader(server, client, tmp_path):
    data = os.urandom(10_000)
    local = write(tmp_path / "p" / "a.bin", data)
    other = write(tmp_path / "p" / "b.bin", os.urandom(10_000))
    server.shaman.others_uploading[sha(data)] = 2
    result = shaman.upload(client, [(str(local), "a.bin"), (str(other), "b.bin")], "job", shaman.HashCache(None))
    a = [r for r in server.shaman.uploads() if sha(data) in r.path]
    assert [r.status for r in a] == [425, 425, 200]
    assert all(r.headers.get("x-shaman-can-defer-upload") == "true" for r in a)
    b = [r for r in server.shaman.uploads() if sha(data) not in r.path]
    assert [r.status for r in b] == [200] and "x-shaman-can-defer-upload" not in b[0].headers
    assert server.shaman.uploads()[0] is b[0]   # files someone else is uploading come last
    assert checkout_contents(server, result.checkout_path)["a.bin"] == data


def test_deferral_is_bounded_then_uploads_anyway(server, client, tmp_path):
    data = os.urandom(10_000)
    local = write(tmp_path / "p" / "a.bin", data)
    server.shaman.others_uploading[sha(data)] = 1000   # the other uploader never finishes
    result = shaman.upload(client, [(str(local), "a.bin")], "job", shaman.HashCache(None))
    records = server.shaman.uploads()
    assert [r.status for r in records] == [425] * shaman.MAX_DEFERRALS + [200]
    assert "x-shaman-can-defer-upload" not in records[-1].headers
    assert result.files_uploaded == 1


def test_file_stored_by_someone_else_meanwhile_is_not_counted(server, client, tmp_path):
    data = os.urandom(30_000)
    local = write(tmp_path / "p" / "a.bin", data)

    def other_client_finishes(p):
        if p["phase"] == "uploading":
            server.shaman.put(data)

    result = shaman.upload(client, [(str(local), "a.bin")], "job", shaman.HashCache(None),
                           progress=other_client_finishes)
    assert [r.status for r in server.shaman.uploads()] == [208]
    assert result.files_uploaded == 0 and result.bytes_uploaded == 0
    assert checkout_contents(server, result.checkout_path) == {"a.bin": data}


def test_connection_closed_after_someone_else_finished(server, client, tmp_path):
    data = os.urandom(30_000)
    local = write(tmp_path / "p" / "a.bin", data)
    server.shaman.drop_after_store = 1   # the Manager hangs up instead of answering
    result = shaman.upload(client, [(str(local), "a.bin")], "job", shaman.HashCache(None))
    assert any(r.method == "GET" and sha(data) in r.path for r in server.shaman.requests)
    assert checkout_contents(server, result.checkout_path) == {"a.bin": data}


@pytest.mark.parametrize("attempt", range(3))
def test_early_answer_and_hang_up_on_a_big_body(server, client, tmp_path, attempt):
    """Go's server answers 208/425 without reading a big body, then closes: either way must work."""
    server.shaman.drain_limit = 64 * 1024
    stored_meanwhile = os.urandom(4 * 1024 * 1024)
    deferred = os.urandom(4 * 1024 * 1024)
    a = write(tmp_path / "p" / "a.bin", stored_meanwhile)
    b = write(tmp_path / "p" / "b.bin", deferred)
    server.shaman.others_uploading[sha(deferred)] = 1

    def other_client_finishes(p):
        if p["phase"] == "uploading" and not server.shaman.is_stored(sha(stored_meanwhile), len(stored_meanwhile)):
            server.shaman.put(stored_meanwhile)

    result = shaman.upload(client, [(str(a), "a.bin"), (str(b), "b.bin")], "job", shaman.HashCache(None),
                           progress=other_client_finishes)
    assert checkout_contents(server, result.checkout_path) == {"a.bin": stored_meanwhile, "b.bin": deferred}
    assert result.files_uploaded == 1 and result.bytes_uploaded == len(deferred)


def test_hang_up_instead_of_an_early_answer(server, client, tmp_path):
    """No answer at all: the file's status on the Manager decides between "stored" and "defer"."""
    known, deferred = os.urandom(10_000), os.urandom(10_000)
    a = write(tmp_path / "p" / "a.bin", known)
    b = write(tmp_path / "p" / "b.bin", deferred)
    server.shaman.others_uploading[sha(deferred)] = 1
    server.shaman.hang_up_early = 2

    def other_client_finishes(p):
        if p["phase"] == "uploading" and not server.shaman.is_stored(sha(known), len(known)):
            server.shaman.put(known)

    result = shaman.upload(client, [(str(a), "a.bin"), (str(b), "b.bin")], "job", shaman.HashCache(None),
                           progress=other_client_finishes)
    gets = [r for r in server.shaman.requests if r.method == "GET"]
    assert len(gets) == 2
    assert [r.status for r in server.shaman.uploads() if sha(deferred) in r.path] == [0, 425, 200]
    assert checkout_contents(server, result.checkout_path) == {"a.bin": known, "b.bin": deferred}


def test_hang_up_mid_upload_is_an_error_not_a_retry(server, client, tmp_path):
    from tests.fake_shaman import DropConnection

    a = write(tmp_path / "p" / "a.bin", os.urandom(1000))

    def die(sha_):
        raise DropConnection()

    server.shaman.on_upload_start = die
    with pytest.raises(errors.ManagerUnreachable):
        shaman.upload(client, [(str(a), "a.bin")], "job", shaman.HashCache(None))
    assert len(server.shaman.uploads()) == 1   # never retried automatically
    assert server.shaman.checkouts == {}


def test_manager_without_shaman_says_so(server, client, project, monkeypatch):
    monkeypatch.setattr(server.shaman, "_requirements", lambda payload: (
        503, {"Content-Type": "application/json"}, b'{"code": 503, "message": "shaman server not active"}'))
    with pytest.raises(shaman.ShamanError, match="Shaman is not available on this Manager"):
        shaman.upload(client, project, "proj/shot", shaman.HashCache(None))


def test_checkout_path_in_use_retries_with_a_suffix(server, client, project):
    server.shaman.conflict_checkouts = 1
    result = shaman.upload(client, project, "proj/shot", shaman.HashCache(None))
    assert result.checkout_path.startswith("proj/shot-") and len(result.checkout_path) == len("proj/shot-") + 4
    assert list(server.shaman.checkouts) == [result.checkout_path]


def test_checkout_path_always_in_use_fails(server, client, project):
    server.shaman.conflict_checkouts = 100
    with pytest.raises(shaman.ShamanError, match="in use"):
        shaman.upload(client, project, "proj/shot", shaman.HashCache(None))
    creates = [r for r in server.shaman.requests if r.path.endswith("/checkout/create")]
    assert len(creates) == shaman.MAX_CHECKOUT_ATTEMPTS
    assert server.shaman.checkouts == {}


@pytest.mark.parametrize("answer", [500, 424])   # a real Manager's answer, the spec's
def test_files_missing_at_checkout_are_uploaded_again_once(server, client, project, answer):
    server.shaman.missing_status = answer
    server.shaman.forget_before_checkout = 1
    result = shaman.upload(client, project, "proj/shot", shaman.HashCache(None))
    total = sum(len(d) for d in sources(project).values())
    assert server.shaman.bytes_uploaded() == 2 * total
    assert checkout_contents(server, result.checkout_path) == sources(project)

    server.shaman.forget_before_checkout = 2
    with pytest.raises(shaman.ShamanError, match="still misses files"):
        shaman.upload(client, project, "proj/other", shaman.HashCache(None))


def test_unexpected_upload_error_stops_without_checkout(server, client, project, monkeypatch):
    monkeypatch.setattr(server.shaman, "_receive", lambda *a: (500, {"Content-Type": "application/json"},
                                                               b'{"code": 500, "message": "disk full"}'))
    with pytest.raises(errors.ManagerHTTPError, match="disk full") as info:
        shaman.upload(client, project, "proj/shot", shaman.HashCache(None))
    assert info.value.status == 500
    assert server.shaman.checkouts == {}


# --------------------------------------------------------------------------- abort


def test_abort_mid_upload_leaves_no_checkout(server, client, tmp_path, monkeypatch):
    monkeypatch.setattr(shaman, "PROGRESS_INTERVAL", 0)   # report every block, so the abort lands mid-body
    big = write(tmp_path / "p" / "big.bin", os.urandom(8 * 1024 * 1024))
    small = write(tmp_path / "p" / "small.bin", b"small")

    def abort_halfway(p):
        if p["phase"] == "uploading" and p["bytes_done"] > 1024 * 1024:
            raise errors.Aborted("Aborted")

    with pytest.raises(errors.Aborted):
        shaman.upload(client, [(str(big), "big.bin"), (str(small), "small.bin")], "job", shaman.HashCache(None),
                      progress=abort_halfway)
    assert server.shaman.checkouts == {}
    assert not any(r.path.endswith("/checkout/create") for r in server.shaman.requests)
    big_sha = sha(big.read_bytes())
    assert not server.shaman.is_stored(big_sha, big.stat().st_size)
    # The connection is still usable afterwards.
    result = shaman.upload(client, [(str(small), "small.bin")], "job", shaman.HashCache(None))
    assert result.checkout_path == "job"


def test_should_abort_while_hashing_sends_nothing(server, client, project):
    with pytest.raises(errors.Aborted):
        shaman.upload(client, project, "proj/shot", shaman.HashCache(None), should_abort=lambda: True)
    assert server.shaman.requests == []


# --------------------------------------------------------------------------- input checks


@pytest.mark.parametrize("rel", ["../escape.txt", "/abs.txt", "C:/x.txt", "", "a/../../b"])
def test_paths_in_the_checkout_must_be_relative(client, tmp_path, rel):
    local = write(tmp_path / "a.txt", b"a")
    with pytest.raises(errors.ConfigurationError):
        shaman.upload(client, [(str(local), rel)], "job", shaman.HashCache(None))


@pytest.mark.parametrize("checkout", ["/abs", "../up", "", "C:/jobs"])
def test_checkout_path_must_be_relative(client, tmp_path, checkout):
    local = write(tmp_path / "a.txt", b"a")
    with pytest.raises(errors.ConfigurationError):
        shaman.upload(client, [(str(local), "a.txt")], checkout, shaman.HashCache(None))


def test_two_files_for_one_place_is_refused(client, tmp_path):
    a, b = write(tmp_path / "a.txt", b"a"), write(tmp_path / "b.txt", b"b")
    with pytest.raises(errors.ConfigurationError, match="same place"):
        shaman.upload(client, [(str(a), "x.txt"), (str(b), "x.txt")], "job", shaman.HashCache(None))


def test_same_content_in_two_places_is_uploaded_once(server, client, tmp_path):
    a = write(tmp_path / "a.txt", b"same" * 1000)
    b = write(tmp_path / "b.txt", b"same" * 1000)
    result = shaman.upload(client, [(str(a), "x/a.txt"), (str(b), "y/b.txt")], "job", shaman.HashCache(None))
    assert len(server.shaman.uploads()) == 1 and result.files_uploaded == 1 and result.files_total == 2
    assert checkout_contents(server, "job") == {"x/a.txt": b"same" * 1000, "y/b.txt": b"same" * 1000}


# --------------------------------------------------------------------------- hashing and the cache


@pytest.mark.parametrize("size", [0, 1, shaman.CHUNK - 1, shaman.CHUNK, 3 * shaman.CHUNK + 17])
def test_sha256_file_streams_in_chunks(tmp_path, size):
    data = os.urandom(size)
    path = write(tmp_path / "f", data)
    chunks = []
    assert shaman.sha256_file(str(path), on_chunk=chunks.append) == sha(data)
    assert sum(chunks) == size and all(c <= shaman.CHUNK for c in chunks)


def test_hash_cache_is_keyed_by_path_size_and_mtime(tmp_path):
    path = write(tmp_path / "f", b"one")
    cache = shaman.HashCache(tmp_path / "user")
    assert cache.checksum(str(path)) == (sha(b"one"), 3)
    assert cache.checksum(str(path)) == (sha(b"one"), 3) and cache.hits == 1
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))
    assert cache.checksum(str(path)) == (sha(b"one"), 3) and cache.misses == 2
    write(path, b"three")
    assert cache.checksum(str(path)) == (sha(b"three"), 5)


def test_hash_cache_does_not_trust_files_changed_just_now(tmp_path):
    path = write(tmp_path / "f", b"fresh", old=False)
    cache = shaman.HashCache(tmp_path / "user")
    cache.checksum(str(path))
    cache.save()
    assert cache.entries == {}
    assert shaman.HashCache(tmp_path / "user").entries == {}


def test_hash_cache_persists_atomically(tmp_path):
    path = write(tmp_path / "f", b"one")
    user = tmp_path / "user"
    cache = shaman.HashCache(user)
    cache.checksum(str(path))
    cache.save()
    assert sorted(os.listdir(user)) == [shaman.HASH_CACHE_FILE]   # no temp file left behind
    data = json.loads((user / shaman.HASH_CACHE_FILE).read_text())
    assert data["version"] == shaman.HASH_CACHE_VERSION and str(path) in data["entries"]
    # A `.json` path works as well as a folder.
    assert shaman.HashCache(user / shaman.HASH_CACHE_FILE).lookup(str(path), path.stat()) == sha(b"one")


@pytest.mark.parametrize("content", ["", "{not json", "[]", '{"version": 99, "entries": {}}',
                                     '{"version": 1, "entries": {"/x": [1, 2, "short", 0], "/y": "bad"}}'])
def test_hash_cache_tolerates_a_corrupt_file(tmp_path, content):
    user = tmp_path / "user"
    user.mkdir()
    (user / shaman.HASH_CACHE_FILE).write_text(content)
    cache = shaman.HashCache(user)
    assert cache.entries == {}
    path = write(tmp_path / "f", b"one")
    cache.checksum(str(path))
    cache.save()
    assert shaman.HashCache(user).lookup(str(path), path.stat()) == sha(b"one")


def test_hash_cache_is_bounded(tmp_path):
    cache = shaman.HashCache(tmp_path / "user", max_entries=3)
    paths = [write(tmp_path / f"f{i}", b"x" * i) for i in range(5)]
    for i, path in enumerate(paths):
        cache.checksum(str(path))
        cache.entries[str(path)][3] = i    # last used
    cache.save()
    assert sorted(shaman.HashCache(tmp_path / "user").entries) == [str(p) for p in paths[2:]]


def test_hash_cache_save_failure_is_ignored(tmp_path):
    blocker = write(tmp_path / "not-a-dir", b"x")
    cache = shaman.HashCache(blocker / "sub")
    cache.checksum(str(blocker))
    assert cache.dirty
    cache.save()   # cannot create the folder: no exception, the cache stays usable
    assert cache.checksum(str(blocker)) == (sha(b"x"), 1)


# --------------------------------------------------------------------------- memory

_MEMORY_SCRIPT = textwrap.dedent("""
    import os, resource, sys, tempfile
    sys.path.insert(0, sys.argv[1])
    from flamenco_panel.core import shaman
    from flamenco_panel.core.client import Connection, ManagerClient
    from tests.fake_shaman import FakeShamanServer

    def peak_rss():
        # VmHWM is this process's own peak; on Linux ru_maxrss also counts the parent's RSS at fork.
        try:
            with open("/proc/self/status") as fh:
                return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) * 1024
        except (OSError, StopIteration):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)

    size = int(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp, FakeShamanServer(os.path.join(tmp, "m")) as srv:
        path = os.path.join(tmp, "big.bin")
        with open(path, "wb") as fh:        # sparse: no disk space, reads as zeros
            fh.truncate(size)
        client = ManagerClient(Connection(srv.url, timeout=30))
        before = peak_rss()
        result = shaman.upload(client, [(path, "big.bin")], "job", shaman.HashCache(None))
        after = peak_rss()
        assert result.bytes_uploaded == size, result
        assert os.path.getsize(srv.shaman.checkout_root("job") / "big.bin") == size
        with open(path, "rb") as fh:        # control: reading it whole does show up
            whole = fh.read()
        control = peak_rss()
        print(before, after, control, after - before, control - after)
""")


@pytest.mark.skipif(sys.platform == "win32", reason="measured with POSIX tools")
def test_upload_of_a_large_file_streams(tmp_path):
    size = 200 * 1024 * 1024
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(ROOT), str(size)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    growth, control = (int(n) for n in proc.stdout.split()[-2:])
    assert control > size // 2, proc.stdout   # the measurement would see a whole-file read
    # Client and fake server share the process: both must stream for this to hold.
    assert growth < 32 * 1024 * 1024, f"peak RSS grew by {growth / 2**20:.0f} MiB for a 200 MiB upload"
