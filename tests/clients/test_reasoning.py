"""Reasoning output (docs/llm.md) through the unchanged `openai` SDK: a model whose chat template thinks in
`<think>...</think>` answers with the thinking in `message.reasoning_content` (streamed:
`delta.reasoning_content`) and only the answer in `content`; `chat_template_kwargs` reach the template.

SmolLM2 is given a thinking template (the version config's `chat_template`, in the shape of Qwen3's:
`<think>` opened in the prompt unless `enable_thinking` is false) and a conversation whose earlier answers
show the pattern, so that greedy decoding closes its thinking with `</think>` and then answers. The split is
checked against the model's raw text for the same prompt from /v1/completions."""
import openai
import pytest

from conftest import smollm_server

TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
            "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}"
            "{% else %}{{ '<think>\\n' }}{% endif %}{% endif %}")
MESSAGES = [
    {"role": "system", "content": "You think step by step inside <think></think>, then give the short answer."},
    {"role": "user", "content": "What is 2 plus 2?"},
    {"role": "assistant", "content": "<think>\nTwo plus two makes four.\n</think>\n\n4"},
    {"role": "user", "content": "What is 3 plus 3?"},
    {"role": "assistant", "content": "<think>\nThree plus three makes six.\n</think>\n\n6"},
    {"role": "user", "content": "What is 4 plus 4?"},
]


@pytest.fixture(scope="module")
def server():
    yield from smollm_server("yunmo-reasoning-", [("thinker", {"chat_template": TEMPLATE}), ("smollm2", None)])


def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def render(messages, thinking=True):
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"
    return text + ("<think>\n" if thinking else "<think>\n\n</think>\n\n")


def test_thinking_is_split_from_the_answer_whole_and_streamed(server):
    raw = client(server).completions.create(model="thinker", prompt=render(MESSAGES), max_tokens=60, temperature=0).choices[0].text
    assert "</think>" in raw, f"the few-shot conversation should make the model close its thinking: {raw!r}"
    thinking, answer = raw.split("</think>", 1)
    message = client(server).chat.completions.create(model="thinker", messages=MESSAGES, max_tokens=60, temperature=0).choices[0].message
    assert message.reasoning_content == thinking
    assert message.content == answer.lstrip()
    assert "<think>" not in message.content and "</think>" not in message.content
    reasoning, content = "", ""
    for chunk in client(server).chat.completions.create(model="thinker", messages=MESSAGES, max_tokens=60, temperature=0, stream=True):
        for choice in chunk.choices:
            reasoning += getattr(choice.delta, "reasoning_content", None) or ""
            content += choice.delta.content or ""
    assert (reasoning, content) == (message.reasoning_content, message.content)


def test_template_kwargs_turn_thinking_off_and_other_models_are_unchanged(server):
    arguments = dict(messages=MESSAGES, max_tokens=20, temperature=0)
    off = client(server).chat.completions.create(model="thinker", extra_body={"chat_template_kwargs": {"enable_thinking": False}}, **arguments)
    raw = client(server).completions.create(model="thinker", prompt=render(MESSAGES, thinking=False), max_tokens=20, temperature=0)
    assert off.choices[0].message.content == raw.choices[0].text
    assert getattr(off.choices[0].message, "reasoning_content", None) is None
    assert off.usage.prompt_tokens == raw.usage.prompt_tokens, "the template rendered with enable_thinking false"
    plain = client(server).chat.completions.create(model="smollm2", **arguments).choices[0].message
    assert getattr(plain, "reasoning_content", None) is None and plain.content
    with pytest.raises(openai.BadRequestError) as raised:
        client(server).chat.completions.create(model="thinker", extra_body={"chat_template_kwargs": {"messages": []}}, **arguments)
    assert "chat_template_kwargs.messages" in raised.value.body["message"]
