"""The built-in ``pydocs`` set is the same rows in the same order however many modules are imported."""

from __future__ import annotations

import importlib

from palaestra.data.pydocs import TOPICS, load


def test_pydocs_rows_do_not_depend_on_what_else_is_imported():
    first = load()
    for name in ("http.cookies", "email.mime.text", "concurrent.futures.thread", "multiprocessing.pool", "xml.dom"):
        importlib.import_module(name)
    again = load()
    assert first.equals(again)
    assert set(first["topic"]) == set(TOPICS) and len(first) > 1000
    assert not first["doc"].duplicated().any() and (first["doc"].str.split().str.len() >= 4).all()
