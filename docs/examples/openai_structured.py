import os
from openai import OpenAI
from pydantic import BaseModel, Field

class City(BaseModel):
    name: str = Field(max_length=40)
    country: str = Field(max_length=40)
    population_millions: int = Field(ge=0, le=50)

client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key=os.environ["YUNMO_API_KEY"])
reply = client.chat.completions.parse(model="smollm2", temperature=0, max_tokens=200, response_format=City,
                                      messages=[{"role": "user", "content": "Describe the capital of France."}])
print(reply.choices[0].message.content)
print(reply.choices[0].message.parsed)
