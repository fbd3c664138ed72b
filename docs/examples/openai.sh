curl localhost:8080/v1/chat/completions -H "Authorization: Bearer $YUNMO_API_KEY" -H 'Content-Type: application/json' -d '{"model": "smollm2", "temperature": 0,
  "messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Name the capital of France."}]}'
curl -N localhost:8080/v1/completions -H "Authorization: Bearer $YUNMO_API_KEY" -H 'Content-Type: application/json' -d '{"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 32, "stream": true}'
curl localhost:8080/v1/embeddings -H "Authorization: Bearer $YUNMO_API_KEY" -H 'Content-Type: application/json' -d '{"model": "minilm", "input": ["A man is eating food."]}'
