"""The author's tools as a user runs them: `agentbot check`, `test`, `simulate` and `graph`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_cli import environment
from tests.test_graph import parse_chart

FLOWS = ROOT / "flows"


def agentbot(
    *args: str, cwd: Path, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentbot", *args],
        env=environment(cwd, PYTHONIOENCODING="utf-8", **env),
        cwd=cwd,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )


# --- agentbot test ----------------------------------------------------------------------------


def test_shipped_conversation_tests_pass(tmp_path: Path) -> None:
    """`agentbot test flows/tests` passes, every shipped flow has tests, and the last line is
    the summary CI reads."""
    result = agentbot("test", str(FLOWS / "tests"), cwd=tmp_path, FLOWS_DIR=str(FLOWS))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"\d+ passed, 0 failed", lines[-1]), lines[-1]
    assert all(line.startswith("PASS ") for line in lines[:-1])
    tested = {Path(line.split(":")[0].removeprefix("PASS ")).stem for line in lines[:-1]}
    assert tested == {path.stem for path in FLOWS.glob("*.yaml")}


def broken_copy(tmp_path: Path) -> Path:
    """flows/ copied with the comercial flow's greeting changed, as a careless edit would."""
    flows = tmp_path / "flows"
    shutil.copytree(FLOWS, flows)
    path = flows / "fluxo_comercial.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace("Sou o assistente comercial da Loja Exemplo.", "Sou o robô da Loja."),
        encoding="utf-8",
    )
    return flows


def test_broken_flow_fails_with_a_diff(tmp_path: Path) -> None:
    """On a broken flow `agentbot test` exits 1 and shows, for each failing test, the file,
    line, test and step with the expected and actual bot message and their diff."""
    broken_copy(tmp_path)
    result = agentbot("test", cwd=tmp_path)  # FLOWS_DIR/tests by default
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"^\d+ passed, [1-9]\d* failed$", out, re.MULTILINE), out
    expected = "\n".join(
        [
            "FAIL flows/tests/fluxo_comercial.yaml:10: lead frio: step 2 (bot):"
            " the message differs",
            "    expected: 'Olá Ana Souza! Sou o assistente comercial da Loja Exemplo."
            " Quer conhecer nossos planos?'",
            "    actual:   'Olá Ana Souza! Sou o robô da Loja. Quer conhecer nossos planos?'",
            "    diff (- expected, + actual):",
        ]
    )
    assert expected in out
    assert "    ?" in out  # ndiff's markers under the changed characters
    assert "PASS flows/tests/suporte.yaml" in out


def test_a_tmp_test_file_against_a_flow_by_path(tmp_path: Path) -> None:
    """A test file may name its flow by a path relative to itself; a passing and a failing
    test are counted apart."""
    flows = broken_copy(tmp_path)
    tests = tmp_path / "mine"
    tests.mkdir()
    (tests / "lead.yaml").write_text(
        "flow: ../flows/fluxo_comercial.yaml\n"
        "contact: {name: Ana}\n"
        "tests:\n"
        "  - name: botões\n"
        "    steps:\n"
        "      - user: Oi\n"
        "      - buttons: [Sim, Não]\n"
        "  - name: saudação\n"
        "    steps:\n"
        "      - user: Oi\n"
        "      - bot_contains: assistente comercial\n",
        encoding="utf-8",
    )
    result = agentbot("test", str(tests / "lead.yaml"), cwd=tmp_path, FLOWS_DIR=str(flows))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"PASS {tests}/lead.yaml:4: botões",
        f"FAIL {tests}/lead.yaml:11: saudação: step 2 (bot_contains): the message does not"
        " contain 'assistente comercial'",
        "    actual:   'Olá Ana! Sou o robô da Loja. Quer conhecer nossos planos?'",
        "1 passed, 1 failed",
    ]


