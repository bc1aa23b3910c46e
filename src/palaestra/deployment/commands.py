"""``palaestra export``, ``palaestra compress`` and ``palaestra serve``. Heavy imports stay inside handlers."""

from __future__ import annotations

import argparse
import os

from palaestra.cli import bounded_int, command, console, finite_float, port
from palaestra.errors import UserError


@command("export", help="export a run's model to ONNX or torch.export (.pt2), checked against the original")
def cmd_export(args: argparse.Namespace) -> int:
    from palaestra.artifacts import read_json
    from palaestra.deployment.export import DEPRECATED, RAW, export, preprocess_path
    from palaestra.runs import Run

    run = Run.load(args.run)
    if args.format in DEPRECATED:
        console(stderr=True).print(f"note: {DEPRECATED[args.format]}")
    path, check = export(run, args.format, args.out, tolerance=args.tolerance, quantize=args.quantize)
    out = console()
    out.print(f"checked on {check.source}: max |difference| {check.max_abs_diff:.3g} (tolerance {check.tolerance:g})")
    out.print(f"model: {path}")
    meta = read_json(preprocess_path(path))
    if meta.get("inputs") == RAW:
        raw = meta["check"]["raw_columns"]
        out.print(f"self-contained: takes the raw columns ({', '.join(meta['input_names'])}), preprocessing and "
                  f"decoding in the graph; checked on {raw['rows']} raw rows: max |difference| "
                  f"{raw['max_abs_diff']:.3g} (tolerance {raw['tolerance']:g})")
    out.print(f"preprocessing: {preprocess_path(path)}")
    return 0


@cmd_export.arguments
def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory")
    p.add_argument("--format", required=True, choices=["onnx", "torch_export", "torchscript"],
                   help="onnx; torch_export (torch.export, .pt2); torchscript (deprecated in torch: use torch_export)")
    p.add_argument("--out", help="file to write (default: RUN/export/model.onnx, model.pt2 or model.pt)")
    p.add_argument("--quantize", choices=["int8"], default=None, help="ONNX only: onnxruntime's dynamic int8 quantizer")
    p.add_argument("--tolerance", type=finite_float, default=None,
                   help="largest allowed output difference (default 1e-4; int8: 5%% of the largest output)")


@command("compress", help="prune and/or int8-quantize a run: a smaller run directory and a report")
def cmd_compress(args: argparse.Namespace) -> int:
    from palaestra.cli import default_out
    from palaestra.deployment.compress import compress, report_table
    from palaestra.runs import Run

    if args.prune is None and args.quantize is None:
        raise UserError("say what to do: --prune FRACTION and/or --quantize int8")
    if args.prune is not None and not 0.0 < args.prune < 1.0:
        raise UserError(f"--prune takes a fraction between 0 and 1 (got {args.prune})")
    if args.finetune_epochs < 0 or args.repeats < 1:
        raise UserError("--finetune-epochs must be 0 or more, --repeats 1 or more")
    run = Run.load(args.run)
    out = args.out or default_out(f"{run.path.name}-compressed")
    new_run, report = compress(run, out, prune=args.prune, quantize=args.quantize,
                               finetune_epochs=args.finetune_epochs, repeats=args.repeats)
    con = console()
    con.print(report_table(report))
    con.print(f"run: {new_run.path}")
    return 0


@cmd_compress.arguments
def _compress_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory")
    p.add_argument("--prune", type=finite_float, default=None, metavar="FRACTION",
                   help="zero this fraction of the smallest-magnitude weights (Linear and Conv layers)")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="int8 weights for Linear layers (weight-only; for int8 arithmetic export with --quantize int8)")
    p.add_argument("--finetune-epochs", type=bounded_int(0, 100_000, "an epoch count"), default=0, help="epochs of fine-tuning after pruning (default 0)")
    p.add_argument("--out", help="run directory to create (default: runs/NAME-compressed-TIMESTAMP)")
    p.add_argument("--repeats", type=bounded_int(1, 1_000_000, "a repeat count"), default=200, help="timed calls per latency figure (median; default 200)")


@command("serve", help="serve a run over HTTP: /predict, KServe v2 (/v2/...), MLflow (/invocations), /health, /metrics")
def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from palaestra.deployment.monitoring import PredictionLog
    from palaestra.deployment.server import serve
    from palaestra.runs import Run

    token = None
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            raise UserError(f"--token-env {args.token_env}: that environment variable is not set or empty")
    if not 0.0 <= args.log_sample <= 1.0:
        raise UserError(f"--log-sample takes a fraction between 0 and 1 (got {args.log_sample})")
    if args.max_body_bytes < 1 or args.max_rows < 1 or args.timeout <= 0 or args.header_timeout <= 0:
        raise UserError("--max-body-bytes, --max-rows, --timeout and --header-timeout must be positive")
    if args.protect_all and token is None:
        raise UserError("--protect-all protects endpoints with the token: give it with --token-env VAR")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(name)s: %(message)s")
    if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("palaestra.serve").warning("listening on %s without --token-env: anyone who can reach "
                                                     "this address can call /predict", args.host)
    run = Run.load(args.run)  # refuses truncated or altered artifacts (exit 2)
    plog = PredictionLog(args.log_predictions, args.log_sample) if args.log_predictions else None
    serve(run, args.host, args.port, backend=args.backend, token=token, max_body_bytes=args.max_body_bytes,
          max_rows=args.max_rows, timeout=args.timeout, prediction_log=plog, protect_all=args.protect_all,
          header_timeout=args.header_timeout, body_timeout=args.header_timeout * 3,
          max_connections=args.max_connections, model_name=args.model_name)
    return 0


@cmd_serve.arguments
def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=8000)
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    p.add_argument("--model-name", metavar="NAME", help="the model's name in the Open Inference Protocol's "
                                                        "/v2/models/NAME (default: the run's name, as `palaestra runs` lists it)")
    p.add_argument("--token-env", metavar="VAR", help="require 'Authorization: Bearer $VAR' on the prediction endpoints (/predict, /invocations, /v2/.../infer) "
                                                      "(and, with --protect-all, on every endpoint but /health)")
    p.add_argument("--protect-all", action="store_true",
                   help="with --token-env: also require the token on /metrics, /docs and /openapi.json "
                        "(/health stays open for load balancers; it shows no paths)")
    p.add_argument("--header-timeout", type=finite_float, default=10.0,
                   help="seconds a client has to send a request's headers (its body: 3x this) before the "
                        "connection is closed (default 10)")
    p.add_argument("--max-connections", type=bounded_int(1, 100_000, "a connection count"), default=64,
                   help="connections served at once; more get 503 (default 64)")
    p.add_argument("--max-body-bytes", type=bounded_int(1, 1 << 31, "a byte count"), default=1 << 20, help="larger request bodies get 413 (default 1 MiB)")
    p.add_argument("--max-rows", type=bounded_int(1, 10_000_000, "a row count"), default=10_000, help="most rows per request (default 10000)")
    p.add_argument("--timeout", type=finite_float, default=30.0, help="seconds a prediction may take before 503 (default 30)")
    p.add_argument("--log-predictions", metavar="FILE", help="opt-in: append sampled inputs and predictions (JSON lines)")
    p.add_argument("--log-sample", type=finite_float, default=0.1, help="fraction of rows to log (default 0.1)")
