"""Prefix caching (docs/llm.md) through the unchanged `openai` SDK on SmolLM2: a chat that shares a long
system prompt with an earlier one reports `usage.prompt_tokens_details.cached_tokens` and answers exactly
what a server with the cache off answers; concurrent chats with distinct prefixes never see each other's
text."""
import concurrent.futures
import json
import os
import shutil
import tempfile

import openai
import pytest

from conftest import CACHE, Server

SMOLLM = os.path.join(CACHE, "models", "smollm2-135m-instruct-q4_1.gguf")
SYSTEM = ("You are the assistant of a small railway museum in the mountains. You answer visitors' questions in one or two "
          "short sentences, politely and without inventing facts. The museum opens at nine in the morning and closes at "
          "five in the afternoon, every day except Monday. Tickets cost eight euros for adults and four euros for children; "
          "families of four pay twenty euros. The steam locomotive in the main hall was built in 1912 and ran on the valley "
          "line until 1968. Guided tours start every hour on the hour and take forty minutes. Dogs are welcome on a lead. "
          "The cafe serves soup, bread, cheese and apple cake. The nearest station is a ten-minute walk down the hill.")
QUESTIONS = ["When does the museum open?", "How much is a ticket for a child?", "Can I bring my dog?", "How old is the locomotive?"]


def start(env):
    data_dir = tempfile.mkdtemp(prefix="yunmo-prefix-")
    server = Server(data_dir, env={"YUNMO__BACKENDS__GGUF__MAX_SEQUENCES": "4", "YUNMO__BACKENDS__GGUF__THREADS": "2", "YUNMO__BACKENDS__GGUF__BATCH_TOKENS": os.environ.get("BT", "512"), **env})
    server.push_file("smollm2", SMOLLM)
    server.push_file("smollm2-q8", SMOLLM, config={"kv_cache_type": "q8_0"})
    server.push_file("smollm2-plain", SMOLLM, config={"flash_attention": "off"})
    return server, data_dir


@pytest.fixture(scope="module")
def servers():
    if not os.path.exists(SMOLLM):
        raise RuntimeError(f"missing {SMOLLM}: run scripts/fetch-assets.sh smollm (scripts/test.sh does)")
    started = [start({}), start({"YUNMO__BACKENDS__GGUF__PREFIX_CACHE": "false"})]
    yield [server for server, _ in started]
    for server, data_dir in started:
        assert server.stop() == 0
        shutil.rmtree(data_dir, ignore_errors=True)


def ask(server, system, question, model="smollm2"):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    response = client.chat.completions.create(model=model, temperature=0, seed=1, max_tokens=24,
                                              messages=[{"role": "system", "content": system}, {"role": "user", "content": question}])
    return response.choices[0].message.content, response.usage


def test_a_shared_system_prompt_is_reused_and_answers_as_without_the_cache(servers):
    cached, uncached = servers
    reference = [ask(uncached, SYSTEM, question) for question in QUESTIONS]
    assert all(usage.prompt_tokens_details.cached_tokens == 0 for _, usage in reference), "the cache off reuses nothing"
    text, usage = ask(cached, SYSTEM, QUESTIONS[0])
    assert text == reference[0][0]
    for question, (expected, expected_usage) in zip(QUESTIONS[1:], reference[1:]):
        text, usage = ask(cached, SYSTEM, question)
        assert text == expected, (question, text, expected)
        assert usage.prompt_tokens == expected_usage.prompt_tokens
        # Prefill chunks end every 32 tokens and after each end-of-turn token: the whole system message is
        # reused (and, where the kernels allow, the user turn up to the first token that differs); the rest of
        # the question and the template's tail are computed.
        assert usage.prompt_tokens - 22 <= usage.prompt_tokens_details.cached_tokens < usage.prompt_tokens - 5, usage
    metrics = cached.request("GET", "/metrics")[1].decode()
    reused = [line for line in metrics.splitlines() if line.startswith("yunmo_llm_prompt_cached_tokens_total{")]
    assert reused and float(reused[0].rsplit(" ", 1)[1]) > 360, reused
    lookups = {line.split('result="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("yunmo_llm_prefix_cache_lookups_total{") and 'model="smollm2"' in line}
    assert lookups.get("hit", 0) >= 3 and lookups.get("miss", 0) >= 1, lookups


def test_concurrent_chats_with_distinct_prefixes_get_their_own_answers(servers):
    cached, uncached = servers
    systems = [SYSTEM.replace("railway museum", place) for place in
               ("railway museum", "toy museum", "glass museum", "clock museum", "ski museum", "salt mine", "castle", "zoo")]
    chats = [(system, QUESTIONS[index % len(QUESTIONS)]) for index, system in enumerate(systems)]
    reference = [ask(uncached, system, question)[0] for system, question in chats]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(2):
            answers = list(pool.map(lambda chat: ask(cached, *chat)[0], chats))
            assert answers == reference


def test_a_q8_0_cache_version(servers):
    server = servers[0]
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[0]}]
    first, second = [client.chat.completions.create(model="smollm2-q8", temperature=0, max_tokens=24, messages=messages)
                     for _ in range(2)]
    assert first.choices[0].message.content == second.choices[0].message.content
    assert second.usage.prompt_tokens_details.cached_tokens > 100, second.usage
    status, body = server.request("GET", "/api/v1/models/smollm2-q8/versions/1")
    assert status == 200 and json.loads(body)["config"]["kv_cache_type"] == "q8_0", body
    status, body = server.request("PUT", "/api/v1/models/smollm2-q8/versions/1/config", {"kv_cache_type": "q5_1"})
    assert status == 400 and b"kv_cache_type" in body, body