def test_test_file_problems_and_missing_paths(tmp_path: Path) -> None:
    """A test file with problems, one naming an unknown flow and a missing path are each
    reported, and the run fails."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "a.yaml").write_text(
        "flow: fluxo_comercal\ntests: [{steps: [{user: oi}]}]\n"
    )
    (tmp_path / "tests" / "b.yaml").write_text("flow: x\ntests: [{steps: [{bott: oi}]}]\n")
    result = agentbot("test", "tests", "nowhere", cwd=tmp_path, FLOWS_DIR=str(FLOWS))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "nowhere: no such file or directory",
        f"tests/a.yaml:1: flow: no flow named 'fluxo_comercal' in {FLOWS}"
        " (did you mean 'fluxo_comercial'?)",
        "tests/b.yaml:2: tests[0].steps[0]: unknown step 'bott' (did you mean 'bot'?)",
    ]
    assert result.stdout == "0 passed, 0 failed, 3 error(s)\n"


def test_invalid_flows_dir_is_reported_once(tmp_path: Path) -> None:
    """When FLOWS_DIR holds an invalid flow, its problems are printed once and every test
    file naming a flow fails."""
    (tmp_path / "flows" / "tests").mkdir(parents=True)
    (tmp_path / "flows" / "ruim.yaml").write_text("blocks: {a: {mesage: oi}}\n")
    for name in ("a", "b"):
        (tmp_path / "flows" / "tests" / f"{name}.yaml").write_text(
            "flow: ruim\ntests: [{steps: [{user: oi}]}]\n"
        )
    result = agentbot("test", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "flows/ruim.yaml:1: blocks.a.mesage: unknown key 'mesage' (did you mean 'message'?)",
        "flows/tests/b.yaml:1: flow: no flow named 'ruim' in flows (no valid flow was read"
        " from it)",
    ]
    assert result.stdout == "0 passed, 0 failed, 2 error(s)\n"


def test_no_test_files_is_a_failure(tmp_path: Path) -> None:
    """A folder without test files fails rather than passing on nothing."""
    (tmp_path / "empty").mkdir()
    result = agentbot("test", "empty", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, "0 passed, 0 failed: no test files in empty\n")


# --- agentbot simulate -----------------------------------------------------------------------


def test_simulate_with_piped_stdin(tmp_path: Path) -> None:
    """`agentbot simulate` reads the customer's lines from a pipe, answers the webhook from
    the next line, and stops cleanly when the input ends."""
    stdin = "suporte\nInternet\nana@exemplo.com\n11987654321\n05/01/2026\n"
    stdin += '{"protocolo": "ab1", "situacao": "aberto"}\n2\n'
    result = agentbot(
        "simulate",
        "suporte",
        "--name",
        "Ana Souza",
        "--now",
        "2026-01-01T12:00:00Z",  # 09:00 in São Paulo: the support team is in (hours:)
        cwd=tmp_path,
        stdin=stdin,
        FLOWS_DIR=str(FLOWS),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[flow suporte (Suporte Técnico) on Channel::Whatsapp; /help for help]",
        "> suporte",
        "bot: Olá, Ana! Sou o assistente de suporte. Sobre o que é o seu contato?",
        "  1) Internet",
        "  2) Fatura",
        "  3) Outro assunto",
        "> Internet",
        "[labels +suporte_internet]",
        "bot: Qual é o e-mail do seu cadastro?",
        "> ana@exemplo.com",
        '[saved conversation.custom_attributes.email = "ana@exemplo.com"]',
        "bot: E um telefone com DDD para falarmos com você?",
        "> 11987654321",
        '[saved conversation.custom_attributes.telefone = "+5511987654321"]',
        "bot: Desde quando a conexão está com problema? (dd/mm/aaaa)",
        "> 05/01/2026",
        "bot: Um momento, estou registrando o seu chamado…",
        '[webhook POST https://crm.example/api/chamados {"cliente": "Ana Souza", "conversa": 1,'
        ' "email": "ana@exemplo.com", "telefone": "+5511987654321", "cpf": null, "valor": null,'
        ' "pedido": null, "descricao": null, "prioridade": "normal"}]',
        "[webhook answer? JSON, STATUS [JSON], error [TEXT], or empty for 200]",
        '> {"protocolo": "ab1", "situacao": "aberto"}',
        "bot: Chamado *AB1* aberto, prioridade normal. Isso já resolve por agora?",
        "  1) Sim, obrigado",
        "  2) Falar com alguém",
        "> 2",
        "bot: Combinado! Vou passar você para a equipe de suporte. Aguarde só um instante.",
        "[assign: team 2]",
        "[private note:",
        " Chamado ab1, prioridade NORMAL.",
        "",
        " Dados coletados:",
        " - email: ana@exemplo.com",
        " - telefone: +5511987654321",
        " - desde: 2026-01-05]",
        "[handoff: the flow hands off here]",
        "[end: handed_off]",
    ]


def test_simulate_with_variables_and_a_fixed_webhook_reply(tmp_path: Path) -> None:
    """`--var` starts the flow before any message; `--webhook-reply` answers every call."""
    stdin = "Fatura\n52998224725\n900\n"
    result = agentbot(
        "simulate",
        str(FLOWS / "suporte.yaml"),
        "--var",
        "origem=site",
        "--webhook-reply",
        "503",
        "--channel",
        "telegram",
        cwd=tmp_path,
        stdin=stdin,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        "[flow suporte (Suporte Técnico) on Channel::Telegram; /help for help]",
        "bot: Olá, Cliente! Sou o assistente de suporte. Sobre o que é o seu contato?",
        "  1) Internet",
    ]
    assert lines[-11:] == [
        "[labels +crm_indisponivel]",
        "bot: Não consegui registrar o chamado agora. Vou chamar alguém da equipe para ajudar.",
        "[assign: team 2]",
        "[private note:",
        " O CRM não respondeu: registre o chamado manualmente. Prioridade ALTA.",
        "",
        " Dados coletados:",
        " - cpf: 52998224725",
        " - valor: 900]",
        "[handoff: the flow hands off here]",
        "[end: handed_off]",
    ]


def test_simulate_at_a_moment_outside_business_hours(tmp_path: Path) -> None:
    """`--now` sets the clock the flow's hours are judged at; a moment without offset is refused."""
    stdin = 'Fatura\n52998224725\n90\n{"protocolo": "f1"}\n2\n'
    args = ["simulate", str(FLOWS / "suporte.yaml"), "--var", "origem=site"]
    result = agentbot(*args, "--now", "2026-01-03T13:30:00-03:00", cwd=tmp_path, stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert "[labels +fora_do_horario]" in result.stdout.splitlines()
    refused = agentbot(*args, "--now", "2026-01-03 13:30", cwd=tmp_path, stdin=stdin)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "agentbot: --now '2026-01-03 13:30' is not a moment with its offset: write e.g. "
        "2026-12-01T09:00:00-03:00"
    )
    assert agentbot(*args, "--now", "amanhã", cwd=tmp_path, stdin=stdin).returncode == 1


