"""Finding the public data files minigpt uses: a local folder, a cache, or a download.

Every file is known by a short name and pinned by its sha256, so a truncated or
altered copy is never used silently. Lookup order for `locate(name)`:

1. `$MINIGPT_DATA_DIR/<relpath>` when that variable is set. If it is set and the file
   is not there, that is an error, not a reason to download: CI and the tests set it
   to `../shared/data` and a missing file must fail loudly there.
2. The user cache, `$MINIGPT_CACHE_DIR` or `~/.cache/minigpt`.
3. A download from the file's public source into the cache (atomic: temp file, check
   the hash, rename), with a progress bar.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataFile:
    relpath: str  # path inside the data folder / cache
    url: str  # public source
    sha256: str
    size: int


KNOWN_FILES: dict[str, DataFile] = {
    "shakespeare": DataFile(
        "tinyshakespeare.txt",
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        1_115_394,
    ),
    "instructions": DataFile(
        "instruction-data.json",
        "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/01_main-chapter-code/instruction-data.json",
        "7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944",
        203_524,
    ),
    # The SMS Spam Collection v.1 (Almeida, Gómez Hidalgo and Yamakami, 2011; UCI dataset 228,
    # CC BY 4.0): 5,574 lines "ham|spam<TAB>text". The bytes of UCI's SMSSpamCollection; this
    # pinned copy has the same git blob (02462fc9...). See minigpt/finetune/sms_spam.py.
    "sms-spam": DataFile(
        "sms_spam.tsv",
        "https://raw.githubusercontent.com/learn-co-students/dsc-document-classification-with-naive-bayes-lab-"
        "online-ds-pt-051319/2f98ca443ecd26e1088b369260f1e9782e2e36fc/SMSSpamCollection",
        "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
        477_907,
    ),
    "gpt2-encoder": DataFile(
        "gpt2/encoder.json",
        "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
        1_042_301,
    ),
    "gpt2-vocab": DataFile(
        "gpt2/vocab.bpe",
        "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
        456_318,
    ),
}


class DataUnavailable(RuntimeError):
    """A known data file could not be found locally nor downloaded."""


def cache_dir() -> Path:
    return Path(os.environ.get("MINIGPT_CACHE_DIR") or Path.home() / ".cache" / "minigpt")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def locate(name: str, download: bool = True) -> Path:
    """Path of the known file `name`, verified by sha256 (see the module docstring)."""
    if name not in KNOWN_FILES:
        raise ValueError(f"unknown data file {name!r}; known: {', '.join(KNOWN_FILES)}")
    entry = KNOWN_FILES[name]

    data_dir = os.environ.get("MINIGPT_DATA_DIR")
    if data_dir:
        path = Path(data_dir) / entry.relpath
        if not path.is_file():
            raise DataUnavailable(f"MINIGPT_DATA_DIR={data_dir} is set but {path} does not exist")
        _verify(path, entry)
        return path

    path = cache_dir() / entry.relpath
    if path.is_file():
        _verify(path, entry)
        return path
    if not download:
        raise DataUnavailable(f"{name} is not in the cache ({path}) and downloading is off")
    _download(entry, path)
    return path


def _verify(path: Path, entry: DataFile) -> None:
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise DataUnavailable(
            f"{path} has sha256 {actual[:12]}..., expected {entry.sha256[:12]}... "
            f"(a partial or altered copy; delete it to download again)"
        )


def _download(entry: DataFile, dest: Path) -> None:
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry.url, timeout=30) as response:
            with tqdm(total=entry.size, unit="B", unit_scale=True, desc=f"downloading {dest.name}") as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        received, actual = os.path.getsize(tmp_name), sha256_of(Path(tmp_name))
        if actual != entry.sha256:  # cut short or altered on the way (the temp file goes, below)
            raise DataUnavailable(f"could not download {entry.url}: received {received:,} bytes with sha256 "
                                  f"{actual[:12]}..., expected {entry.size:,} bytes with sha256 {entry.sha256[:12]}...")
        os.replace(tmp_name, dest)
    except (OSError, ValueError) as err:  # URLError is an OSError
        raise DataUnavailable(f"could not download {entry.url}: {err}") from err
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


# --- resumable downloads of large files (Hugging Face hub checkpoints: minigpt/hub.py) ---


def git_blob_sha1(path: Path) -> str:
    """The id git gives a file's contents: sha1 of b"blob <size>\\0" followed by the bytes.
    (Servers that keep files in git, such as the Hugging Face hub, name small files by it.)"""
    path = Path(path)
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_resumable(url: str, dest, size: int | None = None, sha256: str | None = None,
                       git_sha1: str | None = None, attempts: int = 3, timeout: float = 30) -> Path:
    """Download url to dest, resuming where an earlier attempt stopped; check size and hash.

    The bytes go to `dest.part` first. A transfer that breaks off keeps what it received;
    the next attempt (up to `attempts` in this call, or a later call) asks the server only
    for the missing bytes with an HTTP Range request and appends them. A server that
    ignores the Range and sends the whole file again is handled too (the file restarts).
    The complete file is checked against the size and the hash given (sha256, or git's
    blob sha1); only a file that passes becomes dest, one that fails is deleted so the
    next run starts afresh. Raises DataUnavailable, with the reason, when it cannot finish.
    """
    import http.client
    import time
    import urllib.error

    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if size is not None and part.exists() and part.stat().st_size > size:
        part.unlink()  # longer than the file: not a prefix of it
    have = part.stat().st_size if part.exists() else 0
    with tqdm(total=size, initial=have, unit="B", unit_scale=True, desc=f"downloading {dest.name}") as bar:
        for attempt in range(attempts):
            try:
                _download_rest(url, part, size, timeout, bar)
                break
            except urllib.error.HTTPError as err:
                if err.code not in (408, 429, 500, 502, 503, 504):  # not worth retrying
                    raise DataUnavailable(f"could not download {url}: HTTP {err.code} {err.reason}") from None
                failure = err
            except (OSError, http.client.HTTPException) as err:  # URLError, reset, timeout, cut short
                failure = err
            time.sleep(attempt)  # a moment before the second try, more before the third
        else:
            kept = part.stat().st_size if part.exists() else 0
            raise DataUnavailable(f"could not download {url} ({attempts} attempts; last: {failure}); "
                                  f"the {kept} bytes received are kept in {part}: run again to resume")
    _check_download(part, url, size, sha256, git_sha1)
    os.replace(part, dest)
    return dest


def _download_rest(url: str, part: Path, size: int | None, timeout: float, bar) -> None:
    """Append to `part` the bytes of url that it does not have yet (all of them if it has none)."""
    import urllib.error

    have = part.stat().st_size if part.exists() else 0
    if size is not None and have == size:
        return
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # "range not satisfiable": the part is not a prefix
            part.unlink()
        raise
    with response:
        content_range = response.headers.get("Content-Range", "")
        if have and not (response.status == 206 and content_range.startswith(f"bytes {have}-")):
            have = 0  # the server sent the file from its start: begin again
        bar.n = have
        bar.refresh()
        with open(part, "ab" if have else "wb") as out:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                bar.update(len(chunk))
    received = part.stat().st_size
    if size is not None and received < size:  # a server may close early without an error
        raise ConnectionError(f"the connection closed after {received} of {size} bytes")


def _check_download(part: Path, url: str, size: int | None, sha256: str | None, git_sha1: str | None) -> None:
    checks = []
    if size is not None:
        checks.append(("size", str(size), str(part.stat().st_size)))
    if sha256 is not None:
        checks.append(("sha256", sha256, sha256_of(part)))
    if git_sha1 is not None:
        checks.append(("git blob sha1", git_sha1, git_blob_sha1(part)))
    for what, expected, actual in checks:
        if actual != expected:
            part.unlink()
            raise DataUnavailable(f"the file downloaded from {url} has {what} {actual}, but the server "
                                  f"announced {expected}; it was deleted: run again to download it afresh")
