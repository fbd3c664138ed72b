import os
from openai import OpenAI
client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key=os.environ["YUNMO_API_KEY"])
reply = client.chat.completions.create(model="smollm2", temperature=0, max_tokens=32, messages=[{"role": "user", "content": "Say hello."}])
print(reply.choices[0].message.content, reply.usage)
for chunk in client.chat.completions.create(model="smollm2", max_tokens=32, messages=[{"role": "user", "content": "Count to five."}], stream=True):
    print(chunk.choices[0].delta.content or "", end="")
print()
print(client.embeddings.create(model="minilm", input=["A man is eating food."]).data[0].embedding[:4])
