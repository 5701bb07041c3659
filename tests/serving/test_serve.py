"""`xlm-hf serve`: the real server process on a free loopback port (order under concurrency, limits and their status
codes, bad input, SIGTERM draining, the CTranslate2 engine), and the batcher's failure isolation in-process."""

import asyncio
import itertools
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from xlm_hf.model.hardware import choose_precision  # noqa: E402
from serve_helpers import REPO, TEXTS, Server, model_dir  # noqa: E402,F401  (model_dir: a fixture)


@pytest.fixture(scope="module")
def reference(model_dir):
    """Offline greedy translation of every TEXTS sentence in every direction, one sentence at a time."""
    from xlm_hf import translate
    from xlm_hf.folders import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(model_dir)
    found = {}
    for src, tgt in itertools.permutations(TEXTS, 2):
        for text in TEXTS[src]:
            found[src, tgt, text] = translate(text, model, tokenizer, src_lang=src, tgt_lang=tgt, num_beams=1)
    return found


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    with Server(model_dir, "--max-batch-size", "16", "--max-wait-ms", "20", "--max-chars", "100", "--max-texts", "8",
                log=log) as running:
        yield running


def post(server, body, **kwargs):
    return httpx.post(f"{server.url}/translate", json=body, timeout=120, **kwargs)


def test_the_subprocess_runs_this_checkout(model_dir):
    code = subprocess.run([sys.executable, "-c", "import xlm_hf; print(xlm_hf.__file__)"], cwd=REPO,
                          capture_output=True, text=True, check=True).stdout.strip()
    assert code == str(REPO / "xlm_hf" / "__init__.py")


def test_info_health_docs_and_page(server):
    info = httpx.get(f"{server.url}/info").json()
    assert info["languages"] == ["en", "fr", "de"] and "en-fr" in info["directions"] and "en-en" not in info["directions"]
    assert info["engine"] == "torch" and info["precision"] == choose_precision("auto").precision  # auto: the default
    assert info["limits"] == {"max_chars": 100, "max_texts": 8, "max_queue": 1024, "max_work": 131072}
    assert info["batching"] == {"max_batch_size": 16, "max_wait_ms": 20.0}
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
    assert "/translate" in httpx.get(f"{server.url}/openapi.json").json()["paths"]
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and "<select id=\"src\">" in page.text


def test_answers_keep_their_order_under_concurrency(server, reference):
    """24 clients at once, each with its own shuffled texts and direction: every answer is the offline translation
    of its own input, at its own position (the texts have distinct translations, so a mix-up shows)."""
    directions = list(itertools.permutations(TEXTS, 2))
    for src, tgt in directions:
        assert len({reference[src, tgt, text] for text in TEXTS[src]}) == len(TEXTS[src])

    async def client(number, http):
        rng = random.Random(number)
        src, tgt = directions[number % len(directions)]
        texts = rng.sample(TEXTS[src], rng.randint(1, len(TEXTS[src])))
        response = await http.post("/translate", json={"text": texts, "src": src, "tgt": tgt, "beams": 1})
        assert response.status_code == 200, response.text
        got = [t["text"] for t in response.json()["translations"]]
        assert got == [reference[src, tgt, text] for text in texts]

    async def main():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            await asyncio.gather(*(client(n, http) for n in range(24)))

    asyncio.run(main())


def test_concurrent_requests_are_decoded_together(server, reference):
    async def main():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            return await asyncio.gather(*(http.post("/translate", json={"text": text, "src": "fr", "tgt": "de",
                                                                        "beams": 1}) for text in TEXTS["fr"] * 3))

    before = httpx.get(f"{server.url}/health").json()["batches"]
    answers = asyncio.run(main())
    assert [a.json()["translations"][0]["text"] for a in answers] == [reference["fr", "de", t] for t in TEXTS["fr"] * 3]
    assert httpx.get(f"{server.url}/health").json()["batches"] - before < len(answers)


