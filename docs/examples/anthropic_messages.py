import os, anthropic
# The anthropic SDK (and Claude Code, with ANTHROPIC_BASE_URL) speak /v1/messages; the key is Yunmo's.
client = anthropic.Anthropic(base_url="http://127.0.0.1:8080", api_key=os.environ["YUNMO_API_KEY"])
message = client.messages.create(model="smollm2", max_tokens=32, system="You are a helpful assistant.",
                                 messages=[{"role": "user", "content": "Name the capital of France."}],
                                 extra_body={"temperature": 0})
print(message.stop_reason, message.content[0].text)
print(client.messages.count_tokens(model="smollm2", messages=[{"role": "user", "content": "Hello"}]).input_tokens)