@pytest.mark.parametrize(
    ("args", "flows_dir", "message"),
    [
        (("simulate", "suport"), FLOWS, f"agentbot: no flow named 'suport' in {FLOWS} (flows"),
        (("simulate", "suporte", "--var", "x"), FLOWS, "agentbot: --var 'x': expected NAME=VALUE"),
        (("graph", "nada.yaml"), FLOWS, "nada.yaml:0: (file): no such file or directory"),
        (
            ("graph", "suporte"),
            ROOT / "nowhere",
            f"agentbot: no flow named 'suporte': FLOWS_DIR '{ROOT / 'nowhere'}' is not a folder",
        ),
    ],
    ids=["unknown-flow", "bad-var", "missing-file", "no-flows-dir"],
)
def test_flow_commands_explain_what_is_wrong(
    args: tuple[str, ...], flows_dir: Path, message: str
) -> None:
    """An unknown flow, a malformed --var or a missing file: one message, exit 1."""
    result = agentbot(*args, cwd=ROOT, FLOWS_DIR=str(flows_dir))
    assert result.returncode == 1
    assert message in result.stderr


# --- agentbot graph --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference", ["suporte", "flows/fluxo_comercial.yaml"], ids=["name", "path"]
)
def test_graph_prints_a_mermaid_flowchart(reference: str) -> None:
    """`agentbot graph` prints a flowchart whose every statement parses, with a node per block."""
    result = agentbot("graph", reference, cwd=ROOT, FLOWS_DIR=str(FLOWS))
    assert result.returncode == 0, result.stderr
    chart = parse_chart(result.stdout)
    labels = {label.split("<br/>")[0] for _, label in chart.nodes.values()}
    name = Path(reference).stem
    blocks = (FLOWS / f"{name}.yaml").read_text(encoding="utf-8").split("\nblocks:\n")[1]
    for block_id in re.findall(r"^  (\w+):$", blocks, re.MULTILINE):
        assert block_id in labels


