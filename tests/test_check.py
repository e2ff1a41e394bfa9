"""`check` and first-contact errors, as operators meet them: the command against real sandboxes.

Each scenario runs the command in a subprocess, configured by a .dlt folder and env vars, and
asserts the exit code, the line that says what to fix, that no secret is printed, and that
nothing changed: no DuckDB file written, no Gainsight write.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from .cli import cli_env, push_env, run_main
from .conftest import ACCESS_KEY, CLIENT_SECRET, RESPONSE_OBJECT

DESCRIBE = "/v1/meta/services/objects/describe"


def check(env: dict[str, str], cwd: Path):
    result = run_main("check", cwd=cwd, env=env)
    for stream in (result.stdout, result.stderr):
        assert ACCESS_KEY not in stream and CLIENT_SECRET not in stream
    return result


def line(result, mark: str, *words: str) -> str:
    """The one output line starting with `mark` that holds every word."""
    found = [text for text in result.stdout.splitlines() if text.startswith(mark) and all(w in text for w in words)]
    assert found, f"no {mark} line with {words} in:\n{result.stdout}\n{result.stderr}"
    return found[0]


def gainsight_writes(gs) -> int:
    """Calls that could change the tenant: anything but describe, queries and the token."""
    return sum(
        1
        for entry in gs.requests()
        if not entry.path.startswith(("/v1/meta/", "/v1/data/objects/query/", "/v1/users/m2m/oauth/token"))
    )


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def tenants(cg_sandbox, gs_sandbox):
    return cg_sandbox(responses=40, days=5, accounts=3), gs_sandbox()


def test_check_passes_on_a_good_setup_and_changes_nothing(tenants, project):
    cg, gs = tenants
    result = check(push_env(cg, gs, project), project)

    assert result.returncode == 0, result.stdout + result.stderr
    line(result, "✓", "configuration")
    line(result, "✓", "CustomerGauge token granted")
    line(result, "✓", "CustomerGauge responses readable")
    line(result, "✓", "Gainsight key accepted")
    line(result, "✓", "CG_Account_Id__gc")
    line(result, "✓", "ResponseId__gc", "response_id")
    line(result, "✓", "Timeline author")
    line(result, "–", "activity type")
    line(result, "–", "Bulk job", "unchecked")
    line(result, "–", "staged accounts: nothing staged yet")
    assert "✗" not in result.stdout
    assert not (project / "staging.duckdb").exists()
    assert not (project / "pipelines").exists()  # no dlt pipeline, so no cursor or state anywhere
    assert gainsight_writes(gs) == 0
    assert cg.count(path="/v7/rest/sync/responses") == 1


def test_check_leaves_an_existing_staging_file_byte_for_byte(tenants, project):
    cg, gs = tenants
    env = push_env(cg, gs, project)
    assert run_main(cwd=project, env=env).returncode == 0
    staged = project / "staging.duckdb"
    before = hashlib.sha256(staged.read_bytes()).hexdigest()
    writes_before = gainsight_writes(gs)

    result = check(env, project)

    assert result.returncode == 0, result.stdout + result.stderr
    line(result, "✓", "staging file", "exists")
    line(result, "✓", "staged accounts: 3; 3 match a Company by key, 0 by name, 0 ambiguously, 0 not at all")
    assert hashlib.sha256(staged.read_bytes()).hexdigest() == before
    assert gainsight_writes(gs) == writes_before


def test_wrong_gainsight_key_exits_7(tenants, project):
    cg, gs = tenants
    result = check(push_env(cg, gs, project, DESTINATION__GAINSIGHT__ACCESS_KEY="not-the-key-123"), project)
    assert result.returncode == 7
    assert "DESTINATION__GAINSIGHT__ACCESS_KEY" in line(result, "✗", "refused")
    assert "not-the-key-123" not in result.stdout + result.stderr


def test_wrong_customergauge_secret_exits_3(tenants, project):
    cg, gs = tenants
    result = check(push_env(cg, gs, project, SOURCES__CUSTOMERGAUGE__CLIENT_SECRET="wrong-secret-9a"), project)
    assert result.returncode == 3
    assert "SOURCES__CUSTOMERGAUGE__CLIENT_SECRET" in line(result, "✗", "rejected the client credentials")
    line(result, "✓", "Gainsight key accepted")  # the other tenant is still checked


def test_unknown_mapped_field_names_its_key(tenants, project):
    cg, gs = tenants
    env = push_env(cg, gs, project, DESTINATION__GAINSIGHT__RESPONSE_FIELDS__COMMENT="Verbatim__gc")
    result = check(env, project)
    assert result.returncode == 2
    failed = line(result, "✗", "Verbatim__gc")
    assert "DESTINATION__GAINSIGHT__RESPONSE_FIELDS__COMMENT" in failed


def test_incompatible_mapped_field_type_names_its_key(tenants, project):
    cg, gs = tenants
    env = push_env(cg, gs, project, DESTINATION__GAINSIGHT__RESPONSE_FIELDS__SCORE="Comment__gc")
    result = check(env, project)
    assert result.returncode == 2
    assert "DESTINATION__GAINSIGHT__RESPONSE_FIELDS__SCORE" in line(result, "✗", "Comment__gc", "score needs")


def test_unknown_response_object_names_its_key(tenants, project):
    cg, gs = tenants
    result = check(push_env(cg, gs, project, DESTINATION__GAINSIGHT__RESPONSE_OBJECT="CG_NPS_Respons__gc"), project)
    assert result.returncode == 2
    assert "DESTINATION__GAINSIGHT__RESPONSE_OBJECT" in line(result, "✗", "CG_NPS_Respons__gc")
    line(result, "✓", "Gainsight key accepted")


def test_unknown_timeline_author_names_its_key(tenants, project):
    cg, gs = tenants
    result = check(push_env(cg, gs, project, DESTINATION__GAINSIGHT__TIMELINE_AUTHOR_EMAIL="nobody@example.com"), project)
    assert result.returncode == 2
    assert "DESTINATION__GAINSIGHT__TIMELINE_AUTHOR_EMAIL" in line(result, "✗", "nobody@example.com")


def test_missing_company_key_field_names_its_key(tenants, project):
    cg, gs = tenants
    result = check(push_env(cg, gs, project, DESTINATION__GAINSIGHT__COMPANY_KEY_FIELD="CG_Account__gc"), project)
    assert result.returncode == 2
    assert "DESTINATION__GAINSIGHT__COMPANY_KEY_FIELD" in line(result, "✗", "CG_Account__gc")


def test_typo_in_config_toml_is_named_with_a_suggestion(tenants, project):
    cg, gs = tenants
    config = project / ".dlt" / "config.toml"
    text = config.read_text()
    config.write_text(text.replace("lookback_days = 3", "lookback_day = 3").replace('response_bulk_job_id = ""', 'response_bulk_job = ""'))
    env = push_env(cg, gs, project)
    env.pop("SOURCES__CUSTOMERGAUGE__LOOKBACK_DAYS")
    env.pop("DESTINATION__GAINSIGHT__RESPONSE_BULK_JOB_ID")

    result = check(env, project)
    assert result.returncode == 2
    assert "did you mean sources.customergauge.lookback_days" in line(result, "✗", "lookback_day ")
    assert "did you mean destination.gainsight.response_bulk_job_id" in line(result, "✗", "response_bulk_job ")

    cg.clear_log()
    run = run_main(cwd=project, env=env)  # the scheduled run refuses it too, before any call
    assert run.returncode == 2
    assert "lookback_day" in run.stderr and "did you mean" in run.stderr
    assert cg.requests() == [] and not (project / "staging.duckdb").exists()


def test_typo_in_env_var_is_named_with_a_suggestion(tenants, project):
    cg, gs = tenants
    env = push_env(cg, gs, project, SOURCES__CUSTOMERGAUGE__LOOKBAK_DAYS="7")
    result = check(env, project)
    assert result.returncode == 2
    assert "did you mean SOURCES__CUSTOMERGAUGE__LOOKBACK_DAYS" in line(result, "✗", "SOURCES__CUSTOMERGAUGE__LOOKBAK_DAYS")
    run = run_main("--stage-only", cwd=project, env=env)
    assert run.returncode == 2 and "SOURCES__CUSTOMERGAUGE__LOOKBAK_DAYS" in run.stderr


@pytest.mark.parametrize("value", ["", "<your client secret>", "your-client-secret"])
def test_empty_or_placeholder_credentials_are_config_errors_before_any_call(cg_sandbox, project, value):
    cg = cg_sandbox(responses=10)
    env = cli_env(cg, project, SOURCES__CUSTOMERGAUGE__CLIENT_SECRET=value)
    result = run_main("--stage-only", cwd=project, env=env)
    assert result.returncode == 2, result.stderr
    assert "sources.customergauge.client_secret" in result.stderr and "SOURCES__CUSTOMERGAUGE__CLIENT_SECRET" in result.stderr
    assert cg.requests() == []


def test_secrets_file_copied_from_the_example_is_a_config_error(cg_sandbox, project):
    cg = cg_sandbox(responses=10)
    (project / ".dlt" / "secrets.toml").write_text((Path(__file__).parents[1] / ".dlt" / "secrets.toml.example").read_text())
    env = cli_env(cg, project)
    for name in ("SOURCES__CUSTOMERGAUGE__CLIENT_ID", "SOURCES__CUSTOMERGAUGE__CLIENT_SECRET"):
        env.pop(name)
    result = run_main("--stage-only", cwd=project, env=env)
    assert result.returncode == 2, result.stderr
    assert "SOURCES__CUSTOMERGAUGE__CLIENT_ID" in result.stderr and "empty" in result.stderr
    assert cg.requests() == []


def test_gainsight_placeholder_key_is_a_config_error(tenants, project):
    cg, gs = tenants
    result = check(push_env(cg, gs, project, DESTINATION__GAINSIGHT__ACCESS_KEY="<access key>"), project)
    assert result.returncode == 2
    assert "DESTINATION__GAINSIGHT__ACCESS_KEY" in line(result, "✗", "placeholder")
    assert gs.requests() == []


@pytest.mark.parametrize(
    "variable",
    ["SOURCES__CUSTOMERGAUGE__API_BASE_URL", "SOURCES__CUSTOMERGAUGE__TOKEN_URL", "DESTINATION__GAINSIGHT__BASE_URL"],
)
def test_plain_http_to_a_remote_host_is_refused(tenants, project, variable):
    cg, gs = tenants
    result = run_main(cwd=project, env=push_env(cg, gs, project, **{variable: "http://cg.example.com/x"}))
    assert result.returncode == 2
    assert variable in result.stderr and "plain http://" in result.stderr
    assert cg.requests() == [] and gs.requests() == []


def unreachable(kind: str, sandbox) -> str:
    """A URL that fails on first contact: refused, unresolvable, TLS against plain http, wrong path."""
    return {
        "refused": f"http://127.0.0.1:{closed_port()}",
        "dns": "https://nonexistent.invalid",
        "tls": sandbox.base_url.replace("http://", "https://"),
        "path": sandbox.base_url + "/wrong",
    }[kind]


@pytest.mark.parametrize("kind", ["refused", "dns", "tls", "path"])
def test_customergauge_first_contact_failures_are_config_errors_naming_host_and_setting(cg_sandbox, project, kind):
    cg = cg_sandbox(responses=10)
    url = unreachable(kind, cg)
    env = cli_env(cg, project, SOURCES__CUSTOMERGAUGE__API_BASE_URL=url, SOURCES__CUSTOMERGAUGE__MAX_ATTEMPTS="6")
    result = run_main("--stage-only", cwd=project, env=env)
    assert result.returncode == 2, result.stderr
    assert "SOURCES__CUSTOMERGAUGE__API_BASE_URL" in result.stderr
    assert url.split("://")[1].split("/")[0] in result.stderr
    assert "retry" not in result.stderr  # not retried as if transient
    if kind == "path":
        assert cg.count(path="/wrong/v7/rest/sync/responses") == 1


@pytest.mark.parametrize("kind", ["refused", "dns", "tls", "path"])
def test_gainsight_first_contact_failures_are_config_errors_naming_host_and_setting(tenants, project, kind):
    cg, gs = tenants
    url = unreachable(kind, gs)
    result = check(push_env(cg, gs, project, DESTINATION__GAINSIGHT__BASE_URL=url), project)
    assert result.returncode == 2, result.stdout + result.stderr
    failed = line(result, "✗", "DESTINATION__GAINSIGHT__BASE_URL")
    assert url.split("://")[1].split("/")[0] in failed
    assert "retry" not in result.stderr
    assert len([text for text in result.stdout.splitlines() if text.startswith("✗")]) == 1  # stops at the first


def test_unknown_object_in_a_run_exits_2_naming_the_key(tenants, project):
    cg, gs = tenants
    env = push_env(cg, gs, project, DESTINATION__GAINSIGHT__RESPONSE_OBJECT="CG_NPS_Respons__gc")
    result = run_main(cwd=project, env=env)
    assert result.returncode == 2, result.stderr
    assert "DESTINATION__GAINSIGHT__RESPONSE_OBJECT" in result.stderr
    assert gs.count_records(RESPONSE_OBJECT) == 0


def test_unknown_bulk_job_in_a_run_exits_2_naming_the_key(tenants, project):
    cg, gs = tenants
    env = push_env(cg, gs, project, DESTINATION__GAINSIGHT__RESPONSE_BULK_JOB_ID="no-such-job", DESTINATION__GAINSIGHT__BULK_MIN_ROWS="10")
    result = run_main(cwd=project, env=env)
    assert result.returncode == 2, result.stderr
    assert "DESTINATION__GAINSIGHT__RESPONSE_BULK_JOB_ID" in result.stderr


def test_gainsight_refusing_connections_in_a_run_exits_2_after_staging(tenants, project):
    cg, gs = tenants
    url = unreachable("refused", gs)
    result = run_main(cwd=project, env=push_env(cg, gs, project, DESTINATION__GAINSIGHT__BASE_URL=url))
    assert result.returncode == 2, result.stderr
    assert "DESTINATION__GAINSIGHT__BASE_URL" in result.stderr and url.split("://")[1] in result.stderr
    assert "retry" not in result.stderr
    assert (project / "staging.duckdb").exists()  # staged; the push resumes once the URL is fixed
