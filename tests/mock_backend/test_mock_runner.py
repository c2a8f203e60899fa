"""Ways to run the mock: a thread for synchronous harnesses, the command line, a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from extproc.mock_backend import MockConfig, main, start_in_thread

REPO = Path(__file__).resolve().parents[2]


def test_background_thread_serves_and_stops() -> None:
    with start_in_thread(MockConfig(family="glm")) as mock:
        response = httpx.post(
            mock.url + "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.json()["choices"][0]["message"]["content"] == "Hello! You said: hi"
        url = mock.url
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/health")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--listen", "nonsense"], "expected HOST:PORT"),
        (["--family", "gpt"], "invalid choice"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


def test_module_runs_as_a_process_with_a_loud_banner() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "extproc.mock_backend",
            "--listen",
            "127.0.0.1:0",
            "--family",
            "kimi",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            banner = proc.stdout.readline()
            assert "MOCK BACKEND" in banner and "NOT a model" in banner
            assert "family=kimi" in banner
            url = banner.split(" on ", 1)[1].split("/v1", 1)[0]
            assert httpx.get(url + "/health").status_code == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
