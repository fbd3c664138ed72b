import os
from ollama import Client
# Ollama clients work unchanged; they send the key as a header (or the server binds one: ollama.key).
client = Client(host="http://127.0.0.1:8080", headers={"Authorization": f"Bearer {os.environ['YUNMO_API_KEY']}"})
print([m.model for m in client.list().models])
answer = client.chat(model="smollm2", messages=[{"role": "system", "content": "You are a helpful assistant."},
                                                 {"role": "user", "content": "Name the capital of France."}],
                     options={"temperature": 0, "num_predict": 32})
print(answer.message.content)
print(len(client.embed(model="minilm", input=["A man is eating food."]).embeddings[0]))