# --- agentbot check --------------------------------------------------------------------------

WARNED = """\
name: avisos
blocks:
  inicio:
    message: Quer?
    buttons:
      - {text: Sim}
      - {text: Não, next_block: fim}
  fim:
    message: Tchau
  perdido:
    message: Ninguém chega aqui
"""


def test_check_warns_without_failing(tmp_path: Path) -> None:
    """Unreachable blocks and dead ends are warnings: printed, exit code unchanged; next to an
    invalid file they are still printed, and the problems make the exit code 1."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "avisos.yaml").write_text(WARNED, encoding="utf-8")
    result = agentbot("check", cwd=tmp_path)
    warnings = [
        "flows/avisos.yaml:6: blocks.inicio.buttons[0]: warning: choosing this button ends the"
        " flow without a reply to the customer",
        "flows/avisos.yaml:10: blocks.perdido: warning: no way leads to this block from the start",
    ]
    assert result.returncode == 0
    assert result.stderr.splitlines() == warnings
    assert result.stdout.startswith("flows/avisos.yaml: ok (avisos, 3 blocks")
    (flows / "ruim.yaml").write_text("blocks: {a: {mesage: oi}}\n", encoding="utf-8")
    result = agentbot("check", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        *warnings,
        "1 problem(s) in flow files:",
        "flows/ruim.yaml:1: blocks.a.mesage: unknown key 'mesage' (did you mean 'message'?)",
    ]


def test_check_applies_the_rules_serve_applies(tmp_path: Path) -> None:
    """A flow saving contact attributes fails `check` without CHATWOOT_USER_TOKEN, as `serve`
    refuses it, and passes with the token."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "contato.yaml").write_text(
        "blocks:\n  a:\n    message: Plano?\n    input: {save_as: plano}\n"
        "    save_to: contact.custom_attributes.plano\n",
        encoding="utf-8",
    )
    result = agentbot("check", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-2:] == [
        "1 problem(s) in flow files:",
        "flows/contato.yaml:5: blocks.a.save_to: contact attributes need CHATWOOT_USER_TOKEN"
        " (the bot's token may not write contacts): set it in env-workflows",
    ]
    result = agentbot("check", cwd=tmp_path, CHATWOOT_USER_TOKEN="t0ken")
    assert result.returncode == 0, result.stderr


def test_a_file_of_the_wrong_kind_says_so(tmp_path: Path) -> None:
    """`check` on a conversation test file and `test` on a flow name the right command, at the
    file's first key, instead of listing unknown keys."""
    tests_file = FLOWS / "tests" / "suporte.yaml"
    result = agentbot("check", str(tests_file), cwd=tmp_path)
    assert result.returncode == 1
    [problem] = result.stderr.splitlines()[1:]
    assert re.fullmatch(
        re.escape(str(tests_file)) + r":\d+: \(root\): this is a conversation test file"
        r" \(it has tests:\), not a flow: run it with `agentbot test`",
        problem,
    ), problem
    result = agentbot("test", str(FLOWS / "suporte.yaml"), cwd=tmp_path, FLOWS_DIR=str(FLOWS))
    assert result.returncode == 1
    [problem] = result.stderr.splitlines()
    assert re.fullmatch(
        re.escape(str(FLOWS / "suporte.yaml")) + r":\d+: \(root\): this is a flow"
        r" \(it has blocks:\), not a conversation test file: check it with `agentbot check`",
        problem,
    ), problem


def test_a_closed_pipe_is_no_traceback(tmp_path: Path) -> None:
    """`agentbot simulate … | head -1` stops quietly when the reader goes away."""
    (tmp_path / "falas.txt").write_text("menu\n" * 5000, encoding="utf-8")
    command = (
        f"{sys.executable} -m agentbot simulate {FLOWS / 'fluxo_comercial.yaml'}"
        " < falas.txt | head -1"
    )
    result = subprocess.run(
        ["sh", "-c", command],
        env=environment(tmp_path, PYTHONIOENCODING="utf-8"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    assert len(result.stdout.splitlines()) == 1
    assert result.stderr == ""


def test_shipped_flows_have_no_warnings(tmp_path: Path) -> None:
    """The example flows pass `agentbot check` without a warning."""
    result = agentbot("check", str(FLOWS), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
