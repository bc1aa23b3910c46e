"""Messages: credentials never shown, never megabytes long, never a traceback for what a user typed (issue 16)."""

from __future__ import annotations

import math

import pytest

from palaestra import cli
from palaestra.artifacts import write_json
from palaestra.config import MAX_NODES, safe_yaml
from palaestra.errors import ConfigError, one_line, redact
from palaestra.tuning.storage import display_url


@pytest.mark.parametrize("text,secret", [
    ("postgresql://user:PASSWORD@host:5432/db", "PASSWORD"),
    ("postgresql+psycopg2://user:PASS@WORD@host/db", "WORD"),
    ("could not parse 'mysql://u:PASSWORD@h:badport/x'", "PASSWORD"),
    ("sqlite:///x.db?password=PASSWORD&mode=ro", "PASSWORD"),
    ("GET /predict?token=PASSWORD HTTP/1.1", "PASSWORD"),
])
def test_redact_masks_credentials(text, secret):
    shown = redact(text)
    assert secret not in shown and "***" in shown


def test_display_url_masks_what_sqlalchemy_cannot_parse():
    assert "PASSWORD" not in display_url("postgresql://user:PASSWORD@host:badport/db")
    assert display_url("sqlite:////tmp/study.db") == "sqlite:////tmp/study.db"


def test_an_internal_error_traceback_is_redacted_too(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("driver said: cannot reach postgresql://ann:PASSWORD@db/x")

    monkeypatch.setitem(cli.COMMANDS, "datasets", (cli.COMMANDS["datasets"][0], cli.COMMANDS["datasets"][1], boom))
    assert cli.main(["datasets"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "PASSWORD" not in err and "ann:***@db" in err


def test_one_line_bounds_any_message():
    line = one_line("x" * 5_000_000 + "\n" + "y")
    assert len(line) < 2100 and "\n" not in line and "characters cut" in line


def test_yaml_bounds():
    with pytest.raises(ConfigError, match="nested more than"):
        safe_yaml("a: " + "[" * 100_000 + "]" * 100_000, "c.yaml")
    with pytest.raises(ConfigError, match="aliases of aliases"):
        safe_yaml("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                  + "".join(f"c{i}: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n" for i in range(MAX_NODES // 1000)),
                  "c.yaml")
    assert safe_yaml("a: &x [1, 2]\nb: *x\n", "c.yaml") == {"a": [1, 2], "b": [1, 2]}  # aliases themselves are fine


def test_write_json_never_writes_non_json(tmp_path):
    with pytest.raises(ValueError):
        write_json(tmp_path / "x.json", {"std": math.inf})
    assert not (tmp_path / "x.json").exists()


def test_a_column_too_large_to_scale_is_refused_by_name():
    import pandas as pd

    from palaestra.data.features import FitOptions, NumericFeature
    from palaestra.errors import DataError

    df = pd.DataFrame({"a": [1e308, -1e308] + [0.5 * i for i in range(28)], "y": ["x", "z"] * 15})
    with pytest.raises(DataError, match="column 'a' holds (a value|values) too large"):
        NumericFeature.fit("a", df["a"], FitOptions())


def test_log_lines_are_redacted(caplog):
    import logging

    from palaestra.errors import redact_logs

    redact_logs()
    with caplog.at_level(logging.INFO):
        logging.getLogger("palaestra.test").info("connecting to %s", "postgresql://u:PASSWORD@db/x")
        logging.getLogger("palaestra.test.access").info('%s - "%s %s"', "1.2.3.4", "GET", "/predict?token=PASSWORD")
    assert "PASSWORD" not in caplog.text and caplog.text.count("***") == 2


def test_json_output_is_strict_json():
    import json

    from palaestra.cli import json_line

    line = json_line({"roc_auc": float("nan"), "pair": (1.0, float("inf"))})
    assert json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}")) == \
        {"roc_auc": None, "pair": [1.0, None]}
