import os
from langchain_openai import OpenAIEmbeddings
# check_embedding_ctx_length=False sends the texts themselves; by default LangChain sends OpenAI tokenizer
# ids, which this server would take as ids of the model's own vocabulary (a different text, a wrong vector).
embeddings = OpenAIEmbeddings(model="minilm", base_url="http://127.0.0.1:8080/v1", api_key=os.environ["YUNMO_API_KEY"],
                              check_embedding_ctx_length=False)
print(embeddings.embed_query("A man is eating food.")[:4])