ADMIN = "ym_testadmin_" + "P" * 43


def test_a_plain_attention_version_reuses_the_prefix_and_answers_as_without_the_cache(servers):
    cached, uncached = servers
    reference = [ask(uncached, SYSTEM, question, model="smollm2-plain")[0] for question in QUESTIONS[:2]]
    assert ask(cached, SYSTEM, QUESTIONS[0], model="smollm2-plain")[0] == reference[0]
    text, usage = ask(cached, SYSTEM, QUESTIONS[1], model="smollm2-plain")
    assert text == reference[1]
    assert usage.prompt_tokens_details.cached_tokens > 100, usage
    status, body = cached.request("GET", "/api/v1/models/smollm2-plain/versions/1")
    assert status == 200 and json.loads(body)["config"]["flash_attention"] == "off", body
    for config in ({"flash_attention": "off", "kv_cache_type": "q8_0"}, {"flash_attention": "sometimes"}):
        status, body = cached.request("PUT", "/api/v1/models/smollm2-plain/versions/1/config", config)
        assert status == 400 and b"flash_attention" in body, body
    config = json.loads(cached.request("GET", "/api/v1/models/smollm2-plain/versions/1")[1])["config"]
    assert config.get("flash_attention") == "off" and "kv_cache_type" not in config, f"a refused config changes nothing: {config}"


def test_tenants_share_cells_only_for_the_same_tokens_of_the_same_model(servers):
    """Tenant A's chats never give cells to tenant B's own model; on a model A shares with B, B's request may
    reuse the cells of the same tokens, and still answers exactly what it answers alone (the cache-off server)."""
    data_dir = tempfile.mkdtemp(prefix="yunmo-prefix-tenants-")
    server = Server(data_dir, env={"YUNMO__AUTH__ENABLED": "true", "YUNMO__AUTH__BOOTSTRAP_KEY": ADMIN,
                                   "YUNMO__BACKENDS__GGUF__THREADS": "2", "YUNMO__BACKENDS__GGUF__MAX_SEQUENCES": "4"})
    try:
        keys = {}
        for tenant in ("a", "b"):
            assert server.request("POST", "/api/v1/tenants", {"name": tenant}, key=ADMIN)[0] == 201
            status, body = server.request("POST", "/api/v1/keys", {"tenant": tenant, "scopes": ["models:write", "models:read", "infer"]},
                                          key=ADMIN)
            assert status == 201, body
            keys[tenant] = json.loads(body)["key"]
            server.key = keys[tenant]
            server.push_file(f"{tenant}_chat", SMOLLM)
        server.key = None
        status, body = server.request("PUT", "/api/v1/models/a_chat/sharing", {"tenants": ["b"]}, key=keys["a"])
        assert status == 200, body

        def chat(tenant, model, question):
            client = openai.OpenAI(base_url=server.url + "/v1", api_key=keys[tenant], max_retries=0, timeout=120)
            response = client.chat.completions.create(model=model, temperature=1.0, seed=5, max_tokens=16,
                                                      messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}])
            return response.choices[0].message.content, response.usage.prompt_tokens_details.cached_tokens

        chat("a", "a_chat", QUESTIONS[0])
        assert chat("b", "b_chat", QUESTIONS[1])[1] == 0, "another model's cells are never used"
        text, cached = chat("b", "a/a_chat", QUESTIONS[1])
        assert cached > 100, "the same tokens of the same model: the shared system prompt is reused"
        reference = openai.OpenAI(base_url=servers[1].url + "/v1", api_key="unused", max_retries=0, timeout=120).chat.completions.create(
            model="smollm2", temperature=1.0, seed=5, max_tokens=16,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[1]}])
        assert text == reference.choices[0].message.content, "B's answer is its own, as without the cache"
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
