import os, openai
client = openai.OpenAI(base_url="http://127.0.0.1:8080/v1", api_key=os.environ["YUNMO_API_KEY"])
first = client.responses.create(model="smollm2", instructions="You are a helpful assistant.",
                                input="Name the capital of France.", max_output_tokens=32, temperature=0)
print(first.output_text)
second = client.responses.create(model="smollm2", previous_response_id=first.id, input="And of Italy?",
                                 max_output_tokens=32, temperature=0)
print(second.output_text, second.usage.input_tokens > first.usage.input_tokens)
