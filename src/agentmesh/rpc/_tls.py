"""Optional mTLS between the gateway and the services: a private CA, one certificate per service and one for
the gateway (`agentmesh certs`), and the gRPC credentials built from them.

With `AGENTMESH_TLS_DIR` set, every service port requires a client certificate signed by the CA (the
gateway's, in practice), and the gateway's internal listener requires one too (the services'), so neither
side of the mesh can be reached by a process that only has network access. Each certificate names its
owner in a DNS SAN (`supervisor`, `gateway`, ...), which Envoy checks when it connects to a service."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agentmesh.errors import InvalidArgument

CA = "ca"
GATEWAY = "gateway"
# Names every certificate carries besides its owner's, so that loopback set-ups verify too.
_LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class CertFiles:
    """Where one identity's files are: the CA that signs the mesh, its certificate and key."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def of(cls, tls_dir: Path, name: str) -> CertFiles:
        files = cls(tls_dir / f"{CA}.crt", tls_dir / f"{name}.crt", tls_dir / f"{name}.key")
        missing = [str(p) for p in (files.ca, files.cert, files.key) if not p.is_file()]
        if missing:
            raise InvalidArgument(
                f"AGENTMESH_TLS_DIR lacks {', '.join(missing)}: run `agentmesh certs --dir {tls_dir}`",
                reason="TLS_FILES_MISSING",
            )
        return files


def server_credentials(tls_dir: Path, name: str) -> grpc.ServerCredentials:
    """TLS with a required client certificate from the mesh's CA."""
    f = CertFiles.of(tls_dir, name)
    return grpc.ssl_server_credentials(
        [(f.key.read_bytes(), f.cert.read_bytes())], root_certificates=f.ca.read_bytes(), require_client_auth=True
    )


def channel_credentials(tls_dir: Path, name: str) -> grpc.ChannelCredentials:
    """Client side: trust only the mesh's CA and present `name`'s certificate."""
    f = CertFiles.of(tls_dir, name)
    return grpc.ssl_channel_credentials(
        root_certificates=f.ca.read_bytes(), private_key=f.key.read_bytes(), certificate_chain=f.cert.read_bytes()
    )


def _san(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in dict.fromkeys(names):  # ordered, without duplicates
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


def _write(path: Path, data: bytes, *, private: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate_certs(
    tls_dir: Path,
    names: Sequence[str],
    *,
    extra_hosts: Sequence[str] = (),
    days: int = 365,
    now: dt.datetime | None = None,
) -> list[Path]:
    """A new CA and, for each name, a certificate (server and client use) with SANs: the name, extra_hosts
    (e.g. Kubernetes service names) and loopback. Keys are written 0600. Returns the files written."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    now = now or dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentmesh CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    written = [tls_dir / f"{CA}.crt", tls_dir / f"{CA}.key"]
    _write(written[0], ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
    # The CA key stays beside the certificates so `agentmesh certs` can be re-run; keep the directory private.
    _write(written[1], _pem_key(ca_key), private=True)
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_san([name, *extra_hosts, *_LOCAL_NAMES]), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write(tls_dir / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM), private=False)
        _write(tls_dir / f"{name}.key", _pem_key(key), private=True)
        written += [tls_dir / f"{name}.crt", tls_dir / f"{name}.key"]
    return written
