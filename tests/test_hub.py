"""Downloading from the Hugging Face hub (minigpt/hub.py, files.download_resumable), against a
fake hub on 127.0.0.1: never the network.

The fake answers as huggingface.co does: /NAME/resolve/main/FILE; a small file (config.json)
directly with its git blob sha1 as ETag; an LFS file (model.safetensors) with a redirect to
another host (here "localhost", the storage) and the headers X-Linked-Size and X-Linked-Etag
(its sha256); a renamed repository (gpt2 -> openai-community/gpt2) with a relative redirect.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import threading

import numpy as np
import pytest

from conftest import data_file, require
from pretrained_helpers import random_transformers_gpt2
from minigpt import GPT, hub, pretrained
from minigpt.files import DataUnavailable


class FakeHub:
    def __init__(self, repos: dict[str, dict[str, bytes]], renamed: dict[str, str] | None = None):
        self.repos = repos  # {"owner/name": {"config.json": bytes, ...}}
        self.renamed = renamed or {}
        self.log: list[tuple[str, str, str | None]] = []  # (method, host:path, Range header)
        self.cut_storage_after: list[int] = []  # the next storage GETs stop after this many bytes
        self.wrong_sha256 = False
        self.wrong_git_sha1 = False
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def requests_for(self, fragment: str):
        return [entry for entry in self.log if fragment in entry[1]]

    def _handler(self):
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_HEAD(self):
                self.answer(body=False)

            def do_GET(self):
                self.answer(body=True)

            def answer(self, body):
                hub.log.append((self.command, self.headers["Host"] + self.path, self.headers.get("Range")))
                storage = re.fullmatch(r"/storage/(.+)/([^/]+)", self.path)
                if storage:
                    return self.send_storage(hub.repos[storage.group(1)][storage.group(2)], body)
                match = re.fullmatch(r"/(.+)/resolve/main/([^/]+)", self.path)
                if not match:
                    return self.send_error(404)
                name, filename = match.groups()
                if name in hub.renamed:  # relative, as the hub does for a renamed repository
                    self.send_response(307)
                    self.send_header("Location", f"/{hub.renamed[name]}/resolve/main/{filename}")
                    return self.end_headers()
                data = hub.repos.get(name, {}).get(filename)
                if data is None:
                    return self.send_error(404)
                if filename.endswith(".safetensors"):  # an LFS file: metadata here, bytes in storage
                    sha = hashlib.sha256(data).hexdigest()
                    self.send_response(302)
                    self.send_header("X-Linked-Etag", f'"{"0" * 64 if hub.wrong_sha256 else sha}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                    self.send_header("ETag", '"not-the-file-hash"')
                    self.send_header("Location", f"http://localhost:{hub.port}/storage/{name}/{filename}")
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                git_sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                self.send_response(200)
                self.send_header("ETag", f'"{"1" * 40 if hub.wrong_git_sha1 else git_sha1}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def send_storage(self, data, body):
                start = 0
                requested = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if requested:
                    start = int(requested.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if not body:
                    return
                if hub.cut_storage_after:  # send part of it, then drop the connection
                    self.wfile.write(data[start:start + hub.cut_storage_after.pop(0)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

        return Handler


def folder_bytes(folder) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}


@pytest.fixture(scope="module")
def tiny_repo(torch, tmp_path_factory):
    """A random GPT-2 of 97 tokens as transformers saves it, as the hub would serve it."""
    transformers = require("transformers")
    folder = tmp_path_factory.mktemp("tiny")
    random_transformers_gpt2(torch, transformers, vocab_size=97).save_pretrained(folder)
    return folder


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("time.sleep", lambda seconds: None)  # no pauses between retries
    return tmp_path / "cache"


@pytest.fixture
def fake_hub(tiny_repo, monkeypatch):
    with FakeHub({"owner/tiny": folder_bytes(tiny_repo)}) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        yield fake


def test_a_hub_name_is_downloaded_into_the_cache_checked_and_loaded(fake_hub, cache, tiny_repo):
    model, tokenizer, description = pretrained.load_base("owner/tiny")
    folder = cache / "hf" / "owner" / "tiny"
    for name in ("config.json", "model.safetensors"):
        assert (folder / name).read_bytes() == (tiny_repo / name).read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]  # no .part left
    np.testing.assert_array_equal(model.flat_params, GPT.from_pretrained(tiny_repo).flat_params)
    assert tokenizer is None and "owner/tiny from the Hugging Face hub" in description
    # the weights' metadata came from the hub's own answer; the bytes from the storage host
    assert [m for m, _, _ in fake_hub.requests_for("/owner/tiny/resolve/main/model.safetensors")] == ["HEAD", "GET"]
    assert len(fake_hub.requests_for("localhost:")) == 1

    count = len(fake_hub.log)
    GPT.from_pretrained("owner/tiny")  # a second time: from the cache, without asking the hub
    assert len(fake_hub.log) == count


def test_an_interrupted_transfer_resumes_with_a_range_request(fake_hub, cache, tiny_repo):
    fake_hub.cut_storage_after = [5000]
    GPT.from_pretrained("owner/tiny")
    storage = fake_hub.requests_for("localhost:")
    assert [r for _, _, r in storage] == [None, "bytes=5000-"]  # the second asked only for the rest
    assert (cache / "hf/owner/tiny/model.safetensors").read_bytes() == (tiny_repo / "model.safetensors").read_bytes()


def test_a_download_that_keeps_failing_keeps_its_bytes_for_the_next_run(fake_hub, cache, tiny_repo):
    fake_hub.cut_storage_after = [1000, 1000, 1000]  # three attempts, 1000 bytes each
    with pytest.raises(DataUnavailable, match=r"3 attempts.*the 3000 bytes received are kept in .*"
                                              r"model.safetensors.part: run again to resume"):
        GPT.from_pretrained("owner/tiny")
    assert not (cache / "hf/owner/tiny/model.safetensors").exists()

    GPT.from_pretrained("owner/tiny")  # the next run
    assert fake_hub.requests_for("localhost:")[-1][2] == "bytes=3000-"
    assert (cache / "hf/owner/tiny/model.safetensors").read_bytes() == (tiny_repo / "model.safetensors").read_bytes()


def test_a_wrong_hash_is_refused_and_the_bad_file_deleted(fake_hub, cache, tiny_repo):
    fake_hub.wrong_sha256 = True
    real = hashlib.sha256((tiny_repo / "model.safetensors").read_bytes()).hexdigest()
    with pytest.raises(DataUnavailable, match=f"has sha256 {real}, but the server announced {'0' * 64}; "
                                              f"it was deleted"):
        GPT.from_pretrained("owner/tiny")
    assert sorted(p.name for p in (cache / "hf/owner/tiny").iterdir()) == ["config.json"]


def test_config_json_is_checked_by_its_git_blob_sha1(fake_hub, cache, tiny_repo):
    fake_hub.wrong_git_sha1 = True
    data = (tiny_repo / "config.json").read_bytes()
    real = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # what `git hash-object` prints
    with pytest.raises(DataUnavailable, match=f"has git blob sha1 {real}, but the server announced 1{{40}}"):
        GPT.from_pretrained("owner/tiny")
    assert not (cache / "hf/owner/tiny/config.json").exists()


def test_a_renamed_repository_is_followed_and_gpt2s_tokenizer_attached(torch, cache, monkeypatch, tmp_path, capsys):
    """`sample --init gpt2` as on the real hub, where gpt2 now lives at openai-community/gpt2."""
    from minigpt.__main__ import main

    data_file("gpt2-encoder"), data_file("gpt2-vocab")
    transformers = require("transformers")
    hf = random_transformers_gpt2(torch, transformers, vocab_size=50257, n_embd=8, n_layer=1, n_positions=16)
    hf.save_pretrained(tmp_path / "gpt2")
    with FakeHub({"openai-community/gpt2": folder_bytes(tmp_path / "gpt2")},
                 renamed={"gpt2": "openai-community/gpt2"}) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        code = main(["sample", "--init", "gpt2", "--prompt", "Hello world", "--temperature", "0",
                     "--max-new-tokens", "4"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert fake.requests_for("/gpt2/resolve/main/config.json")[0][0] == "HEAD"
        assert fake.requests_for("/openai-community/gpt2/resolve/main/config.json")

    model = GPT.from_pretrained(tmp_path / "gpt2")
    assert captured.out.startswith("Hello world") and len(captured.out) > len("Hello world\n")
    ids = model.tokenizer.encode("Hello world")
    with torch.no_grad():
        expected = hf.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                               max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=0)
    assert captured.out == model.tokenizer.decode(expected[0].tolist()) + "\n"


def test_an_unknown_model_is_named(fake_hub, cache):
    with pytest.raises(hub.HubUnavailable, match="has no public model 'owner/nothing'"):
        GPT.from_pretrained("owner/nothing")


def test_offline_says_so_and_what_to_do(cache, monkeypatch):
    import socket

    with socket.socket() as s:  # a port on this machine where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(hub.HubUnavailable, match=f"cannot reach 127.0.0.1:{port}: .*; download the folder "
                                                 f"elsewhere and pass its path"):
        GPT.from_pretrained("gpt2")
    assert not (cache / "hf" / "gpt2").exists() or not any((cache / "hf" / "gpt2").iterdir())


def test_a_model_too_large_for_memory_is_refused_before_its_weights_download(fake_hub, cache, monkeypatch):
    from minigpt.pretrained import memory

    monkeypatch.setattr(memory, "available_memory", lambda: 1000)
    with pytest.raises(pretrained.NotEnoughMemory, match="only 0.00 GB \\(1,000 bytes\\) is available"):
        GPT.from_pretrained("owner/tiny")
    assert fake_hub.requests_for("config.json")
    assert not fake_hub.requests_for("model.safetensors")


def test_the_default_endpoint_is_huggingface_co(monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert hub.file_url("gpt2", "config.json") == "https://huggingface.co/gpt2/resolve/main/config.json"
    assert hub.is_model_name("gpt2-xl") and hub.is_model_name("openai-community/gpt2")
    assert not hub.is_model_name("../etc") and not hub.is_model_name("/abs/path")


def test_git_blob_sha1_is_gits_object_id(tmp_path):
    from minigpt.files import git_blob_sha1

    (tmp_path / "hello.txt").write_bytes(b"hello\n")
    assert git_blob_sha1(tmp_path / "hello.txt") == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object
