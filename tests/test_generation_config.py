"""Default sampling from ``generation_config.json`` (vLLM's ``--generation-config``): which
fields are read, how bad files fail, and end to end that an omitted field takes the model's
value (a config saying temperature 0 makes an unspecified request greedy) while an explicit
field still wins."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_fixture import Server
from tokenspeed import LLM
from tokenspeed.demo import ensure_demo_model
from tokenspeed.generation_config import default_sampling


def write(folder: Path, config: object) -> Path:
    (folder / "generation_config.json").write_text(json.dumps(config))
    return folder


def test_fields_read_and_settings(tmp_path: Path) -> None:
    qwen = {"do_sample": True, "temperature": 0.6, "top_p": 0.95, "top_k": 20, "eos_token_id": 1,
            "min_p": 0, "repetition_penalty": 1.05, "max_new_tokens": 9, "note": "x"}  # fmt: skip
    write(tmp_path, qwen)
    got = default_sampling(tmp_path)
    want = {
        "temperature": 0.6,
        "top_p": 0.95,
        "top_k": 20,
        "min_p": 0.0,
        "repetition_penalty": 1.05,
    }
    assert got == want and isinstance(got["top_k"], int)
    assert default_sampling(tmp_path, "vllm") == {}
    assert default_sampling(None, str(tmp_path)) == want  # a directory named explicitly
    assert default_sampling(tmp_path / "nowhere") == {}  # auto without a file: plain defaults
    with pytest.raises(ValueError, match=r"no generation_config\.json"):
        default_sampling(None, str(tmp_path / "nowhere"))
    write(tmp_path, {"temperature": -1})
    with pytest.raises(ValueError, match="temperature"):
        default_sampling(tmp_path)
    (tmp_path / "generation_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        default_sampling(tmp_path)
    write(tmp_path, {"temperature": "hot", "top_p": True})  # not numbers: not defaults
    assert default_sampling(tmp_path) == {}


@pytest.fixture(scope="module")
def greedy_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("greedy"), {"temperature": 0.0, "top_k": 5})


@pytest.fixture(scope="module")
def server(greedy_config: Path) -> Iterator[Server]:
    srv = Server(["--generation-config", str(greedy_config)], api_key=None)
    yield srv
    assert srv.stop() == 0, srv.log()


def test_omitted_fields_take_the_configured_defaults(server: Server) -> None:
    assert "default sampling from generation_config.json" in server.log()

    def text(**fields: object) -> str:
        body = {"prompt": "Once upon a time", "max_tokens": 10, **fields}
        status, out, _ = server.request("POST", "/v1/completions", body)
        assert status == 200, out
        return out["choices"][0]["text"]

    greedy = text(temperature=0)
    assert text() == text() == greedy  # omitted temperature: the config's 0
    sampled = [text(temperature=1.0, top_k=0, seed=s) for s in range(3)]
    assert any(s != greedy for s in sampled)  # an explicit field still wins


def test_offline_defaults(tmp_path: Path) -> None:
    model = tmp_path / "demo"
    shutil.copytree(ensure_demo_model(), model)
    write(model, {"temperature": 0.6, "top_p": 0.95, "top_k": 20})
    llm = LLM(model, max_num_seqs=2, max_model_len=256)
    params = llm.get_default_sampling_params()
    assert (params.temperature, params.top_p, params.top_k) == (0.6, 0.95, 20)
    plain = LLM(model, max_num_seqs=2, max_model_len=256, generation_config="vllm")
    assert plain.get_default_sampling_params() == type(params)()
