"""``aimp-triton-pod``: serve one model file through Triton until SIGTERM.

    aimp-triton-pod --model-file F --name NAME --http-port P --grpc-port G --metrics-port M
                    [--framework sklearn|onnx]

Exits 0 after a SIGTERM or SIGINT (Triton stopped cleanly), 1 if Triton died
on its own, 2 on bad arguments or a model that cannot be loaded.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from aimp_core.logging import configure_logging
from aimp_inference.adapter import LOADERS, load_adapter
from aimp_inference.triton_pod import PodPorts, build_triton

log = logging.getLogger("aimp_inference")

#: How often the main thread checks for a stop request and that Triton still lives.
WATCH_INTERVAL_S = 0.2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aimp-triton-pod", description=__doc__.splitlines()[0])
    parser.add_argument("--model-file", type=Path, required=True)
    parser.add_argument("--name", required=True, help="model name (the service name)")
    parser.add_argument(
        "--framework",
        choices=sorted(LOADERS),
        help="model format; default: from the extension (.joblib/.pkl sklearn, .onnx onnx)",
    )
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1", help="address Triton listens on")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging("triton-pod", args.log_level)
    try:
        adapter = load_adapter(args.model_file, args.framework)
    except (OSError, ValueError) as exc:
        log.error("cannot load the model", extra={"model_file": str(args.model_file)})
        raise SystemExit(f"aimp-triton-pod: {exc}") from None

    stop_requested: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop_requested.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    ports = PodPorts(args.http_port, args.grpc_port, args.metrics_port)
    triton = build_triton(adapter, name=args.name, ports=ports, bind_address=args.bind)
    log.info(
        "starting triton",
        extra={
            "model": args.name,
            "model_file": str(args.model_file),
            "http_port": ports.http,
            "grpc_port": ports.grpc,
            "metrics_port": ports.metrics,
            "inputs": [s.name for s in adapter.inputs],
            "outputs": [s.name for s in adapter.outputs],
            "batched": adapter.batched,
        },
    )
    exit_code = 0
    try:
        triton.run()
        log.info("triton ready", extra={"model": args.name, "http_port": ports.http})
        while not stop_requested:
            if not triton.is_alive():
                log.error("triton stopped on its own", extra={"model": args.name})
                exit_code = 1
                break
            time.sleep(WATCH_INTERVAL_S)
    finally:
        if stop_requested:
            log.info("stopping triton", extra={"signal": signal.Signals(stop_requested[0]).name})
        triton.stop()
    log.info("stopped", extra={"model": args.name, "exit_code": exit_code})
    sys.exit(exit_code)


if __name__ == "__main__":
    main()
