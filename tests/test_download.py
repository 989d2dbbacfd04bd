"""Tests of cvcore.io.download against local files and a local HTTP server (no external network)."""
import hashlib
import http.server
import re
import threading

import pytest

from cvcore.io.download import DownloadError, download, sha256_file

PAYLOAD = bytes(range(256)) * 1000  # 256 000 bytes, several chunks
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class Server:
    """A tiny HTTP server on 127.0.0.1 serving PAYLOAD at /data.bin, honouring Range requests.

    ``cut_after``: close the connection after this many body bytes of the next answer (a
    dropped download). ``honour_range=False`` answers every request with the whole file."""

    def __init__(self):
        self.requests = []   # Range header of each request (or None)
        self.cut_after = None
        self.honour_range = True
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.requests.append(rng)
                if self.path != "/data.bin":
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng and outer.honour_range:
                    start = int(re.match(r"bytes=(\d+)-$", rng).group(1))
                    if start >= len(PAYLOAD):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                else:
                    self.send_response(200)
                body = PAYLOAD[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut_after is not None:
                    body, outer.cut_after = body[:outer.cut_after], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def test_file_url_download_and_cache(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    cache = tmp_path / "cache"
    path = download(src.as_uri(), DIGEST, cache_dir=cache)
    assert path == cache / "src.bin" and path.read_bytes() == PAYLOAD
    assert not (cache / "src.bin.part").exists()
    src.unlink()  # a second call must not need the source: the cached file is verified and reused
    assert download(src.as_uri(), DIGEST.upper(), cache_dir=cache) == path


def test_wrong_hash_is_an_error_and_leaves_nothing(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    with pytest.raises(DownloadError, match="SHA-256 of the downloaded file"):
        download(src.as_uri(), "0" * 64, cache_dir=tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []


def test_http_download_with_progress(server, tmp_path):
    seen = []
    path = download(server.url + "/data.bin", DIGEST, cache_dir=tmp_path,
                    progress=lambda done, total: seen.append((done, total)))
    assert sha256_file(path) == DIGEST
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(seen) > 1
    assert server.requests == [None]


def test_http_resume_after_dropped_connection(server, tmp_path):
    url = server.url + "/data.bin"
    server.cut_after = 100_000
    with pytest.raises(DownloadError, match="stopped after 100000 of 256000 bytes"):
        download(url, DIGEST, cache_dir=tmp_path)
    part = tmp_path / "data.bin.part"
    assert part.stat().st_size == 100_000 and not (tmp_path / "data.bin").exists()
    path = download(url, DIGEST, cache_dir=tmp_path)
    assert server.requests == [None, "bytes=100000-"]   # only the rest was asked for
    assert path.read_bytes() == PAYLOAD and not part.exists()


def test_http_resume_when_part_is_complete_or_server_ignores_range(server, tmp_path):
    url = server.url + "/data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)         # complete: the server says 416
    assert download(url, DIGEST, cache_dir=tmp_path).read_bytes() == PAYLOAD
    assert server.requests == [f"bytes={len(PAYLOAD)}-"]
    (tmp_path / "data.bin").unlink()
    (tmp_path / "data.bin.part").write_bytes(b"garbage that is not the start of the file")
    server.honour_range = False                               # 200 with everything: start over
    assert download(url, DIGEST, cache_dir=tmp_path).read_bytes() == PAYLOAD


def test_corrupt_part_fails_the_hash(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(b"X" * 10)  # wrong prefix, server honours the range
    with pytest.raises(DownloadError, match="SHA-256"):
        download(server.url + "/data.bin", DIGEST, cache_dir=tmp_path)
    assert not (tmp_path / "data.bin.part").exists()
    assert download(server.url + "/data.bin", DIGEST, cache_dir=tmp_path).read_bytes() == PAYLOAD


def test_stale_cached_file_is_replaced(server, tmp_path):
    (tmp_path / "data.bin").write_bytes(b"old version")
    assert download(server.url + "/data.bin", DIGEST, cache_dir=tmp_path).read_bytes() == PAYLOAD


def test_http_errors(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url + "/missing.bin", DIGEST, cache_dir=tmp_path)
    closed = Server()
    url = closed.url + "/data.bin"
    closed.close()
    with pytest.raises(DownloadError, match="cannot download"):
        download(url, DIGEST, cache_dir=tmp_path, timeout=5)


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="64 hexadecimal"):
        download("http://127.0.0.1/x", "abc", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="http://, https:// or file://"):
        download("ftp://example.invalid/x", DIGEST, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="file name"):
        download("http://127.0.0.1/", DIGEST, cache_dir=tmp_path)


def test_concurrent_download_is_refused(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    cache = tmp_path / "cache"
    cache.mkdir()
    with open(cache / "src.bin.part", "ab") as other:  # another process holding the lock
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DownloadError, match="another download"):
            download(src.as_uri(), DIGEST, cache_dir=cache)
    assert download(src.as_uri(), DIGEST, cache_dir=cache).read_bytes() == PAYLOAD
