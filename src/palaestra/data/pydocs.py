"""The ``pydocs`` built-in set: Python's standard library documenting itself, by topic.

Each row is the first paragraph of the docstring of one public function, class or method in 52 modules,
labelled with the topic of its module (files, math, text, network, time, concurrency, formats). Made here,
from the running interpreter (nothing is downloaded); the rows differ a little between Python versions.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator

import pandas as pd

TOPICS = {
    "files": ["os", "os.path", "shutil", "pathlib", "glob", "tempfile", "filecmp", "fnmatch", "stat"],
    "math": ["math", "cmath", "statistics", "fractions", "decimal", "random", "numbers"],
    "text": ["string", "re", "textwrap", "difflib", "unicodedata", "codecs"],
    "network": ["socket", "ssl", "http.client", "http.server", "urllib.request", "urllib.parse", "smtplib", "ftplib",
                "ipaddress", "email.message"],
    "time": ["datetime", "time", "calendar", "zoneinfo", "sched"],
    "concurrency": ["threading", "multiprocessing", "asyncio", "concurrent.futures", "queue", "subprocess", "signal"],
    "formats": ["json", "csv", "sqlite3", "xml.etree.ElementTree", "zipfile", "tarfile", "gzip", "configparser",
                "base64", "struct"],
}
MIN_WORDS = 4
_BUILTIN_TYPES = (dict, object, list, str, int, bytes, tuple, set, type, Exception, BaseException)


def _first_paragraphs(module_name: str) -> Iterator[str]:
    """The first docstring paragraph of each public callable of the module and of its classes."""
    seen: set[int] = set()
    held: list[object] = []  # keeps each seen member alive: a freed bound method's id is reused by the next one

    def walk(obj: object, depth: int) -> Iterator[str]:
        for name, member in inspect.getmembers(obj):
            if name.startswith("_") or not callable(member) or id(member) in seen:
                continue
            owner = getattr(member, "__objclass__", None)
            if getattr(member, "__module__", None) == "builtins" or owner in _BUILTIN_TYPES:
                continue  # inherited from a built-in type: not this module's documentation
            seen.add(id(member))
            held.append(member)
            doc = inspect.getdoc(member)
            if doc:
                yield " ".join(doc.strip().split("\n\n")[0].split())
            if inspect.isclass(member) and depth == 0:
                yield from walk(member, 1)

    yield from walk(importlib.import_module(module_name), 0)


def load() -> pd.DataFrame:
    rows = [(doc, topic) for topic, names in TOPICS.items() for name in names for doc in _first_paragraphs(name)
            if len(doc.split()) >= MIN_WORDS]
    frame = pd.DataFrame(rows, columns=["doc", "topic"])
    return frame.drop_duplicates("doc", keep=False).reset_index(drop=True)  # a text under two topics says neither
