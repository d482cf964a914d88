"""Finding data files (minigpt/files.py): the data folder, the cache, and a checked download.

Downloads come from a local HTTP server on 127.0.0.1 (or a fake opener), never the network.
Each test registers a small file of its own under KNOWN_FILES and points MINIGPT_CACHE_DIR
at a temporary folder.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
import urllib.request

import pytest

from minigpt import files

CONTENT = b"To be, or not to be, that is the question.\n" * 200  # 8,600 bytes


class Server:
    """Serves `routes` ({path: bytes}); paths in `cut` send half their bytes and hang up,
    while promising the whole length (a connection lost mid-download)."""

    def __init__(self):
        self.routes, self.cut, self.requests = {}, set(), []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path in server.cut else body)

            def log_message(self, *args):  # keep the test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """No data folder, an empty cache of the test's own."""
    monkeypatch.delenv("MINIGPT_DATA_DIR", raising=False)
    monkeypatch.setenv("MINIGPT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def register(monkeypatch, url, content=CONTENT):
    """A known file "test-file" (test/hamlet.txt), pinned to `content`'s sha256 and size."""
    entry = files.DataFile("test/hamlet.txt", url, hashlib.sha256(content).hexdigest(), len(content))
    monkeypatch.setitem(files.KNOWN_FILES, "test-file", entry)
    return entry


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to download fails the test."""
    def urlopen(*args, **kwargs):
        raise AssertionError(f"tried to download {args[0]!r}")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


# --- the data folder ---------------------------------------------------------------------------


def test_a_data_folder_without_the_file_is_an_error_not_a_download(tmp_path, monkeypatch, no_network):
    register(monkeypatch, "http://127.0.0.1:9/never")
    monkeypatch.setenv("MINIGPT_DATA_DIR", str(tmp_path))
    with pytest.raises(files.DataUnavailable, match=rf"MINIGPT_DATA_DIR={tmp_path} is set but .*hamlet.txt does not"):
        files.locate("test-file")


def test_a_data_folder_file_with_the_wrong_sha256_is_refused(tmp_path, monkeypatch, no_network):
    entry = register(monkeypatch, "http://127.0.0.1:9/never")
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "hamlet.txt").write_bytes(CONTENT.replace(b"be", b"Be", 1))  # same size, one byte off
    monkeypatch.setenv("MINIGPT_DATA_DIR", str(tmp_path))
    with pytest.raises(files.DataUnavailable, match=rf"hamlet.txt has sha256 .*, expected {entry.sha256[:12]}"):
        files.locate("test-file")
    (tmp_path / "test" / "hamlet.txt").write_bytes(CONTENT)
    assert files.locate("test-file") == tmp_path / "test" / "hamlet.txt"


# --- the cache ---------------------------------------------------------------------------------


def test_a_cache_hit_is_used_without_downloading(cache, monkeypatch, no_network):
    register(monkeypatch, "http://127.0.0.1:9/never")
    (cache / "test").mkdir(parents=True)
    (cache / "test" / "hamlet.txt").write_bytes(CONTENT)
    assert files.locate("test-file") == cache / "test" / "hamlet.txt"


def test_a_cached_file_with_the_wrong_sha256_is_refused_not_downloaded_over(cache, monkeypatch, no_network):
    register(monkeypatch, "http://127.0.0.1:9/never")
    (cache / "test").mkdir(parents=True)
    (cache / "test" / "hamlet.txt").write_bytes(CONTENT[:-1])  # cut short
    with pytest.raises(files.DataUnavailable, match="hamlet.txt has sha256 .*delete it to download again"):
        files.locate("test-file")


def test_download_off_and_nothing_cached_is_an_error(cache, monkeypatch, no_network):
    register(monkeypatch, "http://127.0.0.1:9/never")
    with pytest.raises(files.DataUnavailable, match="not in the cache .*downloading is off"):
        files.locate("test-file", download=False)


# --- downloading -------------------------------------------------------------------------------


def test_a_download_is_checked_cached_and_then_reused(cache, server, monkeypatch):
    server.routes["/hamlet.txt"] = CONTENT
    register(monkeypatch, server.url("/hamlet.txt"))
    path = files.locate("test-file")
    assert path == cache / "test" / "hamlet.txt" and path.read_bytes() == CONTENT
    assert files.locate("test-file") == path  # the second time, a cache hit
    assert server.requests == ["/hamlet.txt"]


def test_a_download_with_the_wrong_sha256_leaves_nothing_behind(cache, server, monkeypatch):
    server.routes["/hamlet.txt"] = CONTENT.replace(b"question", b"Question")  # altered on the way
    register(monkeypatch, server.url("/hamlet.txt"))
    with pytest.raises(files.DataUnavailable, match=r"could not download http://127\.0\.0\.1:\d+/hamlet\.txt: "
                                                    r"received 8,600 bytes with sha256 .*, expected 8,600 bytes"):
        files.locate("test-file")
    assert not (cache / "test" / "hamlet.txt").exists()
    assert not list((cache / "test").iterdir())  # nor anything else: the temporary file is gone too


def test_an_interrupted_download_leaves_no_partial_file_and_can_be_retried(cache, server, monkeypatch):
    server.routes["/hamlet.txt"] = CONTENT
    server.cut.add("/hamlet.txt")  # the connection drops half-way
    register(monkeypatch, server.url("/hamlet.txt"))
    with pytest.raises(files.DataUnavailable, match=r"could not download .*: received 4,300 bytes .*expected 8,600"):
        files.locate("test-file")
    assert not (cache / "test" / "hamlet.txt").exists()  # nothing half-written where the file belongs
    with pytest.raises(files.DataUnavailable, match="not in the cache"):
        files.locate("test-file", download=False)
    server.cut.clear()  # the network is back
    assert files.locate("test-file").read_bytes() == CONTENT


def test_ctrl_c_during_a_download_leaves_no_partial_file(cache, monkeypatch):
    """A fake opener whose second read is interrupted by the user."""
    register(monkeypatch, "http://example.invalid/hamlet.txt")

    class Response:
        reads = 0

        def read(self, n):
            Response.reads += 1
            if Response.reads == 2:
                raise KeyboardInterrupt
            return CONTENT[:1000]

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda *args, **kwargs: Response())
    with pytest.raises(KeyboardInterrupt):
        files.locate("test-file")
    assert Response.reads == 2
    assert not (cache / "test" / "hamlet.txt").exists()


def test_a_missing_file_on_the_server_is_a_clear_error(cache, server, monkeypatch):
    register(monkeypatch, server.url("/gone.txt"))
    with pytest.raises(files.DataUnavailable, match=r"could not download http://127\.0\.0\.1:\d+/gone\.txt.*404"):
        files.locate("test-file")
    assert not (cache / "test" / "hamlet.txt").exists()


def test_an_unknown_name_is_a_value_error():
    with pytest.raises(ValueError, match="unknown data file 'hamlet'; known: shakespeare"):
        files.locate("hamlet")
