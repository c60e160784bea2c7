"""`agentmesh certs`: the CA and certificates for optional mTLS between the gateway and the services, and the
launcher's side of it (certificates made on first use, the channel it health-checks services through)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import grpc

from agentmesh.gateway.render import GatewayTLS
from agentmesh.rpc import channel_credentials, generate_certs
from agentmesh.settings import SERVICES, Settings

IDENTITIES = ("gateway", *SERVICES)


def ensure_certs(settings: Settings, say: Callable[[str], None] = print) -> GatewayTLS | None:
    """With AGENTMESH_TLS_DIR set: the gateway's TLS files, generating the whole set if there is no CA yet."""
    if settings.tls_dir is None:
        return None
    if not (settings.tls_dir / "ca.crt").is_file():
        generate_certs(settings.tls_dir, IDENTITIES)
        say(f"mtls: generated a CA and certificates in {settings.tls_dir}")
    return GatewayTLS.in_dir(settings.tls_dir.absolute())  # Envoy may not share our working directory


def internal_channel(settings: Settings) -> grpc.aio.Channel:
    """A channel to the gateway's internal listener as the launcher uses it (health checks): mTLS when on. The
    listener admits only the supervisor's certificate; the launcher made every certificate, so it holds that one."""
    if settings.tls_dir is None:
        return grpc.aio.insecure_channel(settings.gateway_internal_addr)
    return grpc.aio.secure_channel(
        settings.gateway_internal_addr,
        channel_credentials(settings.tls_dir, "supervisor"),
        options=[("grpc.ssl_target_name_override", "gateway")],
    )


async def run(args: argparse.Namespace) -> int:
    settings = Settings()
    target = Path(args.dir) if args.dir else (settings.tls_dir or settings.data_dir / "tls")
    if (target / "ca.crt").exists() and not args.force:
        print(f"{target} already holds a CA; pass --force to replace it (every certificate changes)")
        return 1
    written = generate_certs(target, IDENTITIES, extra_hosts=args.host, days=args.days)
    for path in written:
        print(f"wrote {path}{' (private key, mode 0600)' if path.suffix == '.key' else ''}")
    print(f"set AGENTMESH_TLS_DIR={target} for every service and `agentmesh up` (the gateway reads the same files)")
    return 0
