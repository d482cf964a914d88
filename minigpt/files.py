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