def test_a_slow_client_does_not_block_the_others(server, reference):
    """A client that sent half its request body and stalls: other requests are answered meanwhile."""
    body = b'{"text": "Open the folder", "src": "en", "tgt": "fr"}'
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as slow:
        slow.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        for text in TEXTS["en"]:
            answer = post(server, {"text": text, "src": "en", "tgt": "fr", "beams": 1})
            assert answer.json()["translations"][0]["text"] == reference["en", "fr", text]
        slow.sendall(body[10:])  # the stalled request is still answered once complete
        assert slow.recv(65536).startswith(b"HTTP/1.1 200")


def test_a_single_string_blank_lines_nbest_and_scores(server, reference):
    one = post(server, {"text": TEXTS["en"][0], "src": "en", "tgt": "fr", "beams": 1}).json()
    assert one["translations"] == [{"text": reference["en", "fr", TEXTS["en"][0]]}]
    answer = post(server, {"text": [TEXTS["en"][1], " ", ""], "src": "en", "tgt": "de", "beams": 3, "n_best": 3,
                           "scores": True}).json()["translations"]
    assert [t["text"] for t in answer[1:]] == ["", ""]
    best = answer[0]
    assert len(best["n_best"]) == 3 and best["n_best"][0]["text"] == best["text"]
    assert all(h["score"] <= 0 for h in best["n_best"]) and best["score"] == best["n_best"][0]["score"]


@pytest.mark.parametrize("body, status, needle", [
    ({"text": "x" * 101, "src": "en", "tgt": "fr"}, 413, "max_chars=100"),
    ({"text": ["a"] * 9, "src": "en", "tgt": "fr"}, 422, "max_texts=8"),
    ({"text": "a", "src": "xx", "tgt": "fr"}, 422, "this model knows en, fr, de"),
    ({"text": "a", "src": "en", "tgt": "en"}, 422, "direction en-en is not served"),
    ({"text": 3, "src": "en", "tgt": "fr"}, 422, "text"),
    ({"src": "en", "tgt": "fr"}, 422, "text: Field required"),
    ({"text": "a", "src": "en", "tgt": "fr", "beams": 99}, 422, "beams"),
    ({"text": "a", "src": "en", "tgt": "fr", "beams": 2, "n_best": 3}, 422, "n_best must be between 1 and beams (2)"),
    ({"text": "a", "src": "en", "tgt": "fr", "max_new_tokens": 10**6}, 422, "max_new_tokens must be between 1 and"),
    ({"text": "a", "src": "en", "tgt": "fr", "temperature": 2}, 422, "temperature"),
    ([1, 2], 422, "invalid request"),
])
def test_bad_requests_get_their_status_and_a_json_error(server, body, status, needle):
    response = post(server, body)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]


