"""Downloading a model folder from the Hugging Face hub, with nothing but the standard library.

    folder = hub.download_file("gpt2", "config.json").parent

A file of model NAME is at {endpoint}/NAME/resolve/main/FILE (endpoint https://huggingface.co,
or $HF_ENDPOINT as for huggingface_hub). It is saved in minigpt's cache,
`files.cache_dir()/hf/NAME/FILE`, and a file already there is used without asking the hub
(delete it to download again).

Before downloading, a HEAD request asks the hub for the file's size and ETag. For a file
kept in Git LFS (the weights) the hub answers on its own host with the headers
X-Linked-Size and X-Linked-Etag and a redirect to a storage host; that ETag is the sha256
of the file. For a small file kept in git itself (config.json) the ETag is git's blob
sha1. Both are checked after the download (files.download_resumable), so a file that
arrives altered or cut short is never used; a download that breaks off resumes.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from minigpt import files

DEFAULT_ENDPOINT = "https://huggingface.co"
GPT2_MODELS = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")  # OpenAI's four sizes
_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")  # "gpt2" or "owner/name"


class HubUnavailable(files.DataUnavailable):
    """A hub file that cannot be had: no network, no such model, or a failed check."""


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def is_model_name(name: str) -> bool:
    """Whether name has the form of a hub model name ("gpt2", "openai-community/gpt2")."""
    return bool(_NAME.fullmatch(name)) and ".." not in name


def model_cache(name: str) -> Path:
    return files.cache_dir() / "hf" / name


def file_url(name: str, filename: str) -> str:
    return f"{endpoint()}/{name}/resolve/main/{filename}"


def download_file(name: str, filename: str) -> Path:
    """Path of FILE of hub model NAME in the cache, downloading and checking it if needed."""
    if not is_model_name(name):
        raise ValueError(f"{name!r} is not a hub model name (like gpt2 or owner/name)")
    dest = model_cache(name) / filename
    if dest.is_file():
        return dest
    url = file_url(name, filename)
    size, etag = remote_metadata(url, name)
    sha256 = etag if etag and re.fullmatch(r"[0-9a-f]{64}", etag) else None  # an LFS file
    git_sha1 = etag if etag and re.fullmatch(r"[0-9a-f]{40}", etag) else None  # a file kept in git
    return files.download_resumable(url, dest, size=size, sha256=sha256, git_sha1=git_sha1)


def remote_metadata(url: str, name: str) -> tuple[int | None, str | None]:
    """(size, etag) of a hub file from a HEAD request, either unknown -> None.

    Redirects on the hub's own host are followed (a renamed repository: gpt2 is now
    openai-community/gpt2); a redirect to another host (the storage of LFS files) is
    not, because the headers that describe the file are on the hub's answer itself."""
    opener = urllib.request.build_opener(_NoRedirect)
    host = urllib.parse.urlsplit(url).netloc
    for _ in range(10):
        request = urllib.request.Request(url, method="HEAD", headers={"Accept-Encoding": "identity"})
        try:
            response = opener.open(request, timeout=30)
        except urllib.error.HTTPError as err:  # 3xx arrive here too (not followed)
            response = err
            if err.code in (301, 302, 303, 307, 308) and "Location" in err.headers:
                target = urllib.parse.urljoin(url, err.headers["Location"])
                if urllib.parse.urlsplit(target).netloc == host and "X-Linked-Etag" not in err.headers:
                    url = target
                    continue
            elif err.code in (401, 403, 404):
                raise HubUnavailable(
                    f"{host} has no public model {name!r} with this file ({url}: HTTP {err.code}); "
                    f"check the name, or download the folder elsewhere and pass its path"
                ) from None
            elif err.code >= 400:
                raise HubUnavailable(f"{host} answered HTTP {err.code} for {url}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise HubUnavailable(f"cannot reach {host}: {reason}; download the folder elsewhere "
                                 f"and pass its path") from None
        headers = response.headers
        response.close()
        size = headers.get("X-Linked-Size") or (None if response.status in range(300, 400)
                                                 else headers.get("Content-Length"))
        etag = headers.get("X-Linked-Etag") or headers.get("ETag")
        if etag:
            etag = etag.removeprefix("W/").strip('"')
        return (int(size) if size and size.isdigit() else None), etag
    raise HubUnavailable(f"too many redirects for {url}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError with the redirect response
