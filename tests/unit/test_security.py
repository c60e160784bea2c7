"""Issue 8's pure parts: the input rules declared in the protos and checked by one validator, budget errors,
the mTLS certificates and the gateway config that uses them, and settings that never print their secrets."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from agentmesh.errors import InvalidArgument
from agentmesh.gateway import GatewayTLS, local_spec, render_envoy_config
from agentmesh.rpc import RequestValidator, TextLimit, generate_certs
from agentmesh.services.supervisor.budgets import Spend
from agentmesh.settings import Settings
from agentmesh.v1 import guard_pb2, supervisor_pb2

UUID = "00000000-0000-4000-8000-000000000000"
ENVOY = Path(sys.executable).parent / "envoy"
VALIDATOR = RequestValidator(
    text_limits=[TextLimit("agentmesh.v1.RunRequest.message", 100, "AGENTMESH_MAX_MESSAGE_CHARS")]
)


def _violation(raw: bytes, parse: object) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        VALIDATOR.parse(raw, parse)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (supervisor_pb2.RunRequest(message=""), "RunRequest.message: must contain a non-whitespace character"),
        (supervisor_pb2.RunRequest(message=" \n\t "), "[message.not_blank]"),
        (supervisor_pb2.RunRequest(message="a\x00b"), "RunRequest.message: must not contain NUL characters"),
        (supervisor_pb2.RunRequest(message="x" * 32_001), "RunRequest.message: must be at most 32000 characters"),
        (
            supervisor_pb2.RunRequest(message="x" * 101),
            "101 characters is over the limit of 100 (AGENTMESH_MAX_MESSAGE_CHARS)",
        ),
        (supervisor_pb2.RunRequest(message="hi", thread_id="nope"), "RunRequest.thread_id: must be a valid UUID"),
        (supervisor_pb2.ResumeRequest(), "ResumeRequest.run_id: value is required"),
        (supervisor_pb2.ResumeRequest(run_id=UUID + "0"), "ResumeRequest.run_id: must be a valid UUID"),
        (supervisor_pb2.GetThreadRequest(thread_id="' OR 1=1 --"), "GetThreadRequest.thread_id: must be a valid UUID"),
        (guard_pb2.CheckRequest(text="a" * 100_001), "CheckRequest.text: must be at most 100000 characters"),
    ],
)
def test_each_declared_rule_is_enforced_and_named(request_: object, words: str) -> None:
    err = _violation(request_.SerializeToString(), type(request_).FromString)  # type: ignore[attr-defined]
    assert words in err.message
    assert err.reason in {"INVALID_FIELD", "TEXT_TOO_LONG"}


@pytest.mark.parametrize(
    "request_",
    [
        supervisor_pb2.RunRequest(message="Compare two payment providers"),
        supervisor_pb2.RunRequest(message="x" * 100, thread_id=UUID),  # at the limits, not over them
        supervisor_pb2.ResumeRequest(run_id=UUID),
        supervisor_pb2.GetThreadRequest(thread_id=UUID.upper()),
        guard_pb2.CheckRequest(text=""),
    ],
)
def test_valid_requests_pass(request_: object) -> None:
    parsed = VALIDATOR.parse(request_.SerializeToString(), type(request_).FromString)  # type: ignore[attr-defined]
    assert parsed == request_


def test_invalid_utf8_is_named_by_field() -> None:
    # Field 1 (message), length 3, bytes that are not UTF-8: protobuf refuses to parse it at all.
    err = _violation(b"\x0a\x03a\xffb", supervisor_pb2.RunRequest.FromString)
    assert err.reason == "INVALID_UTF8" and "RunRequest.message: not valid UTF-8" in err.message
    err = _violation(b"\x12\x02\xc3\x28", supervisor_pb2.RunRequest.FromString)  # field 2: a broken 2-byte sequence
    assert "RunRequest.thread_id: not valid UTF-8" in err.message


def test_bytes_that_are_no_message_are_malformed() -> None:
    err = _violation(b"\xff\xff\xff\xff", supervisor_pb2.RunRequest.FromString)
    assert err.reason == "MALFORMED_REQUEST" and "not a valid RunRequest" in err.message


def test_budget_errors_name_the_budget_and_when_it_resets() -> None:
    base = {"tenant": "acme", "token_limit": 1000, "usd_limit": 1.0, "resets_in_s": 7200.0}
    assert Spend(tokens=999, usd=0.5, **base).exhausted() is None  # type: ignore[arg-type]
    tokens = Spend(tokens=1000, usd=0.5, **base).exhausted()  # type: ignore[arg-type]
    assert tokens is not None and tokens.reason == "TENANT_TOKEN_BUDGET_EXHAUSTED"
    assert "AGENTMESH_TENANT_DAILY_TOKENS" in tokens.message and tokens.retry_after_s == 7200.0
    usd = Spend(tokens=0, usd=1.2, **base).exhausted()  # type: ignore[arg-type]
    assert (
        usd is not None and usd.reason == "TENANT_USD_BUDGET_EXHAUSTED" and "AGENTMESH_TENANT_DAILY_USD" in usd.message
    )
    unlimited = Spend(tenant="acme", tokens=10**9, usd=1e6, token_limit=0, usd_limit=0.0, resets_in_s=1.0)
    assert unlimited.exhausted() is None


def test_settings_never_show_their_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres:s3cretpw@127.0.0.1:5432/db")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-s3cret")
    monkeypatch.setenv("AGENTMESH_INTERNAL_TOKEN", "int-s3cret-token")
    s = Settings()
    shown = " ".join([repr(s), str(s), s.model_dump_json(), str(s.model_dump())])
    for secret in ("s3cretpw", "sk-ant-api03-s3cret", "int-s3cret-token"):
        assert secret not in shown
    assert s.database_url is not None and "s3cretpw" in s.database_url.get_secret_value()


def test_certs_chain_to_the_ca_name_their_owner_and_keep_keys_private(tmp_path: Path) -> None:
    written = generate_certs(tmp_path, ["gateway", "supervisor"], extra_hosts=["supervisor.internal"])
    assert {p.name for p in written} == {
        "ca.crt",
        "ca.key",
        "gateway.crt",
        "gateway.key",
        "supervisor.crt",
        "supervisor.key",
    }
    for key in tmp_path.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((tmp_path / "supervisor.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName)[:2] == ["supervisor", "supervisor.internal"]


def test_gateway_config_with_mtls_is_accepted_by_envoy(tmp_path: Path) -> None:
    generate_certs(tmp_path, ["gateway"])
    spec = local_spec(
        ports={"supervisor": [50051], "guard": [50055], "researcher": [50052]}, tls=GatewayTLS.in_dir(tmp_path)
    )
    text = render_envoy_config(spec)
    config = yaml.safe_load(text)
    for cluster in config["static_resources"]["clusters"]:
        tls = cluster["transport_socket"]["typed_config"]
        service = cluster["name"].removesuffix("-health").removesuffix("-reflection")  # the supervisor's meta clusters
        assert tls["sni"] == service
        san = tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
        assert san == [{"san_type": "DNS", "matcher": {"exact": service}}]
    listeners = {li["name"]: li for li in config["static_resources"]["listeners"]}
    assert "transport_socket" not in listeners["public"]["filter_chains"][0]  # clients keep their plain listener
    internal = listeners["internal"]["filter_chains"][0]["transport_socket"]["typed_config"]
    assert internal["require_client_certificate"] is True
    # ... and only the supervisor's: another service's certificate of the same CA is refused (issue 12).
    callers = internal["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert callers == [{"san_type": "DNS", "matcher": {"exact": "supervisor"}}]
    # Without TLS nothing of it is rendered.
    plain = yaml.safe_load(render_envoy_config(local_spec(ports={"supervisor": [1], "guard": [2]})))
    assert all("transport_socket" not in c for c in plain["static_resources"]["clusters"])
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    result = subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(path), "-l", "warning"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
