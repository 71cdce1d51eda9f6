"""TLS by configuration: with tls_cert_file and tls_key_file set, the gateway speaks only TLS."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from typer.testing import CliRunner

from labelmesh.cli import app
from labelmesh.client import GatewayClient
from tests.gateway_helpers import ADMIN, LABELS, PROJECT, run_cli, status_of
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (the cryptography package is not installed here)."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


async def test_tls_channel_works_and_plaintext_or_untrusted_ones_fail(env: Env, start_gateway,  # type: ignore[no-untyped-def]
                                                                      tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, "gateway")
    other, _ = _self_signed(tmp_path, "other")
    runtime = await start_gateway(tls_cert_file=str(cert), tls_key_file=str(key))
    address = f"127.0.0.1:{runtime.component.port}"

    secure = GatewayClient(address, ADMIN, grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(
        cert.read_bytes())))
    plain = GatewayClient(address, ADMIN)
    untrusted = GatewayClient(address, ADMIN, grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(
        other.read_bytes())))
    try:
        assert await status_of(plain.configure_project(PROJECT, LABELS)) == grpc.StatusCode.UNAVAILABLE
        assert await status_of(untrusted.configure_project(PROJECT, LABELS)) == grpc.StatusCode.UNAVAILABLE
        assert await runtime.db["projects"].count_documents({}) == 0, "nothing reached the server in plaintext"

        project = await secure.configure_project(PROJECT, LABELS, guidelines="over TLS")
        assert project.guideline_version == 1 and list(project.labels) == LABELS
        health = await health_pb2_grpc.HealthStub(secure.channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        token = await secure.create_annotator("ann")
    finally:
        for client in (secure, plain, untrusted):
            await client.close()

    # The terminal client reaches it too, given the CA certificate.
    result = await asyncio.to_thread(CliRunner().invoke, app, ["annotate", "--project", PROJECT, "--gateway", address,
                                                               "--token", token, "--ca-cert", str(cert)], input="q\n")
    assert result.exit_code == 0 and "No task is waiting for you" in result.output, result.output

    # So do the admin commands (project show over TLS; without the CA certificate they cannot connect).
    code, out, err = await run_cli(env, runtime.component.port, "project", "show", PROJECT, "--ca-cert", str(cert))
    assert code == 0 and "guidelines v1" in out, (out, err)
    code, out, err = await run_cli(env, runtime.component.port, "project", "show", PROJECT)
    assert code == 1 and "UNAVAILABLE" in out + err, (out, err)
