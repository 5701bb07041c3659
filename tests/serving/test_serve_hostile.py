"""One client never hurts another (issue 34, items 1-3): a real `xlm-hf serve` process, innocent clients answered
correctly while a hostile one sends poison text, too much work, a huge body, the wrong Content-Type, or hangs up; every
error is the documented JSON with a 4xx for the client's mistakes."""

import asyncio
import concurrent.futures
import socket
import tempfile
import time
from pathlib import Path

import pytest

from serve_helpers import TEXTS, Server, model_dir  # noqa: F401  (model_dir: a fixture)

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("hostile-log") / "server.log"
    with Server(model_dir, "--precision", "fp32", "--max-batch-size", "16", "--max-wait-ms", "50", "--max-chars",
                "400", "--max-texts", "8", "--max-work", "2000", log=log) as running:
        yield running


def post(server, body=None, **kwargs):
    return httpx.post(f"{server.url}/translate", json=body, timeout=120, **kwargs) if body is not None else \
        httpx.post(f"{server.url}/translate", timeout=120, **kwargs)


def innocent(server, text):
    return post(server, {"text": [text], "src": "en", "tgt": "fr", "beams": 1})


@pytest.fixture(scope="module")
def expected(server):
    return {text: innocent(server, text).json()["translations"][0]["text"] for text in TEXTS["en"]}


HOSTILE = {
    "lone-surrogate": (lambda s: post(s, content=b'{"text": ["Save the file", "a\\ud800b"], "src": "en", "tgt": "fr"}',
                                      headers={"content-type": "application/json"}), 422, "not valid Unicode"),
    "too-much-work": (lambda s: post(s, {"text": ["x" * 400] * 8, "src": "en", "tgt": "fr", "beams": 4}), 413,
                      "max_work=2000"),
    "huge-body": (lambda s: post(s, content=b'{"text": "' + b"x" * 12_000_000 + b'", "src": "en", "tgt": "fr"}',
                                 headers={"content-type": "application/json"}), 413, "max_body_bytes"),
    "wrong-content-type": (lambda s: post(s, content=b'{"text": "a", "src": "en", "tgt": "fr"}',
                                          headers={"content-type": "text/plain"}), 415, "Content-Type: application/json"),
    "undecodable-body": (lambda s: post(s, content=b'{"text": "\xff\xfe", "src": "en", "tgt": "fr"}',
                                        headers={"content-type": "application/json"}), 400, ""),
    "unknown-route": (lambda s: httpx.get(f"{s.url}/nowhere", timeout=60), 404, "no route /nowhere"),
    "wrong-method": (lambda s: httpx.get(f"{s.url}/translate", timeout=60), 405, "GET is not allowed"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_client_gets_its_json_4xx_and_the_others_their_translations(server, expected, case):
    send, status, needle = HOSTILE[case]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        innocents = [pool.submit(innocent, server, text) for text in TEXTS["en"]]
        hostile = pool.submit(send, server)
        innocents += [pool.submit(innocent, server, text) for text in TEXTS["en"]]
        answer = hostile.result()
        assert answer.status_code == status, answer.text
        assert "error" in answer.json() and needle in answer.json()["error"]
        for future, text in zip(innocents, TEXTS["en"] * 2):
            assert future.result().status_code == 200
            assert future.result().json()["translations"][0]["text"] == expected[text]


def test_a_heatmap_of_a_long_text_is_a_json_413_and_leaves_no_temp_folder(server):
    before = set(Path(tempfile.gettempdir()).glob("xlm-hf-attention-*"))
    answer = httpx.get(f"{server.url}/attention", params={"text": "Save the file " * 25, "src": "en", "tgt": "fr"},
                       timeout=60)
    assert answer.status_code == 413 and "one sentence" in answer.json()["error"]
    ok = httpx.get(f"{server.url}/attention", params={"text": "Save the file", "src": "en", "tgt": "fr"}, timeout=60)
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"
    time.sleep(0.5)  # the response's background task removes its folder
    assert set(Path(tempfile.gettempdir()).glob("xlm-hf-attention-*")) <= before


def test_a_client_that_hangs_up_leaves_the_queue(model_dir, tmp_path):
    """With a 3 s batching wait, a request whose client closed the connection is cancelled: /health shows nothing
    queued within a second, and the worker never decodes it."""
    with Server(model_dir, "--max-wait-ms", "3000", log=tmp_path / "server.log") as running:
        host, port = running.url.removeprefix("http://").split(":")
        body = b'{"text": ["Save the file", "Open the folder"], "src": "en", "tgt": "fr"}'
        with socket.create_connection((host, int(port)), timeout=30) as client:
            client.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body) + body)
            time.sleep(0.5)
            assert httpx.get(f"{running.url}/health", timeout=30).json()["queued"] == 2
        time.sleep(1.0)
        assert httpx.get(f"{running.url}/health", timeout=30).json()["queued"] == 0
        time.sleep(3.0)
        assert httpx.get(f"{running.url}/health", timeout=30).json()["decoded"] == 0


@pytest.mark.parametrize("flag, value, needle", [("--max-wait-ms", "inf", "finite"), ("--port", "70000", "<= 65535"),
                                                  ("--max-work", "0", ">= 1")])
def test_serve_refuses_settings_that_cannot_work(model_dir, capsys, flag, value, needle):
    from xlm_hf.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["serve", str(model_dir), flag, value])
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and needle in error and "Traceback" not in error


class PoisonedTranslator:
    """Fails any batch holding 'poison' (as a tokenizer error would), echoes the others upper-cased."""

    def translate(self, texts, src, tgt, options, allow_zero_shot=False, batch_size=16):
        from xlm_hf.serving import Hypothesis

        if any("poison" in text for text in texts):
            raise RuntimeError(f"cannot decode {[t for t in texts if 'poison' in t]}")
        return [[Hypothesis(text.upper())] for text in texts]


def test_a_failed_batch_is_decoded_again_text_by_text_so_only_the_guilty_request_fails():
    from xlm_hf.serving import Batcher, DecodingOptions

    async def main():
        batcher = Batcher(PoisonedTranslator(), max_batch_size=8, max_wait_ms=50)
        batcher.start()
        try:
            options = DecodingOptions(beams=1)
            requests = [batcher.translate(["a", "bb"], "en", "fr", options),
                        batcher.translate(["poison"], "en", "fr", options),  # the same group, the same batch
                        batcher.translate(["ccc"], "en", "fr", options)]
            return await asyncio.gather(*requests, return_exceptions=True), batcher.pending
        finally:
            await batcher.stop()

    (first, poisoned, third), pending = asyncio.run(main())
    assert [h[0].text for h in first] == ["A", "BB"] and third[0][0].text == "CCC"
    assert isinstance(poisoned, RuntimeError) and "poison" in str(poisoned) and "bb" not in str(poisoned)
    assert pending == 0
