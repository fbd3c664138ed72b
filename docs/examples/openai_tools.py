import json
import os
from openai import OpenAI

client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key=os.environ["YUNMO_API_KEY"])
tools = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}},
                   "required": ["city"], "additionalProperties": False}}}]
messages = [{"role": "user", "content": "What is the weather in Paris?"}]
reply = client.chat.completions.create(model="smollm2", messages=messages, tools=tools, tool_choice="required",
                                       parallel_tool_calls=False, temperature=0, max_tokens=100)
call = reply.choices[0].message.tool_calls[0]
print(reply.choices[0].finish_reason, call.function.name, call.function.arguments)
messages += [reply.choices[0].message, {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"celsius": 22})}]
final = client.chat.completions.create(model="smollm2", messages=messages, tools=tools, tool_choice="none",
                                       temperature=0, max_tokens=60)
print(final.choices[0].message.content)