def test_limit_errors_name_the_limit_and_unknown_languages_list_the_known(server):
    assert post(server, {"text": "x" * 101, "src": "en", "tgt": "fr"}).json()["limit"] == "max_chars"
    assert post(server, {"text": ["a"] * 9, "src": "en", "tgt": "fr"}).json()["limit"] == "max_texts"
    assert post(server, {"text": "a", "src": "en", "tgt": "xx"}).json()["known_languages"] == ["en", "fr", "de"]


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe"])
def test_malformed_json_is_a_400_and_the_worker_goes_on(server, content, reference):
    response = httpx.post(f"{server.url}/translate", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "Content-Type: application/json" in response.json()["error"]
    ok = post(server, {"text": TEXTS["fr"][2], "src": "fr", "tgt": "en", "beams": 1})
    assert ok.json()["translations"][0]["text"] == reference["fr", "en", TEXTS["fr"][2]]


def test_a_full_queue_is_a_503_and_the_queued_work_is_answered(model_dir, tmp_path, reference):
    with Server(model_dir, "--max-queue", "3", "--max-wait-ms", "1500", "--max-batch-size", "64",
                log=tmp_path / "server.log") as server:
        async def main():
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
                waiting = asyncio.ensure_future(http.post("/translate", json={
                    "text": TEXTS["en"][:3], "src": "en", "tgt": "fr", "beams": 1}))
                while (await http.get("/health")).json()["queued"] < 3:  # the batch waits 1.5 s to fill
                    await asyncio.sleep(0.02)
                refused = await http.post("/translate", json={"text": "Open", "src": "en", "tgt": "fr"})
                return await waiting, refused

        waited, refused = asyncio.run(main())
        assert refused.status_code == 503
        assert refused.json()["limit"] == "max_queue" and "max_queue=3" in refused.json()["error"]
        assert [t["text"] for t in waited.json()["translations"]] == [reference["en", "fr", t] for t in TEXTS["en"][:3]]


def test_sigterm_answers_what_is_in_flight_and_refuses_new_work(model_dir, tmp_path, reference):
    server = Server(model_dir, "--max-wait-ms", "5000", "--max-batch-size", "64", log=tmp_path / "server.log")
    try:
        async def main():
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
                in_flight = [asyncio.ensure_future(http.post("/translate", json={
                    "text": [text], "src": "de", "tgt": "fr", "beams": 1})) for text in TEXTS["de"]]
                while (await http.get("/health")).json()["queued"] < len(in_flight):
                    await asyncio.sleep(0.02)
                server.terminate()  # the batch still waits for 5 s to fill
                deadline = time.monotonic() + 20
                while True:  # new connections are refused while the in-flight requests are still waiting
                    try:
                        async with httpx.AsyncClient(timeout=5) as fresh:
                            await fresh.get(f"{server.url}/health")
                    except httpx.ConnectError:
                        break
                    assert time.monotonic() < deadline, "the server kept accepting connections after SIGTERM"
                    await asyncio.sleep(0.05)
                refused_while_pending = not any(request.done() for request in in_flight)
                return refused_while_pending, await asyncio.gather(*in_flight)

        refused_while_pending, answers = asyncio.run(main())
        assert refused_while_pending
        assert [r.status_code for r in answers] == [200] * len(TEXTS["de"])
        assert [r.json()["translations"][0]["text"] for r in answers] == [reference["de", "fr", t] for t in TEXTS["de"]]
        # drained; the CLI ends a SIGTERM'd command with the shell's code for it, 128 + 15 (as it does for translate)
        assert server.process.wait(60) == 128 + signal.SIGTERM
    finally:
        server.stop()


def test_requests_still_waiting_when_the_drain_times_out_get_the_documented_json_503(model_dir, tmp_path):
    server = Server(model_dir, "--max-wait-ms", "5000", "--max-batch-size", "64", "--drain-timeout", "0.5",
                    log=tmp_path / "server.log")
    try:
        async def main():
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
                in_flight = [asyncio.ensure_future(http.post("/translate", json={
                    "text": [text], "src": "de", "tgt": "fr", "beams": 1})) for text in TEXTS["de"][:2]]
                while (await http.get("/health")).json()["queued"] < len(in_flight):
                    await asyncio.sleep(0.02)
                server.terminate()  # the batch waits 5 s to fill; the drain gives up after 0.5 s
                return await asyncio.gather(*in_flight)

        answers = asyncio.run(main())
        assert [r.status_code for r in answers] == [503, 503]
        assert all(r.headers["content-type"] == "application/json" for r in answers)
        assert all("--drain-timeout" in r.json()["error"] and "send it again" in r.json()["error"] for r in answers)
        assert server.process.wait(60) == 128 + signal.SIGTERM
    finally:
        server.stop()


def test_ctranslate2_engine_serves_an_export_through_the_same_api(model_dir, tmp_path, reference):
    pytest.importorskip("ctranslate2")
    from xlm_hf.interop.export_ctranslate2 import export_ctranslate2
    from xlm_hf.serving import DecodingOptions, Translator

    export = export_ctranslate2(model_dir, tmp_path / "ct2", "en", "fr")
    with Server(export, "--engine", "ctranslate2", log=tmp_path / "server.log") as server:
        info = httpx.get(f"{server.url}/info").json()
        assert info["engine"] == "ctranslate2" and info["directions"] == ["en-fr"] and not info["attention"]
        answer = post(server, {"text": TEXTS["en"], "src": "en", "tgt": "fr", "beams": 1})
        assert [t["text"] for t in answer.json()["translations"]] == [reference["en", "fr", t] for t in TEXTS["en"]]
        nbest = post(server, {"text": TEXTS["en"][0], "src": "en", "tgt": "fr", "beams": 2, "n_best": 2,
                              "scores": True}).json()["translations"][0]["n_best"]
        assert len(nbest) == 2 and all(h["score"] <= 0 for h in nbest)
        scored = post(server, {"text": TEXTS["en"], "src": "en", "tgt": "fr", "beams": 1, "scores": True}).json()
        translator = Translator.from_folder(model_dir, precision="fp32")  # the same score: logprob per token
        expected = translator.translate(TEXTS["en"], "en", "fr", DecodingOptions(beams=1, scores=True))
        assert [t["score"] for t in scored["translations"]] == pytest.approx([h[0].score for h in expected], rel=1e-3)
        wrong = post(server, {"text": "a", "src": "fr", "tgt": "en"})
        assert wrong.status_code == 422 and "choose one of en-fr" in wrong.json()["error"]


def test_ctranslate2_engine_runs_bf16_only_where_ctranslate2_has_it(model_dir, tmp_path, caplog):
    """CTranslate2 has no emulated bf16: `auto` picks bfloat16 only where its kernels exist on this CPU, and an explicit
    bf16 it cannot run is served in float32 after one warning, instead of failing to start."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    from xlm_hf.interop.export_ctranslate2 import export_ctranslate2
    from xlm_hf.serving import load_decoder

    export = export_ctranslate2(model_dir, tmp_path / "ct2", "en", "fr")
    native = "bfloat16" in ctranslate2.get_supported_compute_types("cpu")
    with caplog.at_level("WARNING", logger="xlm_hf.serving"):
        assert load_decoder(export, "ctranslate2", "auto").precision == ("bf16" if native else "fp32")
        assert load_decoder(export, "ctranslate2", "bf16").precision == ("bf16" if native else "fp32")
    assert sum("no bfloat16 kernels" in r.getMessage() for r in caplog.records) == (0 if native else 1)


def test_cli_errors_are_one_line(tmp_path, model_dir, capsys):
    """One real process shows there is no traceback; the other refusals run in this one (they happen before the server
    starts)."""
    from xlm_hf.cli import main

    missing = subprocess.run([sys.executable, "-m", "xlm_hf", "serve", str(tmp_path / "nowhere")], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "is not a model folder (no such folder)" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert main(["serve", str(model_dir), "--engine", "ctranslate2"]) == 2
    assert "xlm-hf export" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad_flag:
        main(["serve", str(model_dir), "--max-batch-size", "0"])
    assert bad_flag.value.code == 2 and "expected an integer >= 1" in capsys.readouterr().err


def test_without_the_serve_extra_the_error_says_what_to_install(model_dir):
    code = ("import sys; sys.modules['fastapi'] = None; from xlm_hf.cli import main; "
            f"sys.exit(main(['serve', {str(model_dir)!r}]))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "pip install 'xlm-hf[serve]'" in result.stderr
    assert "fastapi is missing" in result.stderr and "Traceback" not in result.stderr


class FlakyTranslator:
    """Fails every text containing 'boom' (the whole group it is decoded in), echoes the others upper-cased."""

    def translate(self, texts, src, tgt, options, allow_zero_shot=False, batch_size=16):
        from xlm_hf.serving import Hypothesis

        if any("boom" in text for text in texts):
            raise RuntimeError("boom")
        return [[Hypothesis(text.upper())] for text in texts]


def test_an_engine_failure_fails_its_group_only_and_the_worker_goes_on():
    from xlm_hf.serving import Batcher, DecodingOptions as Options

    async def main():
        batcher = Batcher(FlakyTranslator(), max_batch_size=8, max_wait_ms=50)
        batcher.start()
        try:
            failing = batcher.translate(["boom", "x"], "en", "fr", Options(beams=2))
            fine = batcher.translate(["b", "a", "ccc"], "en", "fr", Options(beams=1))  # another group, same batch
            results = await asyncio.gather(failing, fine, return_exceptions=True)
            after = await batcher.translate(["later"], "en", "fr", Options(beams=2))
            return results, after, batcher.pending
        finally:
            await batcher.stop()

    (failed, fine), after, pending = asyncio.run(main())
    assert isinstance(failed, RuntimeError)
    assert [h[0].text for h in fine] == ["B", "A", "CCC"]  # sorted by length to decode, answered in request order
    assert after[0][0].text == "LATER" and pending == 0
